//! A site's queue (single recipients first, then the bulk lists found in
//! the spool at start, merged in spool order) and the cache of which
//! campaigns are non-personalized. Pure: no I/O beyond index lookups.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

use volley_spool::{RecipientId, Spool};

use super::Work;
use crate::campaign::CampaignDef;

/// What a shard is given.
pub enum ShardIn {
    /// One recipient (new, or due for a retry).
    One(Work),
    /// New recipients of one domain that came together (a submitted
    /// message's): queued at once, so those that may share a transaction
    /// are there to join it.
    Many(Vec<Work>),
    /// Recipients found queued at start, compact until dispatched (all of
    /// one domain).
    Bulk(Arc<str>, Vec<RecipientId>),
    /// An operator's "retry now": a down site is probed at once (taken by
    /// the shard; no recipient).
    ProbeNow,
    /// The operators' holds changed: recipients set aside are looked at
    /// again (taken by the shard; no recipient).
    HoldsChanged,
    /// The domain was rerouted: the shard gives its recipients of it back
    /// to the scheduler (taken by the shard; no recipient).
    GiveBack(Arc<str>),
    /// The service drains: the shard lets go of this sender once its site
    /// has nothing in flight (taken by the shard; no recipient).
    Quiet(tokio::sync::mpsc::Sender<()>),
}

impl ShardIn {
    /// Its recipients, one by one (none for the messages that carry
    /// none).
    pub fn into_works(self) -> Vec<Work> {
        match self {
            ShardIn::One(w) => vec![w],
            ShardIn::Many(ws) => ws,
            ShardIn::Bulk(d, ids) => ids
                .into_iter()
                .map(|id| Work {
                    id,
                    domain: Arc::clone(&d),
                    attempts: 0,
                })
                .collect(),
            ShardIn::ProbeNow
            | ShardIn::HoldsChanged
            | ShardIn::GiveBack(_)
            | ShardIn::Quiet(_) => Vec::new(),
        }
    }
}

/// A site's queue: single recipients first, then the bulk lists found in
/// the spool at start, merged in spool order across their domains (so that
/// segments finish, and are freed, in order).
#[derive(Default)]
pub(super) struct Queue {
    ones: VecDeque<Work>,
    /// Each list reversed (its next id at the back).
    bulk: Vec<(Arc<str>, Vec<RecipientId>)>,
    /// The next id of each non-empty list, smallest first.
    heads: BinaryHeap<Reverse<(RecipientId, usize)>>,
    pub(super) len: u64,
}

impl Queue {
    pub(super) fn push(&mut self, m: ShardIn) {
        match m {
            ShardIn::One(w) => {
                self.len += 1;
                self.ones.push_back(w);
            }
            ShardIn::Many(ws) => {
                self.len += ws.len() as u64;
                self.ones.extend(ws);
            }
            ShardIn::Bulk(domain, mut ids) => {
                ids.sort_unstable_by(|a, b| b.cmp(a));
                if let Some(&next) = ids.last() {
                    self.len += ids.len() as u64;
                    self.heads.push(Reverse((next, self.bulk.len())));
                    self.bulk.push((domain, ids));
                }
            }
            ShardIn::ProbeNow
            | ShardIn::HoldsChanged
            | ShardIn::GiveBack(_)
            | ShardIn::Quiet(_) => {}
        }
    }

    /// The recipient [`Queue::pop`] would return next.
    pub(super) fn peek(&self) -> Option<RecipientId> {
        if let Some(w) = self.ones.front() {
            return Some(w.id);
        }
        self.heads.peek().map(|Reverse((id, _))| *id)
    }

    pub(super) fn pop(&mut self) -> Option<Work> {
        if let Some(w) = self.ones.pop_front() {
            self.len -= 1;
            return Some(w);
        }
        let Reverse((_, i)) = self.heads.pop()?;
        let (domain, ids) = &mut self.bulk[i];
        let id = ids.pop()?;
        let domain = Arc::clone(domain);
        match ids.last() {
            Some(&next) => self.heads.push(Reverse((next, i))),
            None => *ids = Vec::new(), // free the list's memory
        }
        if self.heads.is_empty() {
            self.bulk.clear();
        }
        self.len -= 1;
        Some(Work {
            id,
            domain,
            attempts: 0,
        })
    }
}

/// Which campaigns are non-personalized (their recipients may share a
/// transaction), by campaign number.
#[derive(Default)]
pub(super) struct Campaigns(std::collections::HashMap<u32, bool>);

impl Campaigns {
    /// The campaign number of `id` when its campaign is non-personalized.
    pub(super) fn shared(&mut self, spool: &Spool, id: RecipientId) -> Option<u32> {
        let no = spool.campaign_of(id)?;
        let personalized = *self.0.entry(no).or_insert_with(|| {
            spool
                .campaign(no)
                .and_then(|c| CampaignDef::from_bytes(&c.body).ok())
                .is_none_or(|d| d.personalized)
        });
        (!personalized).then_some(no)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seg: u32, i: u32) -> RecipientId {
        RecipientId::new(seg, i)
    }

    #[test]
    fn singles_first_then_bulk_lists_merged_in_spool_order() {
        let mut q = Queue::default();
        q.push(ShardIn::Bulk(
            "a.test".into(),
            vec![id(1, 4), id(1, 0), id(2, 1)],
        ));
        q.push(ShardIn::Bulk("b.test".into(), vec![id(1, 2), id(1, 9)]));
        q.push(ShardIn::Bulk("c.test".into(), Vec::new()));
        q.push(ShardIn::One(Work {
            id: id(3, 0),
            domain: "r.test".into(),
            attempts: 2,
        }));
        assert_eq!(q.len, 6);
        let mut got = Vec::new();
        while let Some(next) = q.peek() {
            let w = q.pop().unwrap();
            assert_eq!(w.id, next, "peek shows what pop returns");
            got.push((w.id, w.domain.to_string(), w.attempts));
        }
        assert_eq!(q.len, 0);
        assert!(q.pop().is_none());
        let want = [
            (id(3, 0), "r.test", 2),
            (id(1, 0), "a.test", 0),
            (id(1, 2), "b.test", 0),
            (id(1, 4), "a.test", 0),
            (id(1, 9), "b.test", 0),
            (id(2, 1), "a.test", 0),
        ];
        let want: Vec<_> = want
            .iter()
            .map(|(i, d, a)| (*i, d.to_string(), *a))
            .collect();
        assert_eq!(got, want);
    }
}
