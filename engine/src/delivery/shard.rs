//! A shard: the single owner of one site's queue, adaptive rate limit,
//! in-flight window and connection pool (see [`super::site`]; what it
//! shares with its connections is a [`Dest`]).
//!
//! For each recipient it takes a window permit (held until the outcome is
//! journaled), waits for the governor rate limiter, and submits the message
//! to the production pool, whose output lands in the shard's ready queue.
//! It starts connections while fewer than the current limit are open and
//! there is more in flight than connections. The rate and connection limits
//! come from the site's policy, lowered and raised again by the site's
//! throttle; a config reload (SIGHUP) re-reads the policy without touching
//! the queue. While the site is down (see [`super::health`]) the shard
//! defers its queue without connecting, in shares, until a probe is due;
//! it then starts one probe and holds the queue until its verdict. An
//! operator's holds ([`super::holds`]): recipients of a held domain or
//! campaign are set aside as the shard comes to them (put back when
//! released); a held site's queue is not touched. Exposure: none
//! (internal).

mod conns;
mod ctx;
mod holding;

pub use ctx::ShardCtx;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use governor::{Quota, RateLimiter};
use tokio::sync::{mpsc, watch};

use super::Work;
use super::budget::Slot;
use super::dest::Dest;
use super::health::Admit;
use super::open;
use super::produce::Job;
pub use super::queue::ShardIn;
use super::queue::{Campaigns, Queue};
use super::site::Site;

/// How soon a shard waiting for room under its site's connection cap looks
/// again, should it miss the wake-up of a connection ending.
const FULL_RECHECK: Duration = Duration::from_millis(250);

/// Recipients of a down site deferred per turn of the shard's loop.
const DEFER_SHARE: usize = 256;

