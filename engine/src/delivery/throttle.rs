//! Adaptive throttling of one destination (AIMD with a clean-period ramp).
//!
//! A throttle signal (421, 4.7.x, or a configured pattern) cuts the rate to
//! 70% and drops one connection, at most once per second so that a burst of
//! refusals from messages already in flight counts once (but still keeps
//! the second from counting as clean). Each further
//! second without a signal raises the rate by 20% of itself (at least 1/50
//! of the configured rate), and every five clean seconds adds a connection,
//! until both are back at the configured limits. So the rate oscillates
//! just under a receiver's limit, and recovers within seconds once the limit
//! lifts. Pure: the clock is passed in.

use std::time::{Duration, Instant};

const DECREASE: f64 = 0.7;
const GROWTH: f64 = 0.2;
const STEP: Duration = Duration::from_secs(1);
const CONN_STEP: Duration = Duration::from_secs(5);
const MIN_RATE: f64 = 0.1;

/// A change worth logging.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    SlowedDown { rate: f64, connections: u32 },
    SpedUp { rate: f64, connections: u32 },
}

/// The adaptive limits of one destination.
#[derive(Debug, Clone)]
pub struct Throttle {
    max_rate: f64,
    max_conns: u32,
    rate: f64,
    conns: u32,
    last_signal: Option<Instant>,
    last_step: Instant,
    last_conn_step: Instant,
}

impl Throttle {
    pub fn new(max_rate: f64, max_conns: u32, now: Instant) -> Throttle {
        Throttle {
            max_rate,
            max_conns: max_conns.max(1),
            rate: max_rate,
            conns: max_conns.max(1),
            last_signal: None,
            last_step: now,
            last_conn_step: now,
        }
    }

    /// Current rate limit (messages per second).
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Current connection limit.
    pub fn connections(&self) -> u32 {
        self.conns
    }

    /// Whether the limits are below the configured ones.
    pub fn reduced(&self) -> bool {
        self.rate < self.max_rate || self.conns < self.max_conns
    }

    /// New configured limits (config reload): current values are clamped.
    pub fn set_limits(&mut self, max_rate: f64, max_conns: u32) {
        let reduced = self.reduced();
        self.max_rate = max_rate;
        self.max_conns = max_conns.max(1);
        if reduced {
            self.rate = self.rate.min(max_rate);
            self.conns = self.conns.min(self.max_conns);
        } else {
            self.rate = max_rate;
            self.conns = self.max_conns;
        }
    }

    /// A throttle signal from the destination.
    pub fn signal(&mut self, now: Instant) -> Option<Change> {
        if self
            .last_signal
            .is_some_and(|t| now.duration_since(t) < STEP)
        {
            // counted once, but the second is not clean: no growth for a
            // full second after the last refusal
            self.last_step = now;
            self.last_conn_step = now;
            return None;
        }
        self.last_signal = Some(now);
        self.last_step = now;
        self.last_conn_step = now;
        self.rate = (self.rate * DECREASE).max(MIN_RATE);
        self.conns = self.conns.saturating_sub(1).max(1);
        Some(Change::SlowedDown {
            rate: self.rate,
            connections: self.conns,
        })
    }

    /// Time passes without signals (call on each clean reply, or a timer).
    pub fn clean(&mut self, now: Instant) -> Option<Change> {
        if !self.reduced() {
            return None;
        }
        let mut changed = false;
        while now.duration_since(self.last_step) >= STEP && self.rate < self.max_rate {
            self.last_step += STEP;
            self.rate =
                (self.rate + (self.rate * GROWTH).max(self.max_rate / 50.0)).min(self.max_rate);
            changed = true;
        }
        while now.duration_since(self.last_conn_step) >= CONN_STEP && self.conns < self.max_conns {
            self.last_conn_step += CONN_STEP;
            self.conns += 1;
            changed = true;
        }
        if self.rate >= self.max_rate {
            self.last_step = now;
        }
        if self.conns >= self.max_conns {
            self.last_conn_step = now;
        }
        changed.then_some(Change::SpedUp {
            rate: self.rate,
            connections: self.conns,
        })
    }
}

#[cfg(test)]
mod sim;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slows_down_once_per_second_and_recovers() {
        let t0 = Instant::now();
        let mut t = Throttle::new(100.0, 4, t0);
        assert!(matches!(
            t.signal(t0),
            Some(Change::SlowedDown { connections: 3, .. })
        ));
        assert!((t.rate() - 70.0).abs() < 1e-9);
        // a burst of refusals within the second counts once
        assert_eq!(t.signal(t0 + Duration::from_millis(300)), None);
        assert!(t.signal(t0 + Duration::from_millis(1100)).is_some());
        assert!((t.rate() - 49.0).abs() < 1e-9);
        assert_eq!(t.connections(), 2);
        // clean seconds ramp back to the configured limits
        let mut now = t0 + Duration::from_millis(1100);
        for _ in 0..30 {
            now += Duration::from_secs(1);
            t.clean(now);
        }
        assert_eq!((t.rate(), t.connections()), (100.0, 4));
        assert!(!t.reduced());
    }

    #[test]
    fn settles_under_a_receiver_limit() {
        // the receiver refuses whenever the rate is above 20/s
        let t0 = Instant::now();
        let mut t = Throttle::new(200.0, 4, t0);
        let mut now = t0;
        let mut rates = Vec::new();
        for _ in 0..60 {
            now += Duration::from_secs(1);
            if t.rate() > 20.0 {
                t.signal(now);
            } else {
                t.clean(now);
            }
            rates.push(t.rate());
        }
        let tail = &rates[30..];
        let mean = tail.iter().sum::<f64>() / tail.len() as f64;
        assert!(
            mean > 12.0 && mean <= 20.0 * 1.25,
            "mean {mean} of {tail:?}"
        );
        assert!(tail.iter().all(|r| *r < 30.0));
    }

    #[test]
    fn refusals_within_the_second_keep_it_from_counting_as_clean() {
        // refusals every 100 ms: each second cuts x0.7, none grows
        let t0 = Instant::now();
        let mut t = Throttle::new(400.0, 4, t0);
        let mut now = t0;
        for _ in 0..50 {
            t.signal(now);
            now += Duration::from_millis(100);
            t.clean(now);
        }
        let expected = 400.0 * 0.7f64.powi(5);
        assert!((t.rate() - expected).abs() < 1e-6, "{}", t.rate());
        // then a clean second grows it
        now += Duration::from_millis(1100);
        t.clean(now);
        assert!(t.rate() > expected);
    }

    #[test]
    fn config_change_clamps() {
        let t0 = Instant::now();
        let mut t = Throttle::new(100.0, 4, t0);
        t.set_limits(10.0, 2);
        assert_eq!((t.rate(), t.connections()), (10.0, 2));
        t.signal(t0);
        t.set_limits(50.0, 8);
        assert!(t.rate() < 10.0 && t.connections() == 1);
    }
}
