//! Counts of recipients by state, per campaign and per destination domain.
//!
//! Kept up to date by the spool as recipients are appended and change state,
//! stored in checkpoints, and rebuilt from the journal's self-describing
//! entries, so `volley status` needs neither the segments nor a scan. Pure.

use crate::State;

/// Recipients by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub queued: u64,
    pub deferred: u64,
    pub delivered: u64,
    pub bounced: u64,
    pub failed: u64,
    pub lost: u64,
}

impl Counts {
    fn slot(&mut self, s: State) -> &mut u64 {
        match s {
            State::Queued => &mut self.queued,
            State::Deferred => &mut self.deferred,
            State::Delivered => &mut self.delivered,
            State::Bounced => &mut self.bounced,
            State::Failed => &mut self.failed,
            State::Lost => &mut self.lost,
        }
    }

    pub fn get(&self, s: State) -> u64 {
        let mut c = *self;
        *c.slot(s)
    }

    pub fn add(&mut self, s: State, n: u64) {
        *self.slot(s) += n;
    }

    pub fn sub(&mut self, s: State, n: u64) {
        let v = self.slot(s);
        *v = v.saturating_sub(n);
    }

    pub fn total(&self) -> u64 {
        self.queued + self.deferred + self.delivered + self.bounced + self.failed + self.lost
    }

    /// Queued or deferred: still to be delivered.
    pub fn pending(&self) -> u64 {
        self.queued + self.deferred
    }

    pub(crate) fn to_array(self) -> [u64; 6] {
        [
            self.queued,
            self.deferred,
            self.delivered,
            self.bounced,
            self.failed,
            self.lost,
        ]
    }

    pub(crate) fn from_array(a: [u64; 6]) -> Counts {
        Counts {
            queued: a[0],
            deferred: a[1],
            delivered: a[2],
            bounced: a[3],
            failed: a[4],
            lost: a[5],
        }
    }
}

/// Per-campaign data kept in the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CampaignCounts {
    pub counts: Counts,
    /// Highest list row spooled (where an interrupted ingest resumes).
    pub last_row: u32,
}

/// A hash map with a fast hasher (keys are campaign numbers and domains
/// from our own spool, not attacker-chosen at a scale that matters).
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Counts per campaign number and per domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub campaigns: FastMap<u32, CampaignCounts>,
    pub domains: FastMap<String, Counts>,
}

impl Summary {
    /// `n` recipients of `campaign` at `domain` entered state `s`.
    pub fn add(&mut self, campaign: u32, domain: &str, s: State, n: u64) {
        self.campaigns.entry(campaign).or_default().counts.add(s, n);
        match self.domains.get_mut(domain) {
            Some(c) => c.add(s, n),
            None => {
                let mut c = Counts::default();
                c.add(s, n);
                self.domains.insert(domain.to_string(), c);
            }
        }
    }

    /// One recipient moved from `from` to `to`.
    pub fn moved(&mut self, campaign: u32, domain: &str, from: State, to: State) {
        if let Some(c) = self.campaigns.get_mut(&campaign) {
            c.counts.sub(from, 1);
            c.counts.add(to, 1);
        }
        if let Some(c) = self.domains.get_mut(domain) {
            c.sub(from, 1);
            c.add(to, 1);
        }
    }

    /// Records the highest row spooled for a campaign.
    pub fn saw_row(&mut self, campaign: u32, row: u32) {
        let c = self.campaigns.entry(campaign).or_default();
        c.last_row = c.last_row.max(row);
    }

    /// Totals over every campaign.
    pub fn totals(&self) -> Counts {
        let mut t = [0u64; 6];
        for c in self.campaigns.values() {
            for (a, b) in t.iter_mut().zip(c.counts.to_array()) {
                *a += b;
            }
        }
        Counts::from_array(t)
    }

    /// Drops domains with nothing left in them (after their recipients were
    /// reclaimed), keeping the summary bounded.
    pub fn forget_empty_domains(&mut self) {
        self.domains.retain(|_, c| c.total() > 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_between_states() {
        let mut s = Summary::default();
        s.add(1, "a.test", State::Queued, 3);
        s.moved(1, "a.test", State::Queued, State::Delivered);
        s.moved(1, "a.test", State::Queued, State::Deferred);
        s.saw_row(1, 7);
        s.saw_row(1, 5);
        let c = s.campaigns[&1];
        assert_eq!(
            (
                c.counts.queued,
                c.counts.delivered,
                c.counts.deferred,
                c.last_row
            ),
            (1, 1, 1, 7)
        );
        assert_eq!(s.domains["a.test"].pending(), 2);
        assert_eq!(s.totals().total(), 3);
    }
}
