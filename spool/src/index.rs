//! The in-memory index: where each record is and what state it is in.
//!
//! Per segment: the map, each record's frame offset and a one-byte state per
//! recipient; plus attempt count and next-attempt time for deferred
//! recipients. Rebuilt at open from the segments and the journal; updated
//! after each durable append or journal commit. A final state never reverts
//! (a duplicate delivery after a crash cannot un-deliver anyone).

use std::collections::{BTreeMap, HashMap};

use crate::journal::{Entry, Kind};
use crate::segment::LOST;
use crate::{RecipientId, State};

/// Retry bookkeeping of a deferred recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (ms since the Unix epoch).
    pub next_ms: u64,
}

pub(crate) struct Seg {
    pub(crate) map: memmap2::Mmap,
    pub(crate) offsets: Vec<u32>,
    pub(crate) states: Vec<u8>,
}

#[derive(Default)]
pub(crate) struct Index {
    pub(crate) segs: BTreeMap<u32, Seg>,
    pub(crate) retries: HashMap<RecipientId, Retry>,
}

impl Index {
    pub(crate) fn state(&self, id: RecipientId) -> Option<State> {
        let seg = self.segs.get(&id.segment())?;
        let b = *seg.states.get(id.index() as usize)?;
        Some(State::from_u8(b))
    }

    /// Applies a recipient entry; returns false when the id is unknown.
    pub(crate) fn apply(&mut self, e: &Entry) -> bool {
        let new = match e.kind {
            Kind::Deferred => State::Deferred,
            Kind::Delivered => State::Delivered,
            Kind::Bounced => State::Bounced,
            Kind::Failed => State::Failed,
            Kind::CampaignSealed => return true,
        };
        let Some(seg) = self.segs.get_mut(&e.id.segment()) else {
            return false;
        };
        let Some(slot) = seg.states.get_mut(e.id.index() as usize) else {
            return false;
        };
        let old = State::from_u8(*slot);
        if old.is_final() {
            return true;
        }
        *slot = new as u8;
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

    /// Adds a segment's records (all queued, damaged ones lost).
    pub(crate) fn add_segment(&mut self, no: u32, map: memmap2::Mmap, offsets: Vec<u32>) {
        let states = offsets
            .iter()
            .map(|&o| {
                if o == LOST {
                    State::Lost as u8
                } else {
                    State::Queued as u8
                }
            })
            .collect();
        self.segs.insert(
            no,
            Seg {
                map,
                offsets,
                states,
            },
        );
    }
}
