//! What a site's recipients are told: one outcome per recipient of a
//! message after its transaction, and the deferral of recipients (queued
//! or already produced) while the site is down, which waits for the next
//! probe and is bounded in flight. Exposure: none (internal).

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::OwnedSemaphorePermit;

use super::super::backoff::Backoff;
use super::super::shard::ShardCtx;
use super::super::{Ready, Report, Work};
use super::{Dest, lock};
use crate::message::headers::SentHeaders;
use crate::outcome::Outcome;

impl Dest {
    /// The outcome of a recipient deferred because the site is down: the
    /// site's fault, noting that this recipient was not tried.
    fn down_outcome(&self) -> Outcome {
        match lock(&self.fault).clone() {
            Some(Outcome::Deferred {
                status,
                diagnostic,
                delay_type,
            }) => Outcome::Deferred {
                status,
                diagnostic: format!("{diagnostic} (the site is down; not tried this time)"),
                delay_type,
            },
            _ => Outcome::Deferred {
                status: "4.4.1".into(),
                diagnostic: "smtp; 421 4.4.1 the site is down; not tried this time".into(),
                delay_type: "TransientCommunicationFailure",
            },
        }
    }

    /// The earliest time (ms since the epoch) a recipient deferred now
    /// should come back: when the next probe is due.
    fn probe_ms(&self, probe_at: Option<Instant>) -> Option<u64> {
        let wait = probe_at?.saturating_duration_since(Instant::now());
        Some(volley_spool::now_ms().saturating_add(wait.as_millis() as u64))
    }

    /// A permit for one deferral report of a down site.
    pub(in crate::delivery) async fn deferral_slot(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.deferrals).acquire_owned().await.ok()
    }

    /// Defers `work` because the site is down, until `probe_at` at the
    /// earliest; `permit` is released once the deferral is journaled.
    pub(in crate::delivery) fn defer_down(
        &self,
        ctx: &ShardCtx,
        work: Work,
        permit: OwnedSemaphorePermit,
        produced: Option<(&str, &Arc<SentHeaders>)>,
        probe_at: Option<Instant>,
    ) {
        let _ = ctx.recorder.send(Report {
            work,
            outcome: self.down_outcome(),
            subject: produced.map(|(s, _)| s.to_string()).unwrap_or_default(),
            headers: produced.map(|(_, h)| Arc::clone(h)),
            at_ms: volley_spool::now_ms(),
            permit: Some(permit),
            site: Some(Arc::clone(&self.m)),
            retry: Some(Backoff::from(&self.policy())),
            not_before: self.probe_ms(probe_at),
        });
    }

    /// Reports one outcome per recipient of a message: `outcomes` in the
    /// order of its recipients, the last one repeating when there are fewer
    /// (one outcome for the whole transaction); `outcomes` is never empty.
    pub fn report(&self, ctx: &ShardCtx, r: Ready, outcomes: &[Outcome]) {
        let retry = Some(Backoff::from(&self.policy()));
        let at_ms = volley_spool::now_ms();
        for (i, (work, permit)) in r.works.into_iter().enumerate() {
            let outcome = match outcomes.get(i).or(outcomes.last()) {
                Some(o) => o.clone(),
                // not reached; deferring keeps the recipient rather than losing it
                None => Outcome::Deferred {
                    status: "4.3.0".into(),
                    diagnostic: "smtp; 451 4.3.0 internal: no outcome for this recipient".into(),
                    delay_type: "InternalFailure",
                },
            };
            let _ = ctx.recorder.send(Report {
                work,
                outcome,
                subject: r.msg.subject.clone(),
                headers: Some(Arc::clone(&r.msg.headers)),
                at_ms,
                permit: Some(permit),
                site: Some(Arc::clone(&self.m)),
                retry,
                not_before: None,
            });
        }
    }

    /// Defers a produced message because the site is down.
    pub fn defer_ready(&self, ctx: &ShardCtx, r: Ready) {
        let probe_at = self.probe_at();
        let produced = Some((r.msg.subject.as_str(), &r.msg.headers));
        for (work, permit) in r.works {
            self.defer_down(ctx, work, permit, produced, probe_at);
        }
    }
}
