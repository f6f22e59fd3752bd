//! The recorder: makes every outcome durable in the journal, then releases
//! the recipient's permit, schedules its retry and wakes the event pump.
//!
//! Runs on its own thread and commits outcomes in batches (everything that
//! arrives within a few milliseconds of a batch's first outcome, see
//! [`GATHER`]), so one sync serves many messages. Deferrals become a retry time by the retry schedule of the
//! recipient's destination (never before a down site's next probe, never
//! after the recipient's expiry), or a final Transient bounce when the
//! failure comes at or after the expiry: acceptance + `max_age`. If the
//! journal cannot be written for a while (disk full) it keeps retrying with
//! a growing pause (logging when it starts and at most once a minute after)
//! and holds the permits, which stops new sends to the affected shards
//! rather than losing outcomes. If the spool fails for good (a failed
//! fdatasync: it then refuses every write until reopened) it says so once,
//! halts dispatching through the engine's stop signal and waits for the
//! engine to stop; `/healthz` and `volley_healthy` report it from the
//! spool. Exposure: none (internal messages only).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use volley_spool::{Entry, Kind, Spool};

use super::backoff::{Backoff, Next};
use super::scheduler::SchedMsg;
use super::{Report, Stats};
use crate::events::detail::Detail;
use crate::metrics::Metrics;
use crate::outcome::{self, Outcome};

/// What the recorder needs.
pub struct RecorderCtx {
    pub spool: Arc<Spool>,
    /// The default retry schedule (for reports that carry none).
    pub backoff: Backoff,
    pub scheduler: tokio::sync::mpsc::UnboundedSender<SchedMsg>,
    pub stats: Arc<Stats>,
    pub metrics: Arc<Metrics>,
    /// Wakes each event pump after a commit.
    pub wake_pumps: Vec<crossbeam_channel::Sender<()>>,
    /// Set at shutdown: stop retrying a failing journal.
    pub stop: Arc<AtomicBool>,
    /// The engine's stop signal for dispatching, sent when the spool fails
    /// for good (no transaction starts after it).
    pub halt: tokio::sync::watch::Sender<bool>,
}

