//! Delivery: the scheduler routes recipients to per-destination shards; each
//! shard rate-limits, has messages produced and drives pooled SMTP
//! connections; the recorder journals every outcome and schedules retries.
//!
//! ```text
//! ingest/spool ─► scheduler ─► shard (one per site: see `site`)
//!                    ▲   │        │ permit (in-flight window) + rate limit
//!                    │   │        ▼
//!          retries   │   │   production pool (render, MIME, DKIM)
//!                    │   │        ▼
//!                 recorder ◄── connection tasks (pipelined SMTP)
//! ```
//!
//! A recipient holds one permit of its shard's window from dispatch until its
//! outcome is durable in the journal, so at most `window` messages per shard
//! can be delivered-but-not-journaled when the process dies: that is the
//! bound on duplicates after a crash.

pub mod backoff;
pub mod budget;
pub mod connection;
pub mod dest;
pub mod egress;
pub mod endings;
pub mod health;
pub mod holds;
pub mod mx;
pub mod open;
pub mod produce;
mod queue;
pub mod recorder;
pub mod reroutes;
pub mod scheduler;
pub mod shard;
pub mod site;
pub mod site_limits;
pub mod sts;
pub mod throttle;
pub mod warmup;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use volley_spool::RecipientId;

use crate::message::headers::SentHeaders;
use crate::outcome::Outcome;

/// A recipient on its way through delivery.
#[derive(Debug, Clone)]
pub struct Work {
    pub id: RecipientId,
    pub domain: Arc<str>,
    /// Attempts made before this one.
    pub attempts: u32,
}

/// A recipient in flight and its window permit.
pub type Held = (Work, tokio::sync::OwnedSemaphorePermit);

/// A site's ready queue, sending end. Messages go boxed: the queue keeps a
/// block of slots per site even when idle, and a block of 31 pointers is
/// 1/20 of a block of 31 messages' fields (~50 KB over 10,000 sites).
pub type ReadyTx = async_channel::Sender<Box<Ready>>;
/// A site's ready queue, receiving end (its connections).
pub type ReadyRx = async_channel::Receiver<Box<Ready>>;

/// A message waiting in a site's ready queue: one recipient, or several
/// recipients of a non-personalized campaign sharing one transaction.
pub struct Ready {
    pub works: Vec<Held>,
    pub msg: crate::message::Outgoing,
    /// Its place among the messages produced ahead for the site's
    /// connections; given back when a connection takes it.
    pub ticket: Option<dest::ReadyTicket>,
}

/// The outcome of one attempt, on its way to the recorder.
pub struct Report {
    pub work: Work,
    pub outcome: Outcome,
    pub subject: String,
    /// The headers of the message tried, when one was produced.
    pub headers: Option<Arc<SentHeaders>>,
    pub at_ms: u64,
    /// Released once the outcome is durable.
    pub permit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The metric handles of the site it was tried at, if any.
    pub site: Option<Arc<crate::metrics::SiteMetrics>>,
    /// The retry schedule of the recipient's destination (the default
    /// schedule when `None`).
    pub retry: Option<backoff::Backoff>,
    /// A deferral is not retried before this (ms since the epoch): a down
    /// site's next probe.
    pub not_before: Option<u64>,
}

impl Report {
    /// The outcome of a recipient that was not tried at a site (the
    /// message could not be produced, or the recipient is suppressed).
    pub fn untried(
        work: Work,
        outcome: Outcome,
        subject: String,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Report {
        Report {
            work,
            outcome,
            subject,
            headers: None,
            at_ms: volley_spool::now_ms(),
            permit,
            site: None,
            retry: None,
            not_before: None,
        }
    }
}

/// Live counters shared by the stages, the progress display and `send`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Recipients handed to delivery whose outcome is not yet journaled.
    pub active: AtomicI64,
    /// Deferred recipients waiting for their retry time.
    pub waiting: AtomicI64,
    pub delivered: AtomicU64,
    pub bounced: AtomicU64,
    pub failed: AtomicU64,
    pub deferrals: AtomicU64,
    /// Running connection tasks (open or not).
    pub connection_tasks: AtomicI64,
    /// Running site shards.
    pub shards: AtomicI64,
}

impl Stats {
    /// The queue counts metrics show.
    pub fn queues(&self) -> crate::metrics::Queues {
        crate::metrics::Queues {
            in_flight: self.active.load(Ordering::Relaxed),
            waiting: self.waiting.load(Ordering::Relaxed),
            sites: self.shards.load(Ordering::Relaxed),
        }
    }

    pub fn finals(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
            + self.bounced.load(Ordering::Relaxed)
            + self.failed.load(Ordering::Relaxed)
    }
}
