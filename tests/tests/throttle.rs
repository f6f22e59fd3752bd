//! Adaptive throttling against a receiver with a rate limit: the scripted
//! server accepts at most R RCPTs per sliding second and answers the excess
//! with `451 4.7.1 Rate limited, slow down`, while the engine is configured
//! ten times higher (400/s, 4 connections). The service (`volley run`) must
//! settle just under the limit (accepted rate near R, few throttled
//! replies, the site's `volley_site_rate_limit` gauge near R) and, once the
//! receiver lifts its limit, raise the gauge back to the configured rate
//! and send the rest faster.
//!
//! This proves the wiring on real sockets: replies reach the site's
//! throttle, the throttle's limits reach the rate limiter and the
//! connections. Its assertions are counts, shares and comparisons within
//! the run, with generous time limits, so a slow or loaded machine does not
//! fail it. How fast the algorithm (engine/src/delivery/throttle.rs)
//! settles and recovers is measured on a simulated clock, deterministically,
//! in engine/src/delivery/throttle/sim.rs.
//!
//! Run with `--nocapture` to see the figures and the course second by
//! second.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use volley_tests::prom::site_value;
use volley_tests::scripted::{Options, ScriptedServer};
use volley_tests::*;

/// The receiver's limit (RCPTs per second).
const R: u32 = 40;
/// The engine's configured rate.
const CONFIGURED: f64 = 400.0;
/// Recipients: more than a test sends, so that the supply never runs out
/// while it measures.
const N: usize = 3000;
/// Settled: the rate gauge has come down to this many times R ...
const SETTLED_AT: f64 = 1.25;
/// ... and then averages at most this many times R.
const SETTLED_MEAN: f64 = 1.5;

/// Scenarios run one at a time: each measures rates over seconds, and two
/// services sharing two cores would measure each other.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A receiver with a limit, and the service sending to it.
struct Rig {
    server: ScriptedServer,
    fx: Fixture,
    http: String,
    site: String,
    service: Option<Running>,
    /// When the first RCPT arrived.
    t0: Instant,
    /// (when, rate limit, connection limit) from `/metrics`.
    samples: Vec<(Instant, f64, f64)>,
    /// Held until the rig is gone (dropped last).
    _turn: MutexGuard<'static, ()>,
}

impl Rig {
    fn start() -> Rig {
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let server = ScriptedServer::start_with(
            Options {
                pipelining: true,
                rcpt_rate: R,
                ..Default::default()
            },
            Arc::new(|_: &str, _: u32| "250 2.1.5 Ok".to_string()),
        );
        let site = server.addr.to_string();
        let fx = Fixture::new();
        let mut csv = String::from("email,name\n");
        for i in 0..N {
            csv.push_str(&format!("r{i}@throttle.test,N{i}\n"));
        }
        fx.write("list.csv", csv);
        fx.campaign("list.csv", "Hello {{name}}", "Hi {{name}}\n", "");
        // throttled recipients come back after about a second, every time
        fx.config(
            &site,
            &format!(
                "[delivery]\nmessages_per_second = {CONFIGURED}\nconnections = 4\n\
                 retry_first = \"1s\"\nretry_factor = 1.0\n"
            ),
        );
        fx.enqueue();
        let http = fx.http_addr();
        let service = spawn(fx.path(), &["run", "--config", "config.toml"]);
        wait_until(Duration::from_secs(20), "the first RCPT", || {
            !server.offered().is_empty()
        });
        Rig {
            server,
            fx,
            http,
            site,
            service: Some(service),
            t0: Instant::now(),
            samples: Vec::new(),
            _turn: turn,
        }
    }

    /// Reads the site's gauges, then waits 200 ms.
    fn sample(&mut self) -> Option<(f64, f64)> {
        let g = gauges(&self.http, &self.site);
        if let Some((rate, conns)) = g {
            self.samples.push((Instant::now(), rate, conns));
        }
        std::thread::sleep(Duration::from_millis(200));
        g
    }

    /// Samples until `until`.
    fn sample_until(&mut self, until: Instant) {
        while Instant::now() < until {
            self.sample();
        }
    }

    /// Samples until the rate gauge is at most SETTLED_AT x R (or `limit`
    /// passed); returns when, after the first RCPT.
    fn settle(&mut self, limit: Duration) -> Option<Duration> {
        while self.t0.elapsed() < limit {
            if self
                .sample()
                .is_some_and(|(rate, _)| rate <= SETTLED_AT * f64::from(R))
            {
                return Some(self.t0.elapsed());
            }
        }
        None
    }

    /// Stops the service (checking a clean exit) and checks that nobody was
    /// received twice.
    fn stop(&mut self) {
        if let Some(service) = self.service.take() {
            stop(service);
        }
        let mut seen = std::collections::HashSet::new();
        for m in self.server.received() {
            for r in m.rcpts {
                assert!(seen.insert(r.clone()), "{r} received twice");
            }
        }
        let delivered = per_recipient(&self.fx.events(), "Delivery").len();
        assert!(delivered <= seen.len(), "{delivered} Delivery events");
    }

