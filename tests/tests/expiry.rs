//! Faults of the receiving server that end in a bounce, against the
//! scripted server ([`volley_tests::fault_rig`]); nothing stays queued past
//! `max_age`:
//!
//! - a tarpitted RCPT reply (slower than the `rcpt` timeout): deferred with
//!   a diagnostic naming the phase, then a final Transient bounce at
//!   `max_age`;
//! - STARTTLS broken with `tls = "required"`: never plain text; deferred,
//!   then a Transient bounce at `max_age`;
//! - `552 5.3.4` at end of data, or a declared SIZE that the message
//!   exceeds: a final MessageTooLarge bounce, never retried;
//! - a server that always answers `451` ends with a Transient bounce per
//!   recipient in bounded time and nothing left queued or deferred.

use std::sync::Arc;
use std::time::Duration;

use volley_tests::fault_rig::*;
use volley_tests::scripted::{BrokenTls, Options, ScriptedServer, Stage};
use volley_tests::*;

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
        // deferred at ~1 s, retried at ~4 s (by the service: `send` has
        // ended by then) and, as the next delay (30 s) would pass max_age,
        // a last time at max_age (6 s): given up at that failure (~7 s)
        "[delivery]\nretry_first = \"3s\"\nretry_factor = 10.0\nretry_jitter = 0.0\nmax_age = \"6s\"\n[delivery.timeouts]\nrcpt = \"1s\"\n",
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
        // given up at max_age plus one (1 s) attempt, not before; with
        // some slack for a loaded machine
        let age = bounce_age(b);
        assert!(
            age >= Duration::from_secs(6) && age < Duration::from_secs(10),
            "bounced {age:?} after acceptance (max_age 6s)"
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
        &format!("[delivery]\ntls = \"required\"\n{RETRY_ONCE}max_age = \"5s\"\n"),
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
            age >= Duration::from_secs(5) && age < Duration::from_secs(9),
            "bounced {age:?} after acceptance (max_age 5s)"
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
fn max_age_gives_up_with_a_transient_bounce() {
    let server = ScriptedServer::start(
        true,
        Arc::new(|_: &str, _: u32| "451 4.3.0 Temporary lookup failure".to_string()),
    );
    let fx = Fixture::new();
    let rcpts = campaign(&fx, 5);
    fx.config(
        &server.addr.to_string(),
        &format!("[delivery]\n{RETRY_ONCE}max_age = \"5s\"\n"),
    );
    fx.enqueue();
    let took = serve_until(&fx, Duration::from_secs(30), "final bounces", |ev| {
        per_recipient(ev, "Bounce").len() == 5
    });
    assert!(
        took < Duration::from_secs(15),
        "gave up {took:?} after start (max_age 5s)"
    );
    let ev = fx.events();
    let delays = per_recipient(&ev, "DeliveryDelay");
    let bounces = per_recipient(&ev, "Bounce");
    for r in &rcpts {
        assert!(delays.get(r) >= Some(&1), "{r} deferred first: {delays:?}");
        assert_eq!(bounces.get(r), Some(&1), "{r}: one final bounce");
    }
    // the retry after 1 s fails; the next delay (10 s) would pass max_age,
    // so the last retry comes at max_age itself and its failure gives up:
    // the bounce comes at max_age, not before, and every DeliveryDelay's
    // expirationTime is when it came
    let expires: Vec<i64> = of_type(&ev, "DeliveryDelay")
        .iter()
        .map(|d| epoch_ms(d["deliveryDelay"]["expirationTime"].as_str().unwrap()))
        .collect();
    for b in of_type(&ev, "Bounce") {
        assert_eq!(b["bounce"]["bounceType"], "Transient");
        let age = bounce_age(b);
        assert!(
            age >= Duration::from_secs(5) && age < Duration::from_secs(9),
            "bounced {age:?} after acceptance (max_age 5s)"
        );
        let at = epoch_ms(b["bounce"]["timestamp"].as_str().unwrap());
        let to = &b["mail"]["destination"][0];
        for d in of_type(&ev, "DeliveryDelay") {
            if &d["mail"]["destination"][0] == to {
                let x = epoch_ms(d["deliveryDelay"]["expirationTime"].as_str().unwrap());
                assert!(at >= x, "bounced at {at}, before its expirationTime {x}");
            }
        }
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
    assert!(!expires.is_empty());
    let offered = server.offered();
    for r in &rcpts {
        assert!(
            offered[r] >= 3,
            "{r} tried at once, after 1 s and at max_age: {offered:?}"
        );
    }
    let totals = fx.status()["totals"].clone();
    assert_eq!(totals["queued"], 0, "{totals}");
    assert_eq!(totals["deferred"], 0, "{totals}");
    assert_eq!(totals["bounced"], 5, "{totals}");
}
