//! The operators' actions on a running engine, through its [`Handle`]:
//! holds, reroutes, "retry now", cancelling a campaign and bouncing a
//! domain's queue (`volley queue`, see
//! `cli/queue.rs`); each reaches delivery as a scheduler message. Exposure:
//! values from the control socket (a local client of the service's user).

use std::sync::Arc;

use super::Handle;
use crate::delivery::holds::{Hold, HoldSet};
use crate::delivery::scheduler::SchedMsg;
use crate::metrics::{HoldLabels, Metrics};

impl Handle {
    /// The operators' holds in force.
    pub fn holds(&self) -> Arc<HoldSet> {
        self.holds.get()
    }

    /// Puts an operator's hold on (`true`) or off, stored before this
    /// returns; whether it changed anything. Shards look again at what
    /// they set aside.
    pub async fn hold(&self, h: Hold, on: bool) -> std::io::Result<bool> {
        let holds = Arc::clone(&self.holds);
        let h2 = h.clone();
        let changed = tokio::task::spawn_blocking(move || holds.set(&h2, on))
            .await
            .map_err(std::io::Error::other)??;
        if changed {
            hold_metric(&self.metrics, &h, on);
            let _ = self.sched.send(SchedMsg::HoldsChanged);
        }
        Ok(changed)
    }

    /// The operators' reroutes in force (domain → `host:port`).
    pub fn reroutes(&self) -> Arc<std::collections::BTreeMap<String, String>> {
        self.reroutes.get()
    }

    /// Reroutes `domain` to `to` (`None`: clears it), stored before this
    /// returns; whether it changed anything. The domain's recipients queued
    /// at its old site go the new way.
    pub async fn reroute(&self, domain: &str, to: Option<String>) -> Result<bool, String> {
        let (reroutes, d) = (Arc::clone(&self.reroutes), domain.to_ascii_lowercase());
        let key = d.clone();
        let changed = tokio::task::spawn_blocking(move || reroutes.set(&key, to.as_deref()))
            .await
            .map_err(|e| e.to_string())??;
        if changed {
            let _ = self.sched.send(SchedMsg::Rerouted(Arc::from(d)));
        }
        Ok(changed)
    }

    /// The operators' endings in force (cancelled campaigns, bounced
    /// domains).
    pub fn endings(&self) -> Arc<crate::delivery::endings::EndSet> {
        self.endings.get()
    }

    /// Ends `end` (a campaign cancelled: its unsent recipients end with a
    /// `Reject`; a domain bounced: its recipients queued now end with a
    /// `Bounce`), stored before this returns; whether it changed anything.
    /// What the scheduler and the shards hold gets its outcome at once.
    pub async fn end(
        &self,
        end: crate::delivery::endings::End,
        reason: Option<String>,
    ) -> std::io::Result<bool> {
        let (endings, spool) = (Arc::clone(&self.endings), Arc::clone(&self.spool));
        let changed = tokio::task::spawn_blocking(move || {
            let mark = spool.append_mark();
            endings.add(&end, reason.as_deref(), mark, volley_spool::now_ms())
        })
        .await
        .map_err(std::io::Error::other)??;
        if changed {
            let _ = self.sched.send(SchedMsg::HoldsChanged);
        }
        Ok(changed)
    }

    /// Drains delivery (`on`): no attempt starts, and this returns once
    /// every attempt in flight has its outcome journaled (or after
    /// `wait`: whether it came to that). With `on` false, delivery takes
    /// its queues again.
    pub async fn drain(&self, on: bool, wait: std::time::Duration) -> bool {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.metrics.draining.set(i64::from(on));
        if self.sched.send(SchedMsg::Drain(on, tx)).is_err() {
            return false;
        }
        tokio::time::timeout(wait, rx)
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// An operator's action on a source's warm-up (stored before this
    /// returns).
    pub async fn warmup(
        &self,
        source: String,
        action: crate::delivery::warmup::Action,
    ) -> Result<(), String> {
        let egress = Arc::clone(&self.egress);
        tokio::task::spawn_blocking(move || {
            let today = crate::delivery::warmup::day_of(volley_spool::now_ms());
            egress.warmup.act(&source, action, today)?;
            egress.store_warmup();
            Ok(())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// The warming sources' standings today.
    pub fn warmups(&self) -> Vec<crate::delivery::warmup::Standing> {
        let today = crate::delivery::warmup::day_of(volley_spool::now_ms());
        self.egress.warmup.standings(today)
    }

    /// An operator's "retry now": the deferred recipients `which` names
    /// are tried at once (their sites probed at once when down). How many
    /// were made due; `None` when delivery is shutting down.
    pub async fn retry_now(&self, which: crate::delivery::scheduler::Deferred) -> Option<u64> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.sched.send(SchedMsg::RetryNow(which, tx)).ok()?;
        rx.await.ok()
    }
}

/// Shows a hold in `volley_holds` (or removes it).
pub(super) fn hold_metric(metrics: &Metrics, h: &Hold, on: bool) {
    let labels = match h {
        Hold::Domain(d) => HoldLabels {
            kind: "domain",
            name: d.to_ascii_lowercase(),
        },
        Hold::Site(s) => HoldLabels {
            kind: "site",
            name: s.clone(),
        },
        Hold::Campaign(c) => HoldLabels {
            kind: "campaign",
            name: c.clone(),
        },
    };
    if on {
        metrics.holds.get_or_create(&labels).set(1);
    } else {
        metrics.holds.remove(&labels);
    }
}
