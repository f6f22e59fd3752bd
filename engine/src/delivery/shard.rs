//! A shard: the single owner of one site's queue, adaptive rate limit,
//! in-flight window and connection pool (see [`super::site`]).
//!
//! For each recipient it takes a window permit (held until the outcome is
//! journaled), waits for the governor rate limiter, and submits the message
//! to the production pool, whose output lands in the shard's ready queue.
//! It starts connections while fewer than the current limit are open and
//! there is more in flight than connections. The rate and connection limits
//! come from the site's policy, lowered and raised again by the site's
//! [`Throttle`]; a config reload (SIGHUP) re-reads the policy without
//! touching the queue. Exposure: none (internal).

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use governor::{Quota, RateLimiter};
use tokio::sync::{Semaphore, mpsc, watch};
use volley_spool::Spool;

use super::connection;
use super::mx::Resolver;
pub use super::queue::ShardIn;
use super::queue::{Campaigns, Queue};
use super::site::{Hosts, Site};
use super::smtp::{Reply, TlsSettings};
use super::throttle::{Change, Throttle};
use super::{Report, Stats};
use crate::config::{Config, Policy};
use crate::message::{Job, Producer};
use crate::metrics::{Metrics, SiteMetrics};

/// Everything shards and their connections share.
pub struct ShardCtx {
    config: RwLock<Arc<Config>>,
    generation: AtomicU64,
    pub spool: Arc<Spool>,
    pub producer: Producer,
    pub recorder: crossbeam_channel::Sender<Report>,
    pub stats: Arc<Stats>,
    pub metrics: Arc<Metrics>,
    pub tls: TlsSettings,
    pub resolver: Arc<Resolver>,
    pub shutdown: watch::Receiver<bool>,
    /// One clock for every shard's rate limiter (making one calibrates it).
    pub clock: governor::clock::DefaultClock,
}