/// Least time between two log lines about a journal that keeps failing.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Journals `entries`, retrying while the failure may pass (e.g. a full
/// disk). Returns false when they cannot be journaled: the spool failed for
/// good (see [`halt`]) or the engine is stopping.
fn journal(ctx: &RecorderCtx, entries: &[Entry]) -> bool {
    let mut pause = Duration::from_millis(100);
    let mut failures = 0u64;
    let mut logged: Option<Instant> = None;
    loop {
        let e = match ctx.spool.record(entries) {
            Ok(_) => {
                if failures > 0 {
                    tracing::info!(failures, "outcomes are journaled again");
                }
                return true;
            }
            Err(e) => e,
        };
        ctx.metrics.journal_errors.inc();
        failures += 1;
        if let Some(why) = ctx.spool.failure() {
            halt(ctx, &why);
            return false;
        }
        if logged.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
            tracing::error!(error = %e, outcomes = entries.len(), failures, "cannot journal outcomes; retrying (delivery to these destinations is paused)");
            logged = Some(Instant::now());
        }
        if ctx.stop.load(Ordering::Acquire) {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// The spool refuses writes for good: says so once, stops dispatching (open
/// transactions finish, none starts) and waits, without work, until the
/// engine stops. What was not journaled stays queued in the spool and is
/// delivered again after a restart (at-least-once).
fn halt(ctx: &RecorderCtx, why: &str) {
    tracing::error!(
        reason = why,
        "the spool failed: delivery is halted and /healthz reports 503; restart volley to reopen the spool"
    );
    let _ = ctx.halt.send(true);
    while !ctx.stop.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// When the recipient of `r` was accepted into the spool (its campaign's
/// creation when the spool does not know, now when neither is known).
fn accepted_ms(spool: &Spool, r: &Report, now_ms: u64) -> u64 {
    spool.accepted_ms(r.work.id).unwrap_or_else(|| {
        spool
            .campaign_of(r.work.id)
            .and_then(|no| spool.campaign(no))
            .map_or(now_ms, |c| c.created_ms)
    })
}

/// Converts a report into its journal entry (and retry time, if any).
fn entry(ctx: &RecorderCtx, r: &Report, now_ms: u64) -> (Entry, Option<u64>, Outcome, u64) {
    let attempts = r.work.attempts + 1;
    let created = accepted_ms(&ctx.spool, r, now_ms);
    // the spool's time may be up to a granule early (appends that came
    // close together share one): max_age must not start early
    let clock = created.saturating_add(volley_spool::ACCEPTED_GRANULE_MS);
    let backoff = r.retry.unwrap_or(ctx.backoff);
    let mut outcome = r.outcome.clone();
    let mut next = None;
    if let Outcome::Deferred { diagnostic, .. } = &r.outcome {
        let not_before = r.not_before.unwrap_or(0);
        match backoff.next(clock, attempts, now_ms, fastrand::f64(), not_before) {
            Next::RetryAt(t) => next = Some(t),
            Next::GiveUp => outcome = outcome::expired(diagnostic),
        }
    }
    let kind = match outcome {
        Outcome::Delivered { .. } => Kind::Delivered,
        Outcome::Deferred { .. } => Kind::Deferred,
        Outcome::Bounced { .. } => Kind::Bounced,
        Outcome::RenderFailed { .. } | Outcome::Rejected { .. } => Kind::Failed,
    };
    let mut detail = Detail::of(&outcome, &r.subject, Some(backoff.expires(clock)), None);
    detail.accepted_ms = Some(created);
    // the headers sent, as written once for their message
    let detail = match &r.headers {
        Some(h) => detail.encode_sent(h),
        None => detail.encode(),
    };
    let e = Entry::outcome(
        kind,
        r.work.id,
        attempts,
        r.at_ms,
        next.unwrap_or(0),
        detail,
    );
    (e, next, outcome, created)
}

/// Most outcomes in one commit.
const MAX_BATCH: usize = 8192;
/// How long the first outcome of a commit may wait for others: one
/// fdatasync then serves every outcome of that time, not the one or two
/// that came while the previous sync ran (at thousands of messages a
/// second that was a sync per message or two, the recorder's main cost).
/// The in-flight window holds these few milliseconds of outcomes.
const GATHER: Duration = Duration::from_millis(8);
/// The recorder looks for more outcomes this often while gathering; a
/// look that finds none ends the gathering (outcomes stopped coming:
/// waiting longer would only delay them).
const STEP: Duration = Duration::from_millis(1);
/// Outcomes that make a batch worth its sync without waiting longer (a
/// transaction of many recipients reports them together, and its site's
/// window is about one transaction: waiting would idle it).
const ENOUGH: usize = 32;

/// Takes what `rx` holds into `batch` (up to [`MAX_BATCH`]); true when
/// every sender is gone.
fn drain<T>(rx: &crossbeam_channel::Receiver<T>, batch: &mut Vec<T>) -> bool {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(r) => batch.push(r),
            Err(e) => return e.is_disconnected(),
        }
    }
    false
}

/// The batch that starts with `first`: the outcomes that follow it within
/// [`GATHER`] while they keep coming, up to [`ENOUGH`] (or what is
/// already there, up to [`MAX_BATCH`]). The thread sleeps in steps rather
/// than being woken by each report.
fn gather<T>(rx: &crossbeam_channel::Receiver<T>, first: T) -> Vec<T> {
    let start = Instant::now();
    let mut batch = vec![first];
    let mut gone = drain(rx, &mut batch);
    loop {
        let left = GATHER.saturating_sub(start.elapsed());
        if batch.len() >= ENOUGH || left.is_zero() || gone {
            return batch;
        }
        let had = batch.len();
        std::thread::sleep(left.min(STEP));
        gone = drain(rx, &mut batch);
        if batch.len() == had {
            return batch;
        }
    }
}

/// Runs until every sender of `rx` is dropped, or `stop` is set and nothing
/// is waiting.
pub fn run(ctx: &RecorderCtx, rx: &crossbeam_channel::Receiver<Report>) {
    loop {
        let first = match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(r) => r,
            Err(crossbeam_channel::RecvTimeoutError::Timeout)
                if ctx.stop.load(Ordering::Acquire) =>
            {
                return;
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                // idle: finished messages go too (checked every few seconds)
                if let Err(e) = ctx
                    .spool
                    .reclaim_messages(volley_spool::MESSAGES_RECLAIM_EVERY)
                {
                    tracing::warn!(error = %e, "reclaiming finished messages failed (retried later)");
                }
                continue;
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        };
        let batch = gather(rx, first);
        let now = volley_spool::now_ms();
        let mut entries = Vec::with_capacity(batch.len());
        let mut decided = Vec::with_capacity(batch.len());
        for r in &batch {
            let (e, next, outcome, created) = entry(ctx, r, now);
            entries.push(e);
            decided.push((next, outcome, created));
        }
        if !journal(ctx, &entries) {
            return;
        }
        for (r, (next, outcome, created)) in batch.into_iter().zip(decided) {
            ctx.metrics.observe(r.site.as_deref(), &outcome);
            if matches!(outcome, Outcome::Delivered { .. }) {
                let secs = r.at_ms.saturating_sub(created) as f64 / 1000.0;
                ctx.metrics.delivery_latency.observe(secs);
            }
            match outcome {
                Outcome::Delivered { .. } => ctx.stats.delivered.fetch_add(1, Ordering::Relaxed),
                Outcome::Bounced { .. } => ctx.stats.bounced.fetch_add(1, Ordering::Relaxed),
                Outcome::RenderFailed { .. } | Outcome::Rejected { .. } => {
                    ctx.stats.failed.fetch_add(1, Ordering::Relaxed)
                }
                Outcome::Deferred { .. } => ctx.stats.deferrals.fetch_add(1, Ordering::Relaxed),
            };
            if let Some(at) = next {
                let mut work = r.work;
                work.attempts += 1;
                ctx.stats.waiting.fetch_add(1, Ordering::AcqRel);
                let _ = ctx.scheduler.send(SchedMsg::Retry(work, at));
            }
            // the outcome is durable: release the in-flight slot
            ctx.stats.active.fetch_sub(1, Ordering::AcqRel);
            drop(r.permit);
        }
        for w in &ctx.wake_pumps {
            let _ = w.try_send(());
        }
        // segments whose recipients are now all final go (freeing disk)
        if let Err(e) = ctx.spool.reclaim() {
            if let Some(why) = ctx.spool.failure() {
                halt(ctx, &why);
                return;
            }
            tracing::warn!(error = %e, "reclaiming finished segments failed (retried later)");
        }
        // and ready-made messages whose events every sink has published
        if let Err(e) = ctx
            .spool
            .reclaim_messages(volley_spool::MESSAGES_RECLAIM_EVERY)
        {
            tracing::warn!(error = %e, "reclaiming finished messages failed (retried later)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_commits_at_once_and_whole() {
        let (tx, rx) = crossbeam_channel::unbounded();
        for i in 1..100 {
            tx.send(i).unwrap();
        }
        // what is waiting is taken, however much more than ENOUGH
        let batch = gather(&rx, 0);
        assert_eq!(batch, (0..100).collect::<Vec<_>>());
        assert!(rx.is_empty());
    }

    #[test]
    fn a_lone_outcome_is_not_held_for_others() {
        let (tx, rx) = crossbeam_channel::unbounded::<u32>();
        // nothing follows: the first quiet step ends the gathering
        assert_eq!(gather(&rx, 7), vec![7]);
        drop(tx);
        assert_eq!(gather(&rx, 8), vec![8]);
    }

    #[test]
    fn outcomes_that_keep_coming_share_a_commit() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let feeder = std::thread::spawn(move || {
            for i in 1..=ENOUGH as u32 {
                tx.send(i).unwrap();
                std::thread::sleep(Duration::from_micros(100));
            }
        });
        let mut got = gather(&rx, 0);
        feeder.join().unwrap();
        // a batch never loses or reorders what it took; the rest comes next
        while let Ok(x) = rx.try_recv() {
            got.push(x);
        }
        assert_eq!(got, (0..=ENOUGH as u32).collect::<Vec<_>>());
    }
}
