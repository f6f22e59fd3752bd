//! The scheduler's part in the operators' endings
//! ([`crate::delivery::endings`]): what it holds (arriving, deferred,
//! waiting for a lookup) that an operator ended gets its outcome at once.
//! Exposure: none (internal).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use volley_spool::RecipientId;

use super::super::shard::ShardIn;
use super::super::{Report, Work};
use super::{Domain, Due, Scheduler};
use crate::outcome;

impl Scheduler {
    /// Reports the outcome of a recipient an operator ended.
    pub(super) fn end(&self, work: Work, outcome: outcome::Outcome) {
        let _ = self
            .ctx
            .recorder
            .send(Report::untried(work, outcome, String::new(), None));
    }

    /// `msg` without the recipients an operator ended (they get their
    /// outcome); `None` when none is left.
    pub(super) fn unended(&self, msg: ShardIn) -> Option<ShardIn> {
        let endings = &self.ctx.endings;
        if endings.none() {
            return Some(msg);
        }
        let set = endings.get();
        let spool = &self.ctx.spool;
        let keep = |w: Work| match set.verdict(spool, &w) {
            Some(o) => {
                self.end(w, o);
                None
            }
            None => Some(w),
        };
        let left = match msg {
            ShardIn::One(w) => keep(w).map(ShardIn::One),
            ShardIn::Many(ws) => Some(ShardIn::Many(ws.into_iter().filter_map(keep).collect())),
            ShardIn::Bulk(d, ids) => {
                let ids: Vec<RecipientId> = ids
                    .into_iter()
                    .filter_map(|id| {
                        let w = Work {
                            id,
                            domain: Arc::clone(&d),
                            attempts: 0,
                        };
                        keep(w).map(|w| w.id)
                    })
                    .collect();
                Some(ShardIn::Bulk(d, ids))
            }
            other => Some(other),
        };
        left.filter(|m| match m {
            ShardIn::Many(ws) => !ws.is_empty(),
            ShardIn::Bulk(_, ids) => !ids.is_empty(),
            _ => true,
        })
    }

    /// The endings changed: the deferred recipients and those waiting for
    /// a lookup that an operator ended get their outcome now.
    pub(super) fn end_waiting(&mut self, timers: &mut BinaryHeap<Reverse<Due>>) {
        if self.ctx.endings.none() {
            return;
        }
        let set = self.ctx.endings.get();
        let all = std::mem::take(timers).into_vec();
        let mut ended = 0u64;
        for Reverse(d) in all {
            match set.verdict(&self.ctx.spool, &d.work) {
                Some(o) => {
                    self.ctx.stats.active.fetch_add(1, Ordering::AcqRel);
                    self.ctx.stats.waiting.fetch_sub(1, Ordering::AcqRel);
                    self.end(d.work, o);
                    ended += 1;
                }
                None => timers.push(Reverse(d)),
            }
        }
        let resolving: Vec<Arc<str>> = self
            .domains
            .iter()
            .filter(|(_, m)| matches!(m, Domain::Resolving(_)))
            .map(|(d, _)| Arc::clone(d))
            .collect();
        for d in resolving {
            if let Some(Domain::Resolving(waiting)) = self.domains.remove(&d) {
                let left = waiting
                    .into_iter()
                    .filter_map(|m| self.unended(m))
                    .collect();
                self.domains.insert(d, Domain::Resolving(left));
            }
        }
        if ended > 0 {
            tracing::info!(
                recipients = ended,
                "deferred recipients ended by an operator"
            );
        }
    }
}