impl ShardCtx {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Arc<Config>,
        spool: Arc<Spool>,
        producer: Producer,
        recorder: crossbeam_channel::Sender<Report>,
        stats: Arc<Stats>,
        metrics: Arc<Metrics>,
        tls: TlsSettings,
        resolver: Arc<Resolver>,
        shutdown: watch::Receiver<bool>,
    ) -> ShardCtx {
        ShardCtx {
            config: RwLock::new(config),
            generation: AtomicU64::new(0),
            spool,
            producer,
            recorder,
            stats,
            metrics,
            tls,
            resolver,
            shutdown,
            clock: governor::clock::DefaultClock::default(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.config.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Installs a new configuration (a reload).
    pub fn set_config(&self, c: Arc<Config>) {
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = c;
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// One site as its connections see it.
pub struct Dest {
    pub key: Arc<str>,
    pub hosts: Hosts,
    policy: RwLock<Policy>,
    throttle: Mutex<Throttle>,
    pub permits: Arc<Semaphore>,
    window: AtomicUsize,
    /// What `window` should be (a reload may lower it while permits are out).
    target: AtomicUsize,
    /// Connection tasks running (with a session open or not).
    pub live: AtomicUsize,
    /// Sessions open.
    pub sessions: AtomicUsize,
    /// This site's metric handles.
    pub m: Arc<SiteMetrics>,
}

/// The in-flight window of a site: four messages per connection (at least
/// 8), and at least one full transaction of recipients.
fn window_for(p: &Policy) -> usize {
    (p.connections as usize * 4)
        .max(8)
        .max(p.recipients_per_transaction as usize)
}

impl Dest {
    /// Messages of this site between dispatch and journaled outcome.
    pub fn in_flight(&self) -> usize {
        self.window
            .load(Ordering::Acquire)
            .saturating_sub(self.permits.available_permits())
    }

    /// The policy in force.
    pub fn policy(&self) -> Policy {
        *self.policy.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn throttle(&self) -> std::sync::MutexGuard<'_, Throttle> {
        self.throttle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Current connection limit (published by [`Dest::show_limits`] on
    /// every change, so reading it takes no lock).
    pub fn max_conns(&self) -> usize {
        self.m.connection_limit.get().max(1) as usize
    }

    /// Current rate limit (as published, like [`Dest::max_conns`]).
    pub fn rate(&self) -> f64 {
        self.m.rate.get()
    }

    /// Feeds a reply to the throttle (`throttle` = it asked to slow down).
    pub fn observe(&self, reply: Option<&Reply>, throttle: bool) {
        let now = Instant::now();
        let change = {
            let mut t = self.throttle();
            if throttle {
                t.signal(now)
            } else {
                t.clean(now)
            }
        };
        if let Some(c) = change {
            match c {
                Change::SlowedDown { rate, connections } => tracing::info!(
                    site = %self.key,
                    rate = format!("{rate:.1}"),
                    connections,
                    reply = %reply.map(|r| r.to_string()).unwrap_or_default(),
                    "destination asks to slow down: lowering the rate and connections"
                ),
                Change::SpedUp { rate, connections } => tracing::info!(
                    site = %self.key,
                    rate = format!("{rate:.1}"),
                    connections,
                    "destination accepts again: raising the rate and connections"
                ),
            }
            self.show_limits();
        }
    }

    /// Publishes the throttle's current limits (metrics, and what
    /// [`Dest::rate`] and [`Dest::max_conns`] read).
    fn show_limits(&self) {
        let (rate, conns) = {
            let t = self.throttle();
            (t.rate(), t.connections())
        };
        self.m.rate.set(rate);
        self.m.connection_limit.set(i64::from(conns));
    }

    /// Installs a new policy (config reload); queued mail is untouched.
    fn set_policy(&self, p: Policy) {
        *self.policy.write().unwrap_or_else(PoisonError::into_inner) = p;
        self.throttle()
            .set_limits(p.messages_per_second, p.connections);
        let want = window_for(&p);
        self.target.store(want, Ordering::Release);
        let have = self.window.load(Ordering::Acquire);
        if want > have {
            self.permits.add_permits(want - have);
            self.window.store(want, Ordering::Release);
        } else {
            self.shrink_window();
        }
    }

    /// Moves the window toward a lower target: permits in use cannot be
    /// taken back, so the surplus goes as they are released (called on
    /// every dispatch).
    fn shrink_window(&self) {
        let (have, want) = (
            self.window.load(Ordering::Acquire),
            self.target.load(Ordering::Acquire),
        );
        if have > want {
            let gone = self.permits.forget_permits(have - want);
            if gone > 0 {
                self.window.fetch_sub(gone, Ordering::AcqRel);
            }
        }
    }
}

/// Starts the shard of `site`; returns its input queue.
pub fn spawn(ctx: Arc<ShardCtx>, site: Site) -> mpsc::UnboundedSender<ShardIn> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(ctx, site, rx));
    tx
}

type Limiter = RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    governor::clock::DefaultClock,
>;

fn limiter(ctx: &ShardCtx, rate: f64, burst: u32) -> Limiter {
    let period = Duration::from_secs_f64(1.0 / rate.max(0.001)).max(Duration::from_nanos(1));
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    let quota = Quota::with_period(period).map_or_else(
        || Quota::per_second(NonZeroU32::MIN),
        |q| q.allow_burst(burst),
    );
    RateLimiter::direct_with_clock(quota, ctx.clock.clone())
}

async fn run(ctx: Arc<ShardCtx>, site: Site, mut rx: mpsc::UnboundedReceiver<ShardIn>) {
    let mut generation = ctx.generation();
    let policy = site.policy(&ctx.config());
    let window = window_for(&policy);
    let dest = Arc::new(Dest {
        key: Arc::clone(&site.key),
        hosts: site.hosts.clone(),
        policy: RwLock::new(policy),
        throttle: Mutex::new(Throttle::new(
            policy.messages_per_second,
            policy.connections,
            Instant::now(),
        )),
        permits: Arc::new(Semaphore::new(window)),
        window: AtomicUsize::new(window),
        target: AtomicUsize::new(window),
        live: AtomicUsize::new(0),
        sessions: AtomicUsize::new(0),
        m: Arc::new(ctx.metrics.site(&site.key)),
    });
    dest.show_limits();
    let mut rate = dest.rate();
    let mut limit = limiter(&ctx, rate, policy.connections);
    let (ready_tx, ready_rx) = async_channel::unbounded();
    let mut shutdown = ctx.shutdown.clone();
    tracing::debug!(site = %site.key, rate, connections = policy.connections, "site started");
    let mut queue = Queue::default();
    let mut campaigns = Campaigns::default();
    loop {
        while let Ok(m) = rx.try_recv() {
            queue.push(m);
        }
        if ctx.generation() != generation {
            generation = ctx.generation();
            let p = site.policy(&ctx.config());
            dest.set_policy(p);
            dest.show_limits();
            tracing::info!(site = %site.key, rate = p.messages_per_second, connections = p.connections, "site policy reloaded");
        }
        if dest.rate().to_bits() != rate.to_bits() {
            rate = dest.rate();
            let burst = dest.max_conns() as u32;
            limit = limiter(&ctx, rate, burst);
            // a new limiter starts full: no fresh burst on a rate change
            // (least of all right after a "slow down")
            if let Some(n) = NonZeroU32::new(burst) {
                let _ = limit.check_n(n);
            }
        }
        dest.shrink_window();
        dest.m.queued.set(queue.len as i64);
        let work = match queue.pop() {
            Some(w) => w,
            None => tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                m = rx.recv() => match m {
                    Some(m) => {
                        queue.push(m);
                        continue;
                    }
                    None => break,
                },
            },
        };
        let permit = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            p = Arc::clone(&dest.permits).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            () = limit.until_ready() => {}
        }
        let mut works = vec![(work, permit)];
        let most = dest.policy().recipients_per_transaction as usize;
        if most > 1
            && let Some(no) = campaigns.shared(&ctx.spool, works[0].0.id)
        {
            // more recipients of this non-personalized campaign join the
            // transaction (one message: one rate-limit token), while the
            // window allows
            while works.len() < most {
                let joins = queue
                    .peek()
                    .is_some_and(|id| campaigns.shared(&ctx.spool, id) == Some(no));
                if !joins {
                    break;
                }
                let Ok(p) = Arc::clone(&dest.permits).try_acquire_owned() else {
                    break;
                };
                let Some(w) = queue.pop() else { break };
                works.push((w, p));
            }
        }
        ctx.producer.submit(Job {
            works,
            ready: ready_tx.clone(),
        });
        let live = dest.live.load(Ordering::Acquire);
        if live < dest.max_conns() && live < dest.in_flight() {
            dest.live.fetch_add(1, Ordering::AcqRel);
            ctx.stats.connection_tasks.fetch_add(1, Ordering::AcqRel);
            tokio::spawn(connection::run(
                Arc::clone(&ctx),
                Arc::clone(&dest),
                ready_rx.clone(),
            ));
        }
    }
    dest.m.queued.set(0);
}
