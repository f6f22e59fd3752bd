//! One site as its shard and connections see it: its policy, adaptive
//! throttle, in-flight window, health and counters.
//!
//! The shard owns the queue; a [`Dest`] is what it shares with the site's
//! connection tasks and probes. Limits are published in the site's metrics
//! on every change, so the hot path reads them without locks. Health (see
//! [`super::health`]) turns failed session opens into one decision about
//! the site: when it goes down, one log line, the `volley_site_up` gauge
//! drops to 0 and the shard is woken to defer its queue. Exposure: none
//! (internal).

mod report;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Instant;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::backoff::Backoff;
use super::budget::Budget;
use super::health::{Admit, Change, Health};
use super::site::{Hosts, Site};
use super::throttle::{Change as RateChange, Throttle};
use crate::config::Policy;
use crate::metrics::SiteMetrics;
use crate::outcome::Outcome;
use crate::smtp::{ConnectKind, Reply, SessionError};

/// Most deferral reports of a down site on their way to the journal at
/// once (bounds the memory of deferring a large queue).
const DEFERRALS_IN_FLIGHT: usize = 1024;

/// Messages produced ahead (in production, or ready and not yet taken)
/// per connection that holds a budget slot: one to take when its
/// transaction ends, one being rendered meanwhile. Rendered mail exists
/// only shortly before a connection can take it.
pub const READY_PER_CONNECTION: usize = 2;

