//! Fault rig: accept-all scripted servers with fault options, a campaign
//! of `n` personalized recipients, running the service until the events
//! show an end, and reading SES event fields (diagnostics, bounce age).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::scripted::{Options, RcptScript, ScriptedServer};
use crate::{Fixture, per_recipient, spawn, stop, wait_until};

/// Retries a second after a deferral (`[delivery]` lines).
pub const RETRY_FAST: &str = "retry_first = \"1s\"\n";

/// One retry a second after the first deferral; the next would come 10 s
/// later, so with a `max_age` under 11 s the last retry comes at `max_age`
/// itself and its failure gives up (`[delivery]` lines). No jitter: the
/// timing does not vary.
pub const RETRY_ONCE: &str = "retry_first = \"1s\"\nretry_factor = 10.0\nretry_jitter = 0.0\n";

/// Accepts every recipient.
pub fn accept() -> Arc<RcptScript> {
    Arc::new(|_: &str, _: u32| "250 2.1.5 Ok".to_string())
}

/// A scripted server with `opts` that accepts every recipient.
pub fn server(opts: Options) -> ScriptedServer {
    ScriptedServer::start_with(opts, accept())
}

/// Writes `list.csv` with `n` recipients and a campaign personalized per
/// recipient (one recipient per transaction); returns the addresses.
pub fn campaign(fx: &Fixture, n: usize) -> Vec<String> {
    let rcpts: Vec<String> = (0..n).map(|i| format!("r{i}@faults.test")).collect();
    let mut csv = String::from("email,name\n");
    for (i, r) in rcpts.iter().enumerate() {
        csv.push_str(&format!("{r},N{i}\n"));
    }
    fx.write("list.csv", csv);
    fx.campaign("list.csv", "Hello {{name}}", "Hi {{name}}\n", "");
    rcpts
}

/// Runs the service until `done` holds for the events (within `limit`),
/// stops it and checks a clean exit. Returns how long `done` took.
pub fn serve_until(
    fx: &Fixture,
    limit: Duration,
    what: &str,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Duration {
    let started = Instant::now();
    let service = spawn(fx.path(), &["run", "--config", "config.toml"]);
    wait_until(limit, what, || done(&fx.events()));
    let took = started.elapsed();
    stop(service);
    took
}

/// Milliseconds since the epoch of an event timestamp such as
/// `2026-11-28T06:50:02.774Z`.
pub fn epoch_ms(ts: &str) -> i64 {
    let n = |r: std::ops::Range<usize>| -> i64 {
        ts.get(r)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("timestamp {ts:?}"))
    };
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // days from civil (H. Hinnant)
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 24 + n(11..13)) * 60 + n(14..16)) * 60_000 + n(17..19) * 1000 + n(20..23)
}

/// How long after the message was accepted (`mail.timestamp`) a Bounce
/// event was given.
pub fn bounce_age(b: &serde_json::Value) -> Duration {
    let at = epoch_ms(b["bounce"]["timestamp"].as_str().expect("bounce.timestamp"));
    let created = epoch_ms(b["mail"]["timestamp"].as_str().expect("mail.timestamp"));
    Duration::from_millis(u64::try_from(at - created).expect("bounce after acceptance"))
}

pub fn of_type<'a>(ev: &'a [serde_json::Value], t: &str) -> Vec<&'a serde_json::Value> {
    ev.iter().filter(|e| e["eventType"] == t).collect()
}

pub fn delay_diag(e: &serde_json::Value) -> String {
    e["deliveryDelay"]["delayedRecipients"][0]["diagnosticCode"]
        .as_str()
        .expect("delayedRecipients[0].diagnosticCode")
        .to_string()
}

pub fn bounce_diag(e: &serde_json::Value) -> String {
    e["bounce"]["bouncedRecipients"][0]["diagnosticCode"]
        .as_str()
        .expect("bouncedRecipients[0].diagnosticCode")
        .to_string()
}

/// Recipients of the messages the server received, counted.
pub fn received_by_rcpt(s: &ScriptedServer) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in s.received().into_iter().flat_map(|m| m.rcpts) {
        *m.entry(r).or_default() += 1;
    }
    m
}

/// Every recipient got exactly one message and exactly one Delivery event.
pub fn assert_each_delivered_once(fx: &Fixture, s: &ScriptedServer, rcpts: &[String]) {
    let got = received_by_rcpt(s);
    let delivered = per_recipient(&fx.events(), "Delivery");
    for r in rcpts {
        assert_eq!(got.get(r), Some(&1), "{r} received once: {got:?}");
        assert_eq!(delivered.get(r), Some(&1), "one Delivery for {r}");
    }
    assert_eq!(got.len(), rcpts.len(), "{got:?}");
    assert_eq!(delivered.len(), rcpts.len());
}

/// A server with `opts`, a campaign of `n` recipients sent to it with the
/// `[delivery]` lines `delivery` (plus fast retries), enqueued and served
/// until every recipient has a Delivery event (within 40 s). Returns the
/// server, the fixture and the recipients.
pub fn deliver_all(
    opts: Options,
    n: usize,
    delivery: &str,
) -> (ScriptedServer, Fixture, Vec<String>) {
    let server = server(opts);
    let fx = Fixture::new();
    let rcpts = campaign(&fx, n);
    fx.config(
        &server.addr.to_string(),
        &format!("[delivery]\n{delivery}\n{RETRY_FAST}"),
    );
    fx.enqueue();
    serve_until(&fx, Duration::from_secs(40), "all delivered", |ev| {
        per_recipient(ev, "Delivery").len() == n
    });
    (server, fx, rcpts)
}

/// Messages received per connection (by connection number).
pub fn per_connection(s: &ScriptedServer) -> BTreeMap<usize, usize> {
    let mut per_conn = BTreeMap::new();
    for m in s.received() {
        *per_conn.entry(m.conn).or_default() += 1;
    }
    per_conn
}
