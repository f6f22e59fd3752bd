//! A shard: the single owner of one destination domain's queue, rate limit,
//! in-flight window and connection pool.
//!
//! For each recipient it takes a window permit (held until the outcome is
//! journaled), waits for the governor rate limiter, and submits the message
//! to the production pool, whose output lands in the shard's ready queue.
//! It starts connection tasks while fewer than the cap are open and there is
//! more in flight than connections. Exposure: none (internal).

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use governor::{Quota, RateLimiter};
use tokio::sync::{Semaphore, mpsc, watch};

use super::connection;
use super::mx::Resolver;
use super::smtp::{Timeouts, TlsSettings};
use super::{Report, Stats, Work};
use crate::config::{Config, Route};
use crate::message::{Job, Producer};
use crate::metrics::Metrics;

/// Everything shards and their connections share.
pub struct ShardCtx {
    pub config: Arc<Config>,
    pub producer: Producer,
    pub recorder: crossbeam_channel::Sender<Report>,
    pub stats: Arc<Stats>,
    pub metrics: Arc<Metrics>,
    pub tls: TlsSettings,
    pub timeouts: Timeouts,
    pub resolver: Arc<Resolver>,
    pub shutdown: watch::Receiver<bool>,
    /// Close a connection after this long without work.
    pub idle: Duration,
    /// One clock for every shard's rate limiter (making one calibrates it).
    pub clock: governor::clock::DefaultClock,
}

/// One destination as its connections see it.
pub struct Dest {
    pub domain: Arc<str>,
    pub route: Option<Route>,
    pub max_conns: usize,
    pub window: usize,
    pub permits: Arc<Semaphore>,
    pub live: AtomicUsize,
}

impl Dest {
    /// Messages of this shard between dispatch and journaled outcome.
    pub fn in_flight(&self) -> usize {
        self.window - self.permits.available_permits()
    }
}

/// What a shard is given.
pub enum ShardIn {
    /// One recipient (new, or due for a retry).
    One(Work),
    /// Recipients found queued at start, compact until dispatched.
    Bulk(Vec<volley_spool::RecipientId>),
}

/// Starts the shard of `domain`; returns its input queue.
pub fn spawn(ctx: Arc<ShardCtx>, domain: Arc<str>) -> mpsc::UnboundedSender<ShardIn> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(ctx, domain, rx));
    tx
}

fn quota(rate: f64, burst: u32) -> Quota {
    let period = Duration::from_secs_f64(1.0 / rate).max(Duration::from_nanos(1));
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(period).map_or_else(
        || Quota::per_second(NonZeroU32::MIN),
        |q| q.allow_burst(burst),
    )
}

async fn run(ctx: Arc<ShardCtx>, domain: Arc<str>, mut rx: mpsc::UnboundedReceiver<ShardIn>) {
    let (rate, conns) = ctx.config.limits_for(&domain);
    let conns = conns as usize;
    let window = (conns * 4).max(8);
    let dest = Arc::new(Dest {
        route: ctx.config.route_for(&domain),
        domain: Arc::clone(&domain),
        max_conns: conns,
        window,
        permits: Arc::new(Semaphore::new(window)),
        live: AtomicUsize::new(0),
    });
    let limiter = RateLimiter::direct_with_clock(quota(rate, conns as u32), ctx.clock.clone());
    let (ready_tx, ready_rx) = async_channel::unbounded();
    let mut shutdown = ctx.shutdown.clone();
    tracing::debug!(%domain, rate, conns, "shard started");
    let mut ones: VecDeque<Work> = VecDeque::new();
    let mut bulk: VecDeque<volley_spool::RecipientId> = VecDeque::new();
    let take = |m: ShardIn,
                ones: &mut VecDeque<Work>,
                bulk: &mut VecDeque<volley_spool::RecipientId>| match m {
        ShardIn::One(w) => ones.push_back(w),
        ShardIn::Bulk(ids) if bulk.is_empty() => *bulk = VecDeque::from(ids),
        ShardIn::Bulk(ids) => bulk.extend(ids),
    };
    loop {
        while let Ok(m) = rx.try_recv() {
            take(m, &mut ones, &mut bulk);
        }
        let work = if let Some(w) = ones.pop_front() {
            w
        } else if let Some(id) = bulk.pop_front() {
            Work {
                id,
                domain: Arc::clone(&domain),
                attempts: 0,
            }
        } else {
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                m = rx.recv() => match m {
                    Some(m) => {
                        take(m, &mut ones, &mut bulk);
                        continue;
                    }
                    None => break,
                },
            }
        };
        let permit = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            p = Arc::clone(&dest.permits).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            () = limiter.until_ready() => {}
        }
        ctx.producer.submit(Job {
            work,
            ready: ready_tx.clone(),
            permit,
        });
        let live = dest.live.load(Ordering::Acquire);
        if live < dest.max_conns && live < dest.in_flight() {
            dest.live.fetch_add(1, Ordering::AcqRel);
            ctx.stats.connection_tasks.fetch_add(1, Ordering::AcqRel);
            tokio::spawn(connection::run(
                Arc::clone(&ctx),
                Arc::clone(&dest),
                ready_rx.clone(),
            ));
        }
    }
}