    /// What the receiver saw and the gauges showed in [from, to).
    fn window(&self, from: Instant, to: Instant) -> Window {
        let received: Vec<Instant> = self.server.received().iter().map(|m| m.at).collect();
        let accepted = within(&received, from, to);
        let throttled = within(&self.server.throttled(), from, to);
        let gauge: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.0 >= from && s.0 < to)
            .map(|s| s.1)
            .collect();
        let secs = (to - from).as_secs_f64().max(0.001);
        Window {
            accepted_rate: accepted as f64 / secs,
            throttled,
            throttled_share: throttled as f64 / (accepted + throttled).max(1) as f64,
            gauge_mean: gauge.iter().sum::<f64>() / gauge.len().max(1) as f64,
            gauge_max: gauge.iter().copied().fold(0.0, f64::max),
            samples: gauge.len(),
        }
    }

    /// The course of the run, second by second, for the test output.
    fn course(&self) -> String {
        let received: Vec<Instant> = self.server.received().iter().map(|m| m.at).collect();
        let throttled = self.server.throttled();
        let end = self.samples.last().map_or(self.t0, |s| s.0);
        let mut out = String::new();
        let mut t = self.t0;
        while t < end {
            let next = t + Duration::from_secs(1);
            let gauge: Vec<String> = self
                .samples
                .iter()
                .filter(|s| s.0 >= t && s.0 < next)
                .map(|s| format!("{:.0}/{}", s.1, s.2))
                .collect();
            out.push_str(&format!(
                "t={:>4.1}s accepted {:>3} throttled {:>3} gauges(rate/connections) {}\n",
                (t - self.t0).as_secs_f64(),
                within(&received, t, next),
                within(&throttled, t, next),
                gauge.join(" ")
            ));
            t = next;
        }
        out
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(s) = self.service.take() {
            terminate(&s);
            let _ = wait_output(s, Duration::from_secs(30));
        }
    }
}

/// Measurements over a time window.
#[derive(Debug)]
#[allow(dead_code)] // read through Debug
struct Window {
    accepted_rate: f64,
    throttled: usize,
    throttled_share: f64,
    gauge_mean: f64,
    gauge_max: f64,
    samples: usize,
}

impl Window {
    /// Settled just under the receiver's limit.
    fn assert_settled(&self, what: &str) {
        let r = f64::from(R);
        assert!(self.samples >= 10, "{what}: {self:?}");
        // the receiver caps what it accepts at R; below half of it the
        // engine would have slowed down too much
        assert!(
            self.accepted_rate >= 0.5 * r && self.accepted_rate <= 1.1 * r,
            "{what}: {self:?}"
        );
        // few refusals: the engine is not pushing far beyond the limit
        assert!(self.throttled_share < 0.15, "{what}: {self:?}");
        assert!(
            self.gauge_mean >= 0.5 * r && self.gauge_mean <= SETTLED_MEAN * r,
            "{what}: {self:?}"
        );
        assert!(self.gauge_max <= 2.0 * r, "{what}: {self:?}");
    }
}

/// The site's gauges from `/metrics` (rate limit, connection limit).
fn gauges(http: &str, site: &str) -> Option<(f64, f64)> {
    let (code, body) = http_get(http, "/metrics").ok()?;
    if code != 200 {
        return None;
    }
    let gauge = |name: &str| site_value(&body, name, site, &[]);
    Some((
        gauge("volley_site_rate_limit")?,
        gauge("volley_site_connection_limit")?,
    ))
}

/// Counts instants within [from, to).
fn within(ts: &[Instant], from: Instant, to: Instant) -> usize {
    ts.iter().filter(|t| **t >= from && **t < to).count()
}

/// Settles under the limit, stays there, and recovers when it lifts.
#[test]
fn settles_under_the_receivers_limit_and_recovers_when_it_lifts() {
    let mut rig = Rig::start();
    let settled_after = rig.settle(Duration::from_secs(60));
    let Some(settled_after) = settled_after else {
        panic!("not settled within 60 s:\n{}", rig.course());
    };
    // measured from a second later (the step that settled it has passed)
    let from = Instant::now() + Duration::from_secs(1);
    let lift_at = from + Duration::from_secs(5);
    rig.sample_until(lift_at);
    let settled = rig.window(from, lift_at);
    let warm_up = rig.window(rig.t0, from);

    rig.server.set_rcpt_rate(0);
    let lifted = Instant::now();
    let mut recovered = None;
    while lifted.elapsed() < Duration::from_secs(60) {
        if rig.sample().is_some_and(|g| g.0 >= CONFIGURED) {
            recovered = Some(lifted.elapsed());
            break;
        }
    }
    let end = Instant::now();
    let after = rig.window(lifted, end);
    let last2 = rig.window(end - Duration::from_secs(2), end);
    rig.stop();
    let figures = format!(
        "R = {R}/s, configured {CONFIGURED}/s\n\
         warm-up: settled (gauge <= {SETTLED_AT} R) {settled_after:?} after the first RCPT; {warm_up:?}\n\
         settled (5 s): {settled:?}\n\
         after the lift: gauge back at the configured rate after {recovered:?}; {after:?}\n\
         last 2 s: {last2:?}\n{}",
        rig.course()
    );
    eprintln!("{figures}");

    assert!(
        warm_up.throttled > 0,
        "the limit was hit while warming up:\n{figures}"
    );
    settled.assert_settled(&figures);
    // the limit lifts: the gauge climbs back to the configured rate and,
    // with nothing refused, more goes out than while it was limited
    assert!(recovered.is_some(), "{figures}");
    assert_eq!(after.throttled, 0, "{figures}");
    assert!(
        last2.accepted_rate > 1.5 * settled.accepted_rate,
        "{figures}"
    );
}
