//! Faults of the receiving server, against the scripted server: each ends
//! in the right outcome and event.
//!
//! - the connection drops in the middle of DATA: deferred, then delivered
//!   once on retry;
//! - a tarpitted RCPT reply (slower than the `rcpt` timeout): deferred with
//!   a diagnostic naming the phase, then a final Transient bounce at
//!   `max_age`;
//! - `421` at greeting: deferred, then delivered;
//! - STARTTLS offered but broken: plain text with `tls = "opportunistic"`,
//!   never plain text with `tls = "required"` (deferred, then a Transient
//!   bounce at `max_age`);
//! - no PIPELINING: delivered in lock-step (one command per read);
//! - `552 5.3.4` at end of data, or a declared SIZE that the message
//!   exceeds: a final MessageTooLarge bounce, never retried;
//! - the server closes after N messages per connection (silently or with
//!   `421`): everyone delivered exactly once; `messages_per_connection`
//!   makes the engine QUIT and reconnect;
//! - `max_age` end to end: a server that always answers `451` ends with a
//!   Transient bounce per recipient in bounded time and nothing left
//!   queued or deferred.
//!
//! Mixed per-RCPT replies in one pipelined transaction are covered by
//! `scripted_replies.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use volley_tests::scripted::{BrokenTls, Close, Options, RcptScript, ScriptedServer, Stage};
use volley_tests::*;

fn accept() -> Arc<RcptScript> {
    Arc::new(|_: &str, _: u32| "250 2.1.5 Ok".to_string())
}

fn server(opts: Options) -> ScriptedServer {
    ScriptedServer::start_with(opts, accept())
}

/// Writes `list.csv` with `n` recipients and a campaign personalized per
/// recipient (one recipient per transaction); returns the addresses.
fn campaign(fx: &Fixture, n: usize) -> Vec<String> {
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
fn serve_until(
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
fn epoch_ms(ts: &str) -> i64 {
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
fn bounce_age(b: &serde_json::Value) -> Duration {
    let at = epoch_ms(b["bounce"]["timestamp"].as_str().expect("bounce.timestamp"));
    let created = epoch_ms(b["mail"]["timestamp"].as_str().expect("mail.timestamp"));
    Duration::from_millis(u64::try_from(at - created).expect("bounce after acceptance"))
}

fn of_type<'a>(ev: &'a [serde_json::Value], t: &str) -> Vec<&'a serde_json::Value> {
    ev.iter().filter(|e| e["eventType"] == t).collect()
}

fn delay_diag(e: &serde_json::Value) -> String {
    e["deliveryDelay"]["delayedRecipients"][0]["diagnosticCode"]
        .as_str()
        .expect("delayedRecipients[0].diagnosticCode")
        .to_string()
}

fn bounce_diag(e: &serde_json::Value) -> String {
    e["bounce"]["bouncedRecipients"][0]["diagnosticCode"]
        .as_str()
        .expect("bouncedRecipients[0].diagnosticCode")
        .to_string()
}

/// Recipients of the messages the server received, counted.
fn received_by_rcpt(s: &ScriptedServer) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in s.received().into_iter().flat_map(|m| m.rcpts) {
        *m.entry(r).or_default() += 1;
    }
    m
}

/// Every recipient got exactly one message and exactly one Delivery event.
fn assert_each_delivered_once(fx: &Fixture, s: &ScriptedServer, rcpts: &[String]) {
    let got = received_by_rcpt(s);
    let delivered = per_recipient(&fx.events(), "Delivery");
    for r in rcpts {
        assert_eq!(got.get(r), Some(&1), "{r} received once: {got:?}");
        assert_eq!(delivered.get(r), Some(&1), "one Delivery for {r}");
    }
    assert_eq!(got.len(), rcpts.len(), "{got:?}");
    assert_eq!(delivered.len(), rcpts.len());
}

const RETRY_FAST: &str = "retry_first = \"1s\"\n";

