//! Limits of a whole site across its egress sources: with sources, each
//! source × site has a shard of its own with the site's `messages_per_second`
//! and `connections` (a provider limits each IP), and `site_messages_per_second`
//! and `site_connections` (when set) cap their sum. The shards of one site
//! share one [`SiteShare`]: a rate limiter every dispatch also waits for,
//! and a count of connection tasks that no shard starts past.
//!
//! Room under the cap goes round: a shard that wants a connection and finds
//! none left is counted as waiting; while any wait, a shard that is not
//! waiting takes no room (it queues up behind them), a connection whose
//! source holds more than its share (the cap over the waiting shards plus
//! one) ends after its transaction, and any connection of the site ends
//! rather than reopening after `messages_per_connection`. A connection
//! that ends wakes the waiting shards. Exposure: none (internal).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use governor::{Quota, RateLimiter};
use tokio::sync::Notify;

use crate::config::Policy;

type Limiter = RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    governor::clock::DefaultClock,
>;

/// What the shards of one site share.
pub struct SiteShare {
    /// The site-wide rate (its limiter), if capped.
    rate: Mutex<Option<(f64, Arc<Limiter>)>>,
    /// Most connection tasks of all sources together (0: no cap).
    cap: AtomicUsize,
    /// Connection tasks of all sources together.
    conns: AtomicUsize,
    /// Shards of the site waiting for room under the cap.
    waiting: AtomicUsize,
    /// A connection task ended (room for another).
    pub freed: Notify,
    clock: governor::clock::DefaultClock,
}

impl SiteShare {
    fn new(clock: governor::clock::DefaultClock) -> SiteShare {
        SiteShare {
            rate: Mutex::new(None),
            cap: AtomicUsize::new(0),
            conns: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            freed: Notify::new(),
            clock,
        }
    }

