//! The in-memory index: where each record is, what state it is in, and the
//! counts per campaign and domain.
//!
//! Per segment: the map, each record's frame offset, a one-byte state per
//! recipient, how many recipients are not final (`pending`), the last journal
//! position that touched it, its campaign runs and the acceptance times of
//! its records ([`crate::accepted`]). Plus attempt count and
//! next-attempt time for deferred recipients. Rebuilt at open from the
//! checkpoint, the journal tail and the segments; updated as appends and
//! outcomes are written. A final state never reverts (a duplicate delivery
//! after a crash cannot un-deliver anyone).

use std::collections::{BTreeMap, HashMap};

use crate::accepted::AcceptedTimes;
use crate::checkpoint::Run;
use crate::journal::{Entry, Kind};
use crate::segment::LOST;
use crate::summary::Summary;
use crate::{RecipientId, State, frame, record};

/// Retry bookkeeping of a deferred recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (ms since the Unix epoch).
    pub next_ms: u64,
}

#[derive(Default)]
pub(crate) struct Seg {
    /// None when the file is missing or unreadable.
    pub(crate) map: Option<memmap2::Mmap>,
    pub(crate) offsets: Vec<u32>,
    pub(crate) states: Vec<u8>,
    pub(crate) sealed: bool,
    /// Recipients not yet final (queued or deferred): the segment can be
    /// reclaimed when none is left.
    pub(crate) pending: u64,
    /// Records whose append is journaled (or that recovery adopted): a
    /// checkpoint includes only these, so it never holds records whose
    /// acknowledgement is still pending.
    pub(crate) journaled: u32,
    pub(crate) last_pos: u64,
    pub(crate) runs: Vec<Run>,
    /// When each record was accepted.
    pub(crate) accepted: AcceptedTimes,
}

impl Seg {
    /// The campaign of record `index`, by the runs.
    pub(crate) fn campaign_of(&self, index: u32) -> Option<u32> {
        let i = self.runs.partition_point(|r| r.first <= index);
        i.checked_sub(1).map(|i| self.runs[i].campaign)
    }

    pub(crate) fn push_run(&mut self, first: u32, campaign: u32) {
        if self.runs.last().is_none_or(|r| r.campaign != campaign) {
            self.runs.push(Run { first, campaign });
        }
    }

    /// The archived record at `index`, if it is readable.
    pub(crate) fn record(&self, index: u32) -> Option<&record::ArchivedRecipient> {
        let off = *self.offsets.get(index as usize)?;
        if off == LOST {
            return None;
        }
        match frame::read(self.map.as_ref()?, off as usize, record::MAX_RECORD) {
            frame::Read::Frame { payload, .. } => record::access(payload).ok(),
            _ => None,
        }
    }
}

#[derive(Default)]
pub(crate) struct Index {
    pub(crate) segs: BTreeMap<u32, Seg>,
    /// Every segment number below this was used (numbers never repeat, so
    /// recipient ids never do either).
    pub(crate) next_segment: u32,
    pub(crate) retries: HashMap<RecipientId, Retry>,
    pub(crate) summary: Summary,
}

impl Index {
    pub(crate) fn state(&self, id: RecipientId) -> Option<State> {
        let seg = self.segs.get(&id.segment())?;
        let b = *seg.states.get(id.index() as usize)?;
        Some(State::from_u8(b))
    }

    /// Fills in an outcome entry's previous state, campaign and address.
    /// Returns false when the recipient is unknown.
    pub(crate) fn stamp(&self, e: &mut Entry) -> bool {
        let Some(seg) = self.segs.get(&e.id.segment()) else {
            return false;
        };
        let Some(&st) = seg.states.get(e.id.index() as usize) else {
            return false;
        };
        e.prev = State::from_u8(st);
        match seg.record(e.id.index()) {
            Some(r) => {
                e.campaign = r.campaign.to_native();
                e.email = r.email.to_string();
            }
            None => e.campaign = seg.campaign_of(e.id.index()).unwrap_or(0),
        }
        true
    }