#[test]
fn drop_in_data_is_deferred_then_delivered_once() {
    let server = server(Options {
        pipelining: true,
        drop_in_data: 1,
        ..Default::default()
    });
    let fx = Fixture::new();
    let rcpts = campaign(&fx, 3);
    fx.config(
        &server.addr.to_string(),
        &format!("[delivery]\nconnections = 1\n{RETRY_FAST}"),
    );
    fx.enqueue();
    serve_until(&fx, Duration::from_secs(30), "all delivered", |ev| {
        per_recipient(ev, "Delivery").len() == 3
    });
    let ev = fx.events();
    let delays = of_type(&ev, "DeliveryDelay");
    assert_eq!(delays.len(), 1, "one recipient was cut off: {delays:?}");
    let cut = delays[0]["mail"]["destination"][0].as_str().unwrap();
    let diag = delay_diag(delays[0]);
    assert!(
        diag.starts_with("smtp; 421 4.4.2") && diag.contains("end of data"),
        "{diag}"
    );
    assert_eq!(
        delays[0]["deliveryDelay"]["delayType"],
        "TransientCommunicationFailure"
    );
    assert!(of_type(&ev, "Bounce").is_empty());
    assert_each_delivered_once(&fx, &server, &rcpts);
    assert_eq!(server.offered()[cut], 2, "{cut}: cut off, then retried");
}