/// Starts the shard of `site`; returns its input queue.
pub fn spawn(ctx: Arc<ShardCtx>, site: Site) -> mpsc::UnboundedSender<ShardIn> {
    let (tx, rx) = mpsc::unbounded_channel();
    ctx.stats.shards.fetch_add(1, Ordering::AcqRel);
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

/// What a shard keeps between turns of its loop.
struct Shard {
    ctx: Arc<ShardCtx>,
    site: Site,
    dest: Arc<Dest>,
    queue: Queue,
    campaigns: Campaigns,
    generation: u64,
    rate: f64,
    limit: Limiter,
    ready_tx: super::ReadyTx,
    ready_rx: super::ReadyRx,
    shutdown: watch::Receiver<bool>,
    /// The wait for the budget slot of the site's first connection: the
    /// shard waits itself (its place in the budget's queue kept across
    /// turns), so a site waiting for a slot costs no connection task.
    acquiring: Option<SlotWait>,
    /// Recipients of held domains and campaigns, set aside until released.
    parked: Vec<Work>,
    /// The holds' generation last looked at, and which campaigns (by
    /// number) were held then.
    holds_seen: u64,
    held_campaigns: HashMap<u32, bool>,
    /// What this shard adds to `volley_held_recipients`.
    held_counted: i64,
    /// Its egress source was seen out of service (what it held was given
    /// back to the scheduler then, once).
    source_out: bool,
    /// It waits for room under its site's connection cap over all sources
    /// (counted in the site's share).
    cap_waiting: bool,
}

type SlotWait = std::pin::Pin<Box<dyn std::future::Future<Output = Option<Slot>> + Send>>;

/// How a turn of the loop ended.
enum Turn {
    Go,
    Stop,
    /// Nothing to do for the idle period: the shard may end.
    Idle,
}

async fn run(ctx: Arc<ShardCtx>, site: Site, mut rx: mpsc::UnboundedReceiver<ShardIn>) {
    let policy = site.policy(&ctx.config());
    let source = site.source.as_ref().map_or("", |s| &*s.name);
    let share = ctx.site_shares.get(site.share_key(), &policy, &ctx.clock);
    let dest = Arc::new(Dest::new(
        &site,
        policy,
        ctx.metrics.site(&site.key, source),
        share,
    ));
    let rate = dest.rate();
    let (ready_tx, ready_rx) = async_channel::unbounded();
    tracing::debug!(site = %site.key, rate, connections = policy.connections, "site started");
    let mut s = Shard {
        limit: limiter(&ctx, rate, policy.connections),
        generation: ctx.generation(),
        shutdown: ctx.shutdown.clone(),
        ctx,
        site,
        dest,
        queue: Queue::default(),
        campaigns: Campaigns::default(),
        rate,
        ready_tx,
        ready_rx,
        acquiring: None,
        parked: Vec::new(),
        holds_seen: 0,
        held_campaigns: HashMap::new(),
        held_counted: 0,
        source_out: false,
        cap_waiting: false,
    };
    loop {
        while let Ok(m) = rx.try_recv() {
            s.take(m);
        }
        s.refresh();
        s.source_check();
        let turn = if s.queue.len == 0 {
            if !s.dest.is_down() {
                // messages in flight need a connection to take them
                s.ensure_connections();
            }
            s.wait(&mut rx).await
        } else if s.site_held() {
            // held: the queue stays as it is until released
            s.wait(&mut rx).await
        } else {
            match s.dest.admit() {
                Admit::Send => {
                    s.ensure_connections();
                    if s.dest.has_room() {
                        s.dispatch().await
                    } else {
                        // as many produced ahead as its connections can
                        // take: wait for one to take a message (or get a
                        // budget slot)
                        s.wait(&mut rx).await
                    }
                }
                Admit::Probe => {
                    tokio::spawn(open::probe(Arc::clone(&s.ctx), Arc::clone(&s.dest)));
                    Turn::Go
                }
                // a probe runs: its verdict decides what becomes of the queue
                Admit::Hold => s.wait(&mut rx).await,
                Admit::Defer { probe_at } => s.defer_some(probe_at).await,
            }
        };
        match turn {
            Turn::Go => {}
            Turn::Stop => break,
            Turn::Idle => {
                // no more input: the scheduler starts a new shard for the
                // site's next recipient (its send here fails and gives the
                // recipient back); what arrived before the close (and what
                // was set aside meanwhile) goes back to the scheduler too,
                // never left with a shard that can no longer be told of a
                // release
                rx.close();
                while let Ok(m) = rx.try_recv() {
                    s.take(m);
                }
                let mut left = std::mem::take(&mut s.parked);
                while let Some(w) = s.queue.pop() {
                    left.push(w);
                }
                if !left.is_empty()
                    && let Some(tx) = s.ctx.scheduler.upgrade()
                {
                    let _ = tx.send(super::scheduler::SchedMsg::Work(left));
                }
                tracing::debug!(site = %s.site.key, "site idle: its shard ends");
                break;
            }
        }
    }
    if s.acquiring.take().is_some() {
        s.dest.unwant_slot(&s.ctx.budget);
    }
    let share = Arc::clone(&s.dest.share);
    share.set_waiting(&mut s.cap_waiting, false);
    s.dest.m.queued.set(0);
    s.ctx.metrics.held_recipients.dec_by(s.held_counted);
    s.ctx.stats.shards.fetch_sub(1, Ordering::AcqRel);
}

impl Shard {
    /// Applies a config reload and the throttle's rate to the limiter.
    fn refresh(&mut self) {
        let (ctx, dest) = (&self.ctx, &self.dest);
        if ctx.generation() != self.generation {
            self.generation = ctx.generation();
            let p = self.site.policy(&ctx.config());
            dest.set_policy(p);
            dest.share.set(&p);
            tracing::info!(site = %self.site.key, rate = p.messages_per_second, connections = p.connections, "site policy reloaded");
        }
        if dest.rate().to_bits() != self.rate.to_bits() {
            self.rate = dest.rate();
            let burst = dest.max_conns() as u32;
            self.limit = limiter(ctx, self.rate, burst);
            // a new limiter starts full: no fresh burst on a rate change
            // (least of all right after a "slow down")
            if let Some(n) = NonZeroU32::new(burst) {
                let _ = self.limit.check_n(n);
            }
        }
        dest.shrink_window();
        dest.m.queued.set(self.queue.len as i64);
        self.count_held();
    }

    /// Waits for new work or a change of the site's health. While the site
    /// is down, messages produced before it went down are deferred as they
    /// come out of production.
    /// Takes what the scheduler sent: recipients into the queue, or an
    /// operator's "retry now".
    fn take(&mut self, m: ShardIn) {
        match m {
            ShardIn::ProbeNow => self.dest.probe_now(),
            ShardIn::HoldsChanged => {
                self.end_ended();
                self.unpark();
            }
            ShardIn::GiveBack(domain) => self.give_back(&domain),
            ShardIn::Quiet(tx) => {
                let dest = Arc::clone(&self.dest);
                tokio::spawn(async move {
                    while dest.in_flight() > 0 && !tx.is_closed() {
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                    drop(tx);
                });
            }
            m => self.queue.push(m),
        }
    }

    async fn wait(&mut self, rx: &mut mpsc::UnboundedReceiver<ShardIn>) -> Turn {
        let down = self.dest.is_down();
        // an idle site ends its shard after the connections' idle period
        // (an idle site then costs only its metrics and DNS mapping)
        let idle =
            self.queue.len == 0 && self.parked.is_empty() && !rx.is_closed() && self.dest.is_idle();
        let idle_after = self.ctx.config().delivery.timeouts.idle;
        let acquiring = self.acquiring.is_some();
        let full = self.cap_waiting;
        let acq = &mut self.acquiring;
        let mut first_slot = None;
        tokio::select! {
            biased;
            _ = self.shutdown.changed() => return Turn::Stop,
            m = rx.recv() => match m {
                Some(m) => self.take(m),
                None => return Turn::Stop,
            },
            r = self.ready_rx.recv(), if down => {
                if let Ok(r) = r {
                    self.dest.defer_ready(&self.ctx, *r);
                }
            }
            _ = self.dest.wake.notified() => {}
            // the site's cap over all sources is reached: woken when one of
            // its connections ends (and, should that be missed, soon after)
            _ = self.dest.share.freed.notified(), if full => {}
            _ = tokio::time::sleep(FULL_RECHECK), if full => {}
            _ = tokio::time::sleep(idle_after), if idle => return Turn::Idle,
            slot = async {
                match acq.as_mut() {
                    Some(wait) => wait.await,
                    None => std::future::pending().await,
                }
            }, if acquiring => first_slot = Some(slot),
        }
        if let Some(slot) = first_slot {
            self.acquiring = None;
            self.first_connection(slot);
        }
        Turn::Go
    }

    /// The site is down: defers a share of the queue (one decision for the
    /// whole queue; taken in shares so the loop stays responsive and the
    /// deferrals in flight stay bounded).
    async fn defer_some(&mut self, probe_at: Instant) -> Turn {
        for _ in 0..DEFER_SHARE {
            let Some(work) = self.queue.pop() else { break };
            if self.held(&work) {
                self.parked.push(work);
                continue;
            }
            let slot = tokio::select! {
                biased;
                _ = self.shutdown.changed() => return Turn::Stop,
                p = self.dest.deferral_slot() => p,
            };
            let Some(slot) = slot else { return Turn::Stop };
            self.dest
                .defer_down(&self.ctx, work, slot, None, Some(probe_at));
        }
        Turn::Go
    }

    /// Takes the next recipient (and, for a non-personalized campaign, the
    /// ones that can share its transaction) through the window and the rate
    /// limit to production, and starts a connection if one is needed.
    async fn dispatch(&mut self) -> Turn {
        let (ctx, dest) = (Arc::clone(&self.ctx), Arc::clone(&self.dest));
        let Some(work) = self.queue.pop() else {
            return Turn::Go;
        };
        if self.held(&work) {
            self.parked.push(work);
            return Turn::Go;
        }
        let permit = tokio::select! {
            biased;
            _ = self.shutdown.changed() => return Turn::Stop,
            p = Arc::clone(&dest.permits).acquire_owned() => match p { Ok(p) => p, Err(_) => return Turn::Stop },
        };
        tokio::select! {
            biased;
            _ = self.shutdown.changed() => return Turn::Stop,
            () = self.limit.until_ready() => {}
        }
        // the site's sum over its sources, if capped
        tokio::select! {
            biased;
            _ = self.shutdown.changed() => return Turn::Stop,
            () = dest.share.until_ready() => {}
        }
        // a place among the messages produced ahead of all sites'
        // connections (first come, first served)
        let place = tokio::select! {
            biased;
            _ = self.shutdown.changed() => return Turn::Stop,
            p = ctx.producer.place() => match p { Some(p) => p, None => return Turn::Stop },
        };
        if dest.is_down() {
            // it went down while this recipient waited
            dest.defer_down(&ctx, work, permit, None, dest.probe_at());
            return Turn::Go;
        }
        if self.site_held() || self.held(&work) {
            // held while it waited for its permit, rate or place: set
            // aside (put back in the queue when the holds change)
            drop((permit, place));
            self.parked.push(work);
            return Turn::Go;
        }
        let mut works = vec![(work, permit)];
        let most = dest.policy().recipients_per_transaction as usize;
        // with signed return paths each recipient has its own message:
        // a report then speaks for the one recipient its token names
        if most > 1
            && let Some(no) = self.campaigns.shared(&ctx.spool, works[0].0.id)
            && !ctx.config().feedback.enabled()
        {
            // more recipients of this non-personalized campaign join the
            // transaction (one message: one rate-limit token), while the
            // window allows
            while works.len() < most {
                let joins = self
                    .queue
                    .peek()
                    .is_some_and(|id| self.campaigns.shared(&ctx.spool, id) == Some(no));
                if !joins {
                    break;
                }
                let Ok(p) = Arc::clone(&dest.permits).try_acquire_owned() else {
                    break;
                };
                let Some(w) = self.queue.pop() else { break };
                if self.held(&w) {
                    self.parked.push(w);
                    continue;
                }
                works.push((w, p));
            }
        }
        ctx.producer.submit(Job {
            works,
            ready: self.ready_tx.clone(),
            ticket: dest.ticket(place),
        });
        Turn::Go
    }
}
