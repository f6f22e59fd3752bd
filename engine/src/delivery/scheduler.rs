//! The scheduler: owns the map of destination shards and the retry timer.
//!
//! New recipients are routed at once to the shard of their domain (created on
//! first use). Deferred recipients wait in a min-heap keyed by retry time;
//! the task sleeps until the earliest is due (no polling). Exposure: none.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use super::Work;
use super::shard::{self, ShardCtx, ShardIn};

/// Messages to the scheduler.
pub enum SchedMsg {
    /// New recipients (already counted in `Stats::active`).
    Work(Vec<Work>),
    /// Recipients of one domain found queued in the spool at start (already
    /// counted in `Stats::active`); kept compact until dispatched.
    Bulk(Arc<str>, Vec<volley_spool::RecipientId>),
    /// A deferred recipient and when to try again (ms since the epoch;
    /// already counted in `Stats::waiting`).
    Retry(Work, u64),
}

struct Due {
    at: u64,
    seq: u64,
    work: Work,
}

impl PartialEq for Due {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Due {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// Runs until the channel closes or shutdown is signalled.
pub async fn run(
    ctx: Arc<ShardCtx>,
    mut rx: mpsc::UnboundedReceiver<SchedMsg>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut shards: HashMap<Arc<str>, mpsc::UnboundedSender<ShardIn>> = HashMap::new();
    let mut timers: BinaryHeap<Reverse<Due>> = BinaryHeap::new();
    let mut seq = 0u64;
    let dispatch =
        |domain: &Arc<str>,
         msg: ShardIn,
         shards: &mut HashMap<Arc<str>, mpsc::UnboundedSender<ShardIn>>| {
            let tx = shards
                .entry(Arc::clone(domain))
                .or_insert_with(|| shard::spawn(Arc::clone(&ctx), Arc::clone(domain)));
            let _ = tx.send(msg);
        };
    loop {
        let now = volley_spool::now_ms();
        while timers.peek().is_some_and(|Reverse(d)| d.at <= now) {
            let Some(Reverse(d)) = timers.pop() else {
                break;
            };
            ctx.stats.active.fetch_add(1, Ordering::AcqRel);
            ctx.stats.waiting.fetch_sub(1, Ordering::AcqRel);
            let domain = Arc::clone(&d.work.domain);
            dispatch(&domain, ShardIn::One(d.work), &mut shards);
        }
        let sleep_ms = timers
            .peek()
            .map_or(3_600_000, |Reverse(d)| d.at.saturating_sub(now));
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(SchedMsg::Work(batch)) => {
                    for w in batch {
                        let domain = Arc::clone(&w.domain);
                        dispatch(&domain, ShardIn::One(w), &mut shards);
                    }
                }
                Some(SchedMsg::Bulk(domain, ids)) => dispatch(&domain, ShardIn::Bulk(ids), &mut shards),
                Some(SchedMsg::Retry(work, at)) => {
                    seq += 1;
                    timers.push(Reverse(Due { at, seq, work }));
                }
                None => break,
            },
            _ = tokio::time::sleep(std::time::Duration::from_millis(sleep_ms)) => {}
            _ = shutdown.changed() => break,
        }
    }
}