#[test]
fn tarpitted_rcpt_times_out_then_expires() {
    let server = server(Options {
        pipelining: true,
        tarpit: Some((Stage::Rcpt, Duration::from_secs(3))),
        ..Default::default()
    });
    let fx = Fixture::new();
    let rcpts = campaign(&fx, 2);
    fx.config(
        &server.addr.to_string(),
        &format!("[delivery]\n{RETRY_FAST}max_age = \"4s\"\n[delivery.timeouts]\nrcpt = \"1s\"\n"),
    );
    // `send` ends once only deferred recipients remain (exit 3) ...
    let out = fx.volley("send", Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let ev = fx.events();
    assert_eq!(per_recipient(&ev, "DeliveryDelay").len(), 2, "{ev:?}");
    assert!(of_type(&ev, "Bounce").is_empty());
    // ... and the service gives up on them at max_age
    serve_until(&fx, Duration::from_secs(30), "final bounces", |ev| {
        per_recipient(ev, "Bounce").len() == 2
    });
    let ev = fx.events();
    for d in of_type(&ev, "DeliveryDelay") {
        let diag = delay_diag(d);
        assert!(
            diag.starts_with("smtp; 421 4.4.2 timeout waiting for the RCPT TO reply"),
            "{diag}"
        );
    }
    let bounces = of_type(&ev, "Bounce");
    assert_eq!(bounces.len(), 2);
    for b in &bounces {
        assert_eq!(b["bounce"]["bounceType"], "Transient", "{b}");
        let diag = bounce_diag(b);
        assert!(
            diag.contains("timeout waiting for the RCPT TO reply") && diag.contains("expired"),
            "{diag}"
        );
        // given up by max_age plus one (1 s) attempt, with some slack
        let age = bounce_age(b);
        assert!(
            age < Duration::from_millis(6500),
            "bounced {age:?} after acceptance"
        );
    }
    assert!(per_recipient(&ev, "Delivery").is_empty());
    assert_eq!(server.received_count(), 0);
    for r in &rcpts {
        assert!(server.offered()[r] >= 2, "{r} retried before giving up");
    }
    let totals = fx.status()["totals"].clone();
    assert_eq!(
        (totals["queued"].as_u64(), totals["deferred"].as_u64()),
        (Some(0), Some(0)),
        "{totals}"
    );
    assert_eq!(totals["bounced"], 2, "{totals}");
}

#[test]
fn greeting_421_is_deferred_then_delivered() {
    let server = server(Options {
        pipelining: true,
        greeting_421: 1,
        ..Default::default()
    });
    let fx = Fixture::new();
    let rcpts = campaign(&fx, 3);
    fx.config(
        &server.addr.to_string(),
        &format!("[delivery]\nconnections = 1\n{RETRY_FAST}"),
    );
    fx.enqueue();
    serve_until(&fx, Duration::from_secs(30), "all delivered", |ev| {
        per_recipient(ev, "Delivery").len() == 3
    });
    let ev = fx.events();
    let delays = of_type(&ev, "DeliveryDelay");
    assert!(
        !delays.is_empty(),
        "the refused connection deferred its mail"
    );
    for d in &delays {
        let diag = delay_diag(d);
        assert!(diag.starts_with("smtp; 421 4.3.2"), "{diag}");
        assert_eq!(
            d["deliveryDelay"]["delayedRecipients"][0]["status"],
            "4.3.2"
        );
    }
    assert!(server.connections() >= 2);
    assert_each_delivered_once(&fx, &server, &rcpts);
}

#[test]
fn broken_starttls_falls_back_to_plain_text_when_opportunistic() {
    for how in [BrokenTls::Close, BrokenTls::Garbage] {
        let server = server(Options {
            pipelining: true,
            broken_tls: Some(how),
            ..Default::default()
        });
        let fx = Fixture::new();
        let rcpts = campaign(&fx, 2);
        fx.config(
            &server.addr.to_string(),
            "[delivery]\ntls = \"opportunistic\"\n",
        );
        let out = fx.volley("send", Duration::from_secs(60));
        assert_eq!(out.status.code(), Some(0), "{how:?}: {}", text(&out.stderr));
        assert_each_delivered_once(&fx, &server, &rcpts);
        assert!(server.received().iter().all(|m| !m.tls));
        assert!(
            server.command_log().iter().any(|c| c == "STARTTLS"),
            "{how:?}: STARTTLS was tried"
        );
        assert!(of_type(&fx.events(), "DeliveryDelay").is_empty());
    }
}

#[test]
fn broken_starttls_never_goes_plain_when_required() {
    let server = server(Options {
        pipelining: true,
        broken_tls: Some(BrokenTls::Garbage),
        ..Default::default()
    });
    let fx = Fixture::new();
    campaign(&fx, 2);
    fx.config(
        &server.addr.to_string(),
        &format!("[delivery]\ntls = \"required\"\n{RETRY_FAST}max_age = \"3s\"\n"),
    );
    fx.enqueue();
    serve_until(&fx, Duration::from_secs(30), "final bounces", |ev| {
        per_recipient(ev, "Bounce").len() == 2
    });
    let ev = fx.events();
    let delays = of_type(&ev, "DeliveryDelay");
    assert!(!delays.is_empty());
    for d in &delays {
        let diag = delay_diag(d);
        assert!(
            diag.starts_with("smtp; 421 4.7.0") && diag.contains("TLS"),
            "{diag}"
        );
    }
    for b in of_type(&ev, "Bounce") {
        assert_eq!(b["bounce"]["bounceType"], "Transient", "{b}");
        let diag = bounce_diag(b);
        assert!(diag.contains("TLS") && diag.contains("expired"), "{diag}");
        let age = bounce_age(b);
        assert!(
            age < Duration::from_millis(4500),
            "bounced {age:?} after acceptance (max_age 3s)"
        );
    }
    assert!(per_recipient(&ev, "Delivery").is_empty());
    assert_eq!(server.received_count(), 0, "nothing went out in plain text");
    assert!(server.offered().is_empty(), "{:?}", server.offered());
    let log = server.command_log();
    assert!(
        !log.iter().any(|c| c.starts_with("MAIL")),
        "no transaction in plain text: {log:?}"
    );
}

#[test]
fn without_pipelining_commands_go_in_lockstep() {
    for pipelining in [false, true] {
        let server = server(Options {
            pipelining,
            ..Default::default()
        });
        let fx = Fixture::new();
        let rcpts = campaign(&fx, 3);
        fx.config(&server.addr.to_string(), "[delivery]\nconnections = 1\n");
        let out = fx.volley("send", Duration::from_secs(60));
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_each_delivered_once(&fx, &server, &rcpts);
        // every read carried exactly one command line (the message itself
        // is read after DATA and not counted here)
        let log = server.command_log();
        let reads = server.reads();
        let one_per_read =
            reads.len() == log.len() && reads.iter().zip(&log).all(|(n, l)| *n == l.len() + 2);
        if pipelining {
            // the control: MAIL, RCPT and DATA arrive together
            assert!(!one_per_read, "pipelined, yet {reads:?} for {log:?}");
        } else {
            assert!(one_per_read, "lock-step: {reads:?} for {log:?}");
            let mail = log.iter().filter(|l| l.starts_with("MAIL FROM")).count();
            assert_eq!(mail, 3, "{log:?}");
        }
    }
}

#[test]
fn message_too_large_bounces_without_retry() {
    // 552 at end of data, and a declared SIZE the message exceeds
    for advertise_size in [false, true] {
        let server = server(Options {
            pipelining: true,
            size_limit: Some(64),
            advertise_size,
            ..Default::default()
        });
        let fx = Fixture::new();
        let rcpts = campaign(&fx, 2);
        fx.config(
            &server.addr.to_string(),
            &format!("[delivery]\n{RETRY_FAST}"),
        );
        let out = fx.volley("send", Duration::from_secs(60));
        assert_eq!(
            out.status.code(),
            Some(0),
            "a bounce is final: {}",
            text(&out.stderr)
        );
        let ev = fx.events();
        let bounces = of_type(&ev, "Bounce");
        assert_eq!(bounces.len(), 2, "{ev:?}");
        for b in &bounces {
            // SES files MessageTooLarge under the Transient bounce type
            assert_eq!(b["bounce"]["bounceSubType"], "MessageTooLarge", "{b}");
            assert_eq!(b["bounce"]["bounceType"], "Transient", "{b}");
            let r = &b["bounce"]["bouncedRecipients"][0];
            assert_eq!(r["status"], "5.3.4");
            let diag = bounce_diag(b);
            assert!(diag.starts_with("smtp; 552 5.3.4"), "{diag}");
        }
        assert!(of_type(&ev, "DeliveryDelay").is_empty());
        assert!(per_recipient(&ev, "Delivery").is_empty());
        assert_eq!(server.received_count(), 0);
        let offered = server.offered();
        let datas = server.command_log().iter().filter(|l| *l == "DATA").count();
        if advertise_size {
            // the engine knew the limit: nothing was offered at all
            assert!(offered.is_empty(), "{offered:?}");
            assert_eq!(datas, 0);
        } else {
            for r in &rcpts {
                assert_eq!(offered.get(r), Some(&1), "{r} offered once, never retried");
            }
            assert_eq!(datas, 2);
        }
        // final in the spool too: nothing left to retry
        let totals = fx.status()["totals"].clone();
        assert_eq!(
            (totals["bounced"].as_u64(), totals["deferred"].as_u64()),
            (Some(2), Some(0)),
            "{totals}"
        );
    }
}

#[test]
fn server_closing_after_n_messages_loses_nothing() {
    for how in [Close::Silently, Close::With421] {
        let server = server(Options {
            pipelining: true,
            close_after: Some((3, how)),
            ..Default::default()
        });
        let fx = Fixture::new();
        let rcpts = campaign(&fx, 10);
        fx.config(
            &server.addr.to_string(),
            &format!("[delivery]\nconnections = 2\n{RETRY_FAST}"),
        );
        fx.enqueue();
        serve_until(&fx, Duration::from_secs(40), "all delivered", |ev| {
            per_recipient(ev, "Delivery").len() == rcpts.len()
        });
        assert_each_delivered_once(&fx, &server, &rcpts);
        let mut per_conn = BTreeMap::<usize, usize>::new();
        for m in server.received() {
            *per_conn.entry(m.conn).or_default() += 1;
        }
        assert!(per_conn.values().all(|n| *n <= 3), "{per_conn:?}");
        let ev = fx.events();
        for d in of_type(&ev, "DeliveryDelay") {
            let diag = delay_diag(d);
            if how == Close::With421 {
                assert!(
                    diag.contains("421 4.7.0 scripted: too many messages"),
                    "{how:?}: {diag}"
                );
            } else {
                assert!(
                    diag.starts_with("smtp; 421 4.4.2 connection closed"),
                    "{how:?}: {diag}"
                );
            }
        }
        assert!(of_type(&ev, "Bounce").is_empty());
    }
}

#[test]
fn messages_per_connection_reconnects() {
    let server = server(Options {
        pipelining: true,
        ..Default::default()
    });
    let fx = Fixture::new();
    let rcpts = campaign(&fx, 12);
    fx.config(
        &server.addr.to_string(),
        "[delivery]\nconnections = 1\nmessages_per_connection = 5\n",
    );
    let out = fx.volley("send", Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_each_delivered_once(&fx, &server, &rcpts);
    let mut per_conn = BTreeMap::<usize, usize>::new();
    for m in server.received() {
        *per_conn.entry(m.conn).or_default() += 1;
    }
    assert!(per_conn.values().all(|n| *n <= 5), "{per_conn:?}");
    assert!(
        per_conn.len() >= 3,
        "12 messages, 5 per connection: {per_conn:?}"
    );
    assert!(server.connections() >= 3);
    assert_eq!(server.max_concurrent(), 1, "connections = 1");
    let quits = server.command_log().iter().filter(|l| *l == "QUIT").count();
    assert!(
        quits >= 2,
        "the engine said QUIT before reconnecting ({quits})"
    );
    assert!(of_type(&fx.events(), "DeliveryDelay").is_empty());
}

#[test]
fn max_age_gives_up_with_a_transient_bounce() {
    let server = ScriptedServer::start(
        true,
        Arc::new(|_: &str, _: u32| "451 4.3.0 Temporary lookup failure".to_string()),
    );
    let fx = Fixture::new();
    let rcpts = campaign(&fx, 5);
    fx.config(
        &server.addr.to_string(),
        &format!("[delivery]\n{RETRY_FAST}max_age = \"3s\"\n"),
    );
    fx.enqueue();
    let took = serve_until(&fx, Duration::from_secs(30), "final bounces", |ev| {
        per_recipient(ev, "Bounce").len() == 5
    });
    assert!(
        took < Duration::from_secs(10),
        "gave up {took:?} after start (max_age 3s)"
    );
    let ev = fx.events();
    let delays = per_recipient(&ev, "DeliveryDelay");
    let bounces = per_recipient(&ev, "Bounce");
    for r in &rcpts {
        assert!(delays.get(r) >= Some(&1), "{r} deferred first: {delays:?}");
        assert_eq!(bounces.get(r), Some(&1), "{r}: one final bounce");
    }
    for b in of_type(&ev, "Bounce") {
        assert_eq!(b["bounce"]["bounceType"], "Transient");
        let age = bounce_age(b);
        assert!(
            age < Duration::from_millis(4500),
            "bounced {age:?} after acceptance"
        );
        let r = &b["bounce"]["bouncedRecipients"][0];
        assert_eq!(r["status"], "4.4.7");
        let diag = bounce_diag(b);
        assert!(
            diag.contains("451 4.3.0 Temporary lookup failure") && diag.contains("expired"),
            "{diag}"
        );
    }
    for d in of_type(&ev, "DeliveryDelay") {
        assert!(delay_diag(d).contains("451 4.3.0"));
        assert_eq!(
            d["deliveryDelay"]["delayedRecipients"][0]["status"],
            "4.3.0"
        );
    }
    assert!(per_recipient(&ev, "Delivery").is_empty());
    let offered = server.offered();
    for r in &rcpts {
        assert!(offered[r] >= 2, "{r} retried before giving up: {offered:?}");
    }
    let totals = fx.status()["totals"].clone();
    assert_eq!(totals["queued"], 0, "{totals}");
    assert_eq!(totals["deferred"], 0, "{totals}");
    assert_eq!(totals["bounced"], 5, "{totals}");
}