    /// Applies a stamped outcome written at journal position `pos`, to
    /// states and (when `count`) the summary. Returns false when the id is
    /// unknown.
    pub(crate) fn apply(&mut self, e: &Entry, pos: u64, count: bool) -> bool {
        let Some(new) = e.kind.outcome_state() else {
            return true;
        };
        let Some(seg) = self.segs.get_mut(&e.id.segment()) else {
            return false;
        };
        let Some(slot) = seg.states.get_mut(e.id.index() as usize) else {
            return false;
        };
        let old = State::from_u8(*slot);
        seg.last_pos = seg.last_pos.max(pos);
        if old.is_final() {
            return true;
        }
        *slot = new as u8;
        if new.is_final() {
            seg.pending = seg.pending.saturating_sub(1);
        }
        if count {
            self.summary.moved(e.campaign, e.domain(), old, new);
        }
        if new == State::Deferred {
            self.retries.insert(
                e.id,
                Retry {
                    attempts: e.attempts,
                    next_ms: e.next_ms,
                },
            );
        } else {
            self.retries.remove(&e.id);
        }
        true
    }

    /// Applies a replayed journal entry to the index and summary (campaign
    /// seals go to `sealed`). Returns false if an outcome entry did not
    /// apply (see [`Index::apply`]).
    pub(crate) fn replay(
        &mut self,
        sealed: &mut std::collections::BTreeSet<u32>,
        e: &Entry,
        pos: u64,
    ) -> bool {
        match e.kind {
            Kind::CampaignSealed => {
                sealed.insert(e.campaign);
                true
            }
            Kind::Feedback => true,
            Kind::Appended => {
                self.apply_appended(e, pos);
                true
            }
            Kind::SegmentRetired => {
                self.apply_retired(e, pos);
                true
            }
            Kind::SegmentCreated | Kind::SegmentSealed => {
                self.apply_mark(e, pos);
                true
            }
            Kind::Deferred | Kind::Delivered | Kind::Bounced | Kind::Failed => {
                self.apply(e, pos, true)
            }
        }
    }

    /// Applies an `Appended` entry, live (its records are indexed already)
    /// or replayed (they are added): counts, resume row, acceptance times.
    pub(crate) fn apply_appended(&mut self, e: &Entry, pos: u64) {
        if let Ok(counts) = crate::journal::decode_domain_counts(&e.detail) {
            for (d, c) in counts {
                self.summary.add(e.campaign, d, State::Queued, c.queued);
            }
        }
        self.summary.saw_row(e.campaign, e.last_row);
        self.apply_mark(e, pos);
    }

    /// Applies a `SegmentRetired` entry (live or replayed): its recipients
    /// leave the per-domain counts, then the segment goes.
    pub(crate) fn apply_retired(&mut self, e: &Entry, pos: u64) {
        if let Ok(counts) = crate::journal::decode_domain_counts(&e.detail) {
            for (d, c) in counts {
                if let Some(dc) = self.summary.domains.get_mut(d) {
                    for s in State::ALL {
                        dc.sub(s, c.get(s));
                    }
                }
            }
            self.summary.forget_empty_domains();
        }
        self.apply_mark(e, pos);
    }

    /// Applies a spool-level entry during replay (appends, segments).
    pub(crate) fn apply_mark(&mut self, e: &Entry, pos: u64) {
        let no = e.id.segment();
        if matches!(
            e.kind,
            Kind::Appended | Kind::SegmentCreated | Kind::SegmentSealed | Kind::SegmentRetired
        ) {
            self.next_segment = self.next_segment.max(no.saturating_add(1));
        }
        match e.kind {
            Kind::Appended => {
                let seg = self.segs.entry(no).or_default();
                let first = e.id.index() as usize;
                let end = first + e.records as usize;
                if seg.states.len() < end {
                    let from = seg.states.len().max(first);
                    seg.push_run(from as u32, e.campaign);
                    seg.pending += (end - seg.states.len()) as u64;
                    seg.states.resize(end, State::Queued as u8);
                }
                seg.accepted.set(first as u32, end as u32, e.at_ms);
                seg.journaled = seg.journaled.max(end as u32);
                seg.last_pos = seg.last_pos.max(pos);
            }
            Kind::SegmentCreated => {
                self.segs.entry(no).or_default();
            }
            Kind::SegmentSealed => {
                self.segs.entry(no).or_default().sealed = true;
            }
            Kind::SegmentRetired => {
                if let Some(seg) = self.segs.remove(&no) {
                    let first = RecipientId::new(no, 0);
                    let last = RecipientId::new(no, u32::MAX);
                    if seg.states.contains(&(State::Deferred as u8)) {
                        self.retries.retain(|id, _| *id < first || *id > last);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_find_campaigns() {
        let mut s = Seg::default();
        s.push_run(0, 4);
        s.push_run(10, 4);
        s.push_run(20, 5);
        assert_eq!(s.runs.len(), 2);
        assert_eq!(s.campaign_of(0), Some(4));
        assert_eq!(s.campaign_of(19), Some(4));
        assert_eq!(s.campaign_of(25), Some(5));
    }
}
