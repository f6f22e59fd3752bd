//! The throttle against a simulated receiver, on a simulated clock: the
//! documented dynamics (how fast a site settles under a receiver's limit,
//! how close to the limit it then runs, how fast it recovers when the
//! limit lifts) measured deterministically, whatever the machine's load.
//!
//! The sender takes tokens at the throttle's rate (a bucket holding at most
//! one per connection, as the shard's rate limiter does); the receiver
//! accepts at most `limit` messages per sliding second and refuses the rest
//! with a throttling reply, which is a signal; an accepted message is a
//! clean observation.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::Throttle;

const TICK: Duration = Duration::from_millis(1);

struct Receiver {
    /// Messages per sliding second; 0 = no limit.
    limit: usize,
    recent: VecDeque<Instant>,
}

impl Receiver {
    fn accept(&mut self, now: Instant) -> bool {
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            self.recent.pop_front();
        }
        if self.limit > 0 && self.recent.len() >= self.limit {
            return false;
        }
        self.recent.push_back(now);
        true
    }
}

/// A simulated run: what happened at each instant.
struct Sim {
    t: Throttle,
    rx: Receiver,
    now: Instant,
    start: Instant,
    tokens: f64,
    accepted: Vec<Instant>,
    refused: Vec<Instant>,
    /// (when, rate limit) once per simulated 100 ms.
    gauge: Vec<(Instant, f64)>,
}

impl Sim {
    fn new(rate: f64, conns: u32, limit: usize) -> Sim {
        let start = Instant::now();
        Sim {
            t: Throttle::new(rate, conns, start),
            rx: Receiver {
                limit,
                recent: VecDeque::new(),
            },
            now: start,
            start,
            tokens: 0.0,
            accepted: Vec::new(),
            refused: Vec::new(),
            gauge: Vec::new(),
        }
    }

    /// Runs until `until` holds (checked every tick) or `limit` simulated
    /// time passed; returns the simulated time from the start.
    fn run_until(&mut self, limit: Duration, mut until: impl FnMut(&Sim) -> bool) -> Duration {
        let end = self.now + limit;
        while self.now < end && !until(self) {
            self.tick();
        }
        self.now - self.start
    }

    fn tick(&mut self) {
        self.now += TICK;
        let burst = f64::from(self.t.connections());
        self.tokens = (self.tokens + self.t.rate() * TICK.as_secs_f64()).min(burst);
        while self.tokens >= 1.0 {
            self.tokens -= 1.0;
            if self.rx.accept(self.now) {
                self.accepted.push(self.now);
                self.t.clean(self.now);
            } else {
                self.refused.push(self.now);
                self.t.signal(self.now);
            }
        }
        if (self.now - self.start).as_millis().is_multiple_of(100) {
            self.gauge.push((self.now, self.t.rate()));
        }
    }

    /// (accepted per second, refused share, mean gauge) in [from, to)
    /// after the start.
    fn window(&self, from: Duration, to: Duration) -> (f64, f64, f64) {
        let (from, to) = (self.start + from, self.start + to);
        let count = |v: &[Instant]| v.iter().filter(|t| **t >= from && **t < to).count();
        let (a, r) = (count(&self.accepted), count(&self.refused));
        let g: Vec<f64> = self
            .gauge
            .iter()
            .filter(|(t, _)| *t >= from && *t < to)
            .map(|(_, r)| *r)
            .collect();
        (
            a as f64 / (to - from).as_secs_f64(),
            r as f64 / (a + r).max(1) as f64,
            g.iter().sum::<f64>() / g.len().max(1) as f64,
        )
    }
}

/// Configured at 400/s and 4 connections against a receiver taking 40 a
/// second (the figures the README gives).
#[test]
fn settles_under_a_receiver_limit_then_recovers_when_it_lifts() {
    let mut s = Sim::new(400.0, 4, 40);
    // settled: the rate limit at most 1.25 x the receiver's limit; about
    // seven x0.7 cuts, one a second
    let settled = s.run_until(Duration::from_secs(30), |s| s.t.rate() <= 50.0);
    assert!(
        settled <= Duration::from_secs(9),
        "settled after {settled:?}"
    );
    // then it runs just under the limit, with few refusals
    s.run_until(Duration::from_secs(20), |_| false);
    let (accepted, refused, gauge) = s.window(
        settled + Duration::from_secs(1),
        settled + Duration::from_secs(20),
    );
    assert!((30.0..=40.0).contains(&accepted), "{accepted}/s accepted");
    assert!(refused < 0.10, "{refused} refused");
    assert!((20.0..=60.0).contains(&gauge), "gauge mean {gauge}");
    // the limit lifts: +20% a clean second gives half of 400 within
    // about nine seconds and all of it within about thirteen
    s.rx.limit = 0;
    let lifted = s.now - s.start;
    let half = s.run_until(Duration::from_secs(60), |s| s.t.rate() >= 200.0) - lifted;
    let full = s.run_until(Duration::from_secs(60), |s| s.t.rate() >= 400.0) - lifted;
    assert!(
        half <= Duration::from_secs(11),
        "half the rate after {half:?}"
    );
    assert!(
        full <= Duration::from_secs(15),
        "the configured rate after {full:?}"
    );
    // a connection back every five clean seconds
    let conns = s.run_until(Duration::from_secs(60), |s| s.t.connections() == 4) - lifted;
    assert!(
        conns <= Duration::from_secs(20),
        "4 connections after {conns:?}"
    );
    eprintln!(
        "settled after {settled:?}; then {accepted:.1}/s accepted, {:.1}% refused, rate limit {gauge:.1}/s on average; \
         after the lift: half the rate after {half:?}, all of it after {full:?}, all connections after {conns:?}",
        refused * 100.0
    );
}