/// The in-flight window of a site: four messages per connection (at least
/// 8), and at least one full transaction of recipients.
pub(super) fn window_for(p: &Policy) -> usize {
    (p.connections as usize * 4)
        .max(8)
        .max(p.recipients_per_transaction as usize)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One site as its connections see it.
pub struct Dest {
    pub key: Arc<str>,
    pub hosts: Hosts,
    policy: RwLock<Policy>,
    throttle: Mutex<Throttle>,
    health: Mutex<Health>,
    /// Mirrors the health's down state, for reads without the lock.
    down: AtomicBool,
    /// What recipients deferred because the site is down are told: the
    /// failure that took it down (or the latest failed probe).
    fault: Mutex<Option<Outcome>>,
    pub permits: Arc<Semaphore>,
    window: AtomicUsize,
    /// What `window` should be (a reload may lower it while permits are out).
    target: AtomicUsize,
    /// Bounds the deferrals of a down site in flight to the journal.
    deferrals: Arc<Semaphore>,
    /// Connection tasks running (with a session open or not).
    pub conn_tasks: AtomicUsize,
    /// Sessions open.
    pub sessions: AtomicUsize,
    /// Connection tasks holding a slot of the connection budget.
    pub slotted: AtomicUsize,
    /// Connection tasks holding or waiting for a budget slot.
    wanting: AtomicUsize,
    /// Messages produced ahead and not yet taken by a connection.
    produced: AtomicUsize,
    /// Whether a message's commands may go out behind the one before
    /// (cleared for good when a server let such a transaction time out
    /// unanswered: it may drop the commands it gets early).
    pub streams: AtomicBool,
    /// Wakes the shard: the site's health changed, a connection took a
    /// message or got a slot, or a connection task ended.
    pub wake: Notify,
    /// This site's metric handles.
    pub m: Arc<SiteMetrics>,
    /// The egress source its connections leave from (`None`: the
    /// system's choice of address, `[delivery] helo`).
    pub source: Option<Arc<super::egress::Source>>,
    /// The site-wide limits it shares with the site's other sources.
    pub share: Arc<super::site_limits::SiteShare>,
    /// The MTA-STS policy its sessions are under (see `open.rs`).
    pub sts: Option<Arc<super::sts::Applied>>,
}

impl Dest {
    pub(super) fn new(
        site: &Site,
        policy: Policy,
        m: SiteMetrics,
        share: Arc<super::site_limits::SiteShare>,
    ) -> Dest {
        let window = window_for(&policy);
        let dest = Dest {
            key: Arc::clone(&site.key),
            hosts: site.hosts.clone(),
            source: site.source.clone(),
            sts: site.sts.clone(),
            share,
            policy: RwLock::new(policy),
            throttle: Mutex::new(Throttle::new(
                policy.messages_per_second,
                policy.connections,
                Instant::now(),
            )),
            health: Mutex::new(Health::new(policy.site_down_after)),
            down: AtomicBool::new(false),
            fault: Mutex::new(None),
            permits: Arc::new(Semaphore::new(window)),
            window: AtomicUsize::new(window),
            target: AtomicUsize::new(window),
            deferrals: Arc::new(Semaphore::new(DEFERRALS_IN_FLIGHT)),
            conn_tasks: AtomicUsize::new(0),
            sessions: AtomicUsize::new(0),
            slotted: AtomicUsize::new(0),
            wanting: AtomicUsize::new(0),
            produced: AtomicUsize::new(0),
            streams: AtomicBool::new(true),
            wake: Notify::new(),
            m: Arc::new(m),
        };
        dest.m.up.set(1);
        dest.show_limits();
        dest
    }

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
            let mut t = lock(&self.throttle);
            if throttle {
                t.signal(now)
            } else {
                t.clean(now)
            }
        };
        if let Some(c) = change {
            match c {
                RateChange::SlowedDown { rate, connections } => tracing::info!(
                    site = %self.key,
                    rate = format!("{rate:.1}"),
                    connections,
                    reply = %reply.map(|r| r.to_string()).unwrap_or_default(),
                    "destination asks to slow down: lowering the rate and connections"
                ),
                RateChange::SpedUp { rate, connections } => tracing::info!(
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
    pub(super) fn show_limits(&self) {
        let (rate, conns) = {
            let t = lock(&self.throttle);
            (t.rate(), t.connections())
        };
        self.m.rate.set(rate);
        self.m.connection_limit.set(i64::from(conns));
    }

    /// Installs a new policy (config reload); queued mail is untouched.
    pub(super) fn set_policy(&self, p: Policy) {
        *self.policy.write().unwrap_or_else(PoisonError::into_inner) = p;
        lock(&self.throttle).set_limits(p.messages_per_second, p.connections);
        lock(&self.health).set_down_after(p.site_down_after);
        let want = window_for(&p);
        self.target.store(want, Ordering::Release);
        let have = self.window.load(Ordering::Acquire);
        if want > have {
            self.permits.add_permits(want - have);
            self.window.store(want, Ordering::Release);
        } else {
            self.shrink_window();
        }
        self.show_limits();
    }

    /// Moves the window toward a lower target: permits in use cannot be
    /// taken back, so the surplus goes as they are released (called on
    /// every dispatch).
    pub(super) fn shrink_window(&self) {
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

    /// A connection task starts wanting a budget slot.
    pub(super) fn want_slot(&self, budget: &Budget) {
        budget.site_wants(self.wanting.fetch_add(1, Ordering::AcqRel));
    }

    /// A connection task no longer holds or wants a budget slot.
    pub(super) fn unwant_slot(&self, budget: &Budget) {
        budget.site_wants_less(self.wanting.fetch_sub(1, Ordering::AcqRel) - 1);
    }

    /// A connection task holds a budget slot until the guard is dropped
    /// (messages may be produced for it meanwhile).
    pub(super) fn hold_slot(&self) -> SlotHold<'_> {
        self.slotted.fetch_add(1, Ordering::AcqRel);
        self.wake.notify_one();
        SlotHold(self)
    }

    /// Whether the site holds nothing that a fresh shard would not: no
    /// recipient in flight, no connection task, nothing produced ahead, not
    /// down, and not slowed by its throttle.
    pub(super) fn is_idle(&self) -> bool {
        self.in_flight() == 0
            && self.conn_tasks.load(Ordering::Acquire) == 0
            && self.produced.load(Ordering::Acquire) == 0
            && !self.is_down()
            && self.rate() >= self.policy().messages_per_second
            && self.max_conns() >= self.policy().connections as usize
    }

    /// Whether another message may be produced: fewer are produced ahead
    /// than [`READY_PER_CONNECTION`] per connection holding a slot.
    pub(super) fn has_room(&self) -> bool {
        self.produced.load(Ordering::Acquire)
            < READY_PER_CONNECTION * self.slotted.load(Ordering::Acquire)
    }

    /// A place for one more message produced ahead, with its `place`
    /// among those of all sites ([`super::produce::Producer::place`]).
    pub(super) fn ticket(self: &Arc<Self>, place: OwnedSemaphorePermit) -> ReadyTicket {
        self.produced.fetch_add(1, Ordering::AcqRel);
        ReadyTicket(Arc::clone(self), place)
    }

    /// Whether the site is down (no new session is tried but by a probe).
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    /// When the next probe of a down site is due.
    pub(super) fn probe_at(&self) -> Option<Instant> {
        lock(&self.health).probe_at()
    }

    /// An operator's "retry now": a down site is probed at once.
    pub(super) fn probe_now(&self) {
        if lock(&self.health).probe_now(Instant::now()) {
            tracing::info!(site = %self.key, "site down: probed now (operator's retry)");
            self.wake.notify_one();
        }
    }

    /// What the shard may do with its next recipient now.
    pub(super) fn admit(&self) -> Admit {
        lock(&self.health).admit(Instant::now())
    }

    /// A session failed to open and none of the site's sessions is open:
    /// it counts toward the site being down, unless the failure is local
    /// (out of file descriptors or ports: not the site's fault).
    pub fn open_failed(&self, e: &SessionError, outcome: &Outcome) {
        let local = matches!(e, SessionError::Connect(ConnectKind::Local, _));
        let backoff = Backoff::from(&self.policy());
        let change = {
            let mut h = lock(&self.health);
            if local && !h.is_down() {
                return;
            }
            let change = h.failed(Instant::now(), |n| backoff.delay(n, fastrand::f64()));
            // the fault is set before the health lock is let go: a shard
            // that sees the site down tells its recipients this failure
            if matches!(change, Change::WentDown { .. } | Change::ProbeFailed { .. }) {
                *lock(&self.fault) = Some(outcome.clone());
            }
            change
        };
        self.note(change, Some(e));
    }

    /// A session opened.
    pub fn opened(&self) {
        let change = lock(&self.health).opened(Instant::now());
        self.note(change, None);
    }

    /// A probe ended without a verdict (shutdown).
    pub fn probe_abandoned(&self) {
        lock(&self.health).probe_abandoned();
        self.wake.notify_one();
    }

    /// Logs and publishes a health change, and wakes the shard.
    fn note(&self, change: Change, failure: Option<&SessionError>) {
        let now = Instant::now();
        match change {
            Change::None => return,
            Change::WentDown { failures, probe_at } => {
                if let Some(e) = failure {
                    tracing::warn!(
                        site = %self.key,
                        failures,
                        error = %e,
                        next_probe_in = ?probe_at.saturating_duration_since(now),
                        "site is down: its queued recipients are deferred without connecting until a probe opens a session"
                    );
                }
                self.down.store(true, Ordering::Release);
                self.m.up.set(0);
            }
            Change::ProbeFailed { probes, probe_at } => {
                if let Some(e) = failure {
                    tracing::info!(
                        site = %self.key,
                        probes,
                        error = %e,
                        next_probe_in = ?probe_at.saturating_duration_since(now),
                        "site is still down"
                    );
                }
            }
            Change::CameUp { down_for } => {
                self.down.store(false, Ordering::Release);
                self.m.up.set(1);
                tracing::info!(site = %self.key, ?down_for, "site is up again: delivery resumes");
            }
        }
        self.wake.notify_one();
    }
}

/// A connection task's hold on a budget slot (see [`Dest::hold_slot`]).
pub(super) struct SlotHold<'a>(&'a Dest);

impl Drop for SlotHold<'_> {
    fn drop(&mut self) {
        self.0.slotted.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A message's place among those produced ahead for a site's connections
/// (see [`Dest::has_room`]): given back when dropped, which happens when a
/// connection takes the message, or when it is not produced after all.
/// Its place among the messages produced ahead for all sites goes back
/// with it.
pub struct ReadyTicket(Arc<Dest>, #[allow(dead_code)] OwnedSemaphorePermit);

impl Drop for ReadyTicket {
    fn drop(&mut self) {
        self.0.produced.fetch_sub(1, Ordering::AcqRel);
        self.0.wake.notify_one();
    }
}