    /// Applies the site-wide limits of `p` (a new rate starts without a
    /// burst).
    pub fn set(&self, p: &Policy) {
        self.cap
            .store(p.site_connections.unwrap_or(0) as usize, Ordering::Release);
        let mut rate = self.rate.lock().unwrap_or_else(PoisonError::into_inner);
        match p.site_messages_per_second {
            None => *rate = None,
            Some(r)
                if rate
                    .as_ref()
                    .is_some_and(|(old, _)| old.to_bits() == r.to_bits()) => {}
            Some(r) => {
                let period =
                    Duration::from_secs_f64(1.0 / r.max(0.001)).max(Duration::from_nanos(1));
                let quota = Quota::with_period(period)
                    .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN));
                *rate = Some((
                    r,
                    Arc::new(RateLimiter::direct_with_clock(quota, self.clock.clone())),
                ));
            }
        }
    }

    /// Waits until the site-wide rate allows one more message.
    pub async fn until_ready(&self) {
        let limiter = self
            .rate
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|(_, l)| Arc::clone(l));
        if let Some(l) = limiter {
            l.until_ready().await;
        }
    }

    /// Counts one more connection task if the site-wide cap allows it and
    /// no other shard waits for room before it (`waiting`: the caller is
    /// one of the waiting shards).
    pub fn try_add(&self, waiting: bool) -> bool {
        let cap = self.cap.load(Ordering::Acquire);
        if cap > 0 && !waiting && self.waiting.load(Ordering::Acquire) > 0 {
            return false;
        }
        self.conns
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (cap == 0 || n < cap).then_some(n + 1)
            })
            .is_ok()
    }

    /// Whether the cap leaves room for another connection task.
    pub fn has_room(&self) -> bool {
        let cap = self.cap.load(Ordering::Acquire);
        cap == 0 || self.conns.load(Ordering::Acquire) < cap
    }

    /// Marks the caller's shard as waiting for room, or no longer (`mark`
    /// is its own flag, so it is counted once).
    pub fn set_waiting(&self, mark: &mut bool, on: bool) {
        if *mark != on {
            *mark = on;
            if on {
                self.waiting.fetch_add(1, Ordering::AcqRel);
            } else {
                self.waiting.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// Whether more connection tasks run than the cap (lowered by a
    /// reload) allows.
    pub fn over_cap(&self) -> bool {
        let cap = self.cap.load(Ordering::Acquire);
        cap > 0 && self.conns.load(Ordering::Acquire) > cap
    }

    /// Whether shards wait for room under the cap.
    pub fn others_wait(&self) -> bool {
        self.cap.load(Ordering::Acquire) > 0 && self.waiting.load(Ordering::Acquire) > 0
    }

    /// Whether a connection of a source that has `mine` connection tasks
    /// should end so that a waiting shard gets its share.
    pub fn should_yield(&self, mine: usize) -> bool {
        let cap = self.cap.load(Ordering::Acquire);
        let waiting = self.waiting.load(Ordering::Acquire);
        cap > 0 && waiting > 0 && mine > (cap / (waiting + 1)).max(1)
    }

    /// A connection task ended.
    pub fn remove(&self) {
        let _ = self
            .conns
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        self.freed.notify_waiters();
    }

    /// Connection tasks of all sources together.
    pub fn connections(&self) -> usize {
        self.conns.load(Ordering::Acquire)
    }
}

/// The shares of the sites with a shard running.
#[derive(Default)]
pub struct SiteShares {
    map: Mutex<HashMap<Arc<str>, Weak<SiteShare>>>,
}

impl SiteShares {
    /// The share of site `key` (made, with `p`'s limits, for its first
    /// shard).
    pub fn get(
        &self,
        key: &Arc<str>,
        p: &Policy,
        clock: &governor::clock::DefaultClock,
    ) -> Arc<SiteShare> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = map.get(key).and_then(Weak::upgrade) {
            return s;
        }
        map.retain(|_, w| w.strong_count() > 0);
        let s = Arc::new(SiteShare::new(clock.clone()));
        s.set(p);
        map.insert(Arc::clone(key), Arc::downgrade(&s));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(rate: Option<f64>, conns: Option<u32>) -> Policy {
        let mut p = crate::config::Config::default().default_policy();
        p.site_messages_per_second = rate;
        p.site_connections = conns;
        p
    }

    #[test]
    fn the_sites_shards_share_one_connection_cap() {
        let shares = SiteShares::default();
        let clock = governor::clock::DefaultClock::default();
        let key: Arc<str> = Arc::from("mx:a.test");
        let p = policy(None, Some(2));
        let (a, b) = (shares.get(&key, &p, &clock), shares.get(&key, &p, &clock));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(a.try_add(false) && b.try_add(false));
        assert!(!a.try_add(false) && !b.has_room());
        // source B waits: A's two connections are more than its share
        let mut b_waits = false;
        b.set_waiting(&mut b_waits, true);
        b.set_waiting(&mut b_waits, true);
        assert!(a.others_wait() && a.should_yield(2) && !a.should_yield(1));
        a.remove();
        assert!(!a.try_add(false), "room goes to the waiting shard first");
        assert!(b.try_add(true));
        b.set_waiting(&mut b_waits, false);
        assert!(!a.others_wait() && !a.should_yield(2));
        assert_eq!(a.connections(), 2);
        // raised by a reload
        a.set(&policy(None, Some(3)));
        assert!(b.try_add(false));
        // no cap
        a.set(&policy(None, None));
        assert!((0..100).all(|_| a.try_add(false)));
        // another site has its own; a share no shard holds is made anew
        let other = shares.get(&Arc::from("mx:b.test"), &p, &clock);
        assert_eq!(other.connections(), 0);
        drop((a, b));
        assert_eq!(shares.get(&key, &p, &clock).connections(), 0);
    }

    #[test]
    fn a_site_rate_limits_without_a_burst_and_is_replaced_only_when_changed() {
        let share = SiteShare::new(governor::clock::DefaultClock::default());
        share.set(&policy(Some(1.0), None));
        let first = share
            .rate
            .lock()
            .unwrap()
            .as_ref()
            .map(|(_, l)| Arc::clone(l))
            .unwrap();
        assert!(first.check().is_ok());
        assert!(first.check().is_err(), "one a second, no burst");
        share.set(&policy(Some(1.0), None));
        let same = share
            .rate
            .lock()
            .unwrap()
            .as_ref()
            .map(|(_, l)| Arc::clone(l))
            .unwrap();
        assert!(Arc::ptr_eq(&first, &same));
        share.set(&policy(None, None));
        assert!(share.rate.lock().unwrap().is_none());
    }
}
