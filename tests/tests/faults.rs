//! Faults of the receiving server that end in delivery, against the
//! scripted server ([`volley_tests::fault_rig`]):
//!
//! - the connection drops in the middle of DATA: deferred, then delivered
//!   once on retry;
//! - `421` at greeting: tried again at once (nobody deferred); as often as
//!   it takes the site down: deferred, then delivered after a probe;
//! - STARTTLS offered but broken (closed, garbage, or no handshake within
//!   the `starttls` timeout): plain text with `tls = "opportunistic"`;
//! - no PIPELINING: delivered in lock-step (one command per read);
//! - the server closes after N messages per connection (silently or with
//!   `421`): everyone delivered exactly once; `messages_per_connection`
//!   makes the engine QUIT and reconnect;
//! - the server throws away commands sent behind a message: the message
//!   they were for goes back untried (no delay, no attempt), and the site
//!   gets no more commands sent ahead.
//!
//! Faults that end in a bounce are in `expiry.rs`; mixed per-RCPT replies
//! in one pipelined transaction in `scripted_replies.rs`.

use std::time::Duration;

use volley_tests::fault_rig::*;
use volley_tests::scripted::{BrokenTls, Close, Options};
use volley_tests::*;

#[test]
fn drop_in_data_is_deferred_then_delivered_once() {
    let (server, fx, rcpts) = deliver_all(
        Options {
            pipelining: true,
            drop_in_data: 1,
            ..Default::default()
        },
        3,
        "connections = 1",
    );
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
fn one_refused_greeting_is_tried_again_at_once() {
    let (server, fx, rcpts) = deliver_all(
        Options {
            pipelining: true,
            greeting_421: 1,
            ..Default::default()
        },
        3,
        "connections = 1",
    );
    // a refused connection is no verdict about a recipient: the next
    // connection delivers, and nobody was deferred for it
    assert!(of_type(&fx.events(), "DeliveryDelay").is_empty());
    assert_eq!(server.connections(), 2);
    assert_each_delivered_once(&fx, &server, &rcpts);
}

#[test]
fn greeting_421_takes_the_site_down_then_it_is_delivered() {
    // refused as often as it takes to be down (site_down_after = 3): the
    // recipients are deferred with that reply, then a probe finds the
    // site up again
    let (server, fx, rcpts) = deliver_all(
        Options {
            pipelining: true,
            greeting_421: 3,
            ..Default::default()
        },
        3,
        "connections = 1\nsite_down_after = 3",
    );
    let ev = fx.events();
    let delays = of_type(&ev, "DeliveryDelay");
    assert!(!delays.is_empty(), "the down site deferred its mail");
    for d in &delays {
        let diag = delay_diag(d);
        assert!(diag.starts_with("smtp; 421 4.3.2"), "{diag}");
        assert_eq!(
            d["deliveryDelay"]["delayedRecipients"][0]["status"],
            "4.3.2"
        );
    }
    assert!(server.connections() >= 4);
    assert_each_delivered_once(&fx, &server, &rcpts);
}

#[test]
fn broken_starttls_falls_back_to_plain_text_when_opportunistic() {
    for how in [BrokenTls::Close, BrokenTls::Garbage, BrokenTls::Silent] {
        let server = server(Options {
            pipelining: true,
            broken_tls: Some(how),
            ..Default::default()
        });
        let fx = Fixture::new();
        let rcpts = campaign(&fx, 2);
        fx.config(
            &server.addr.to_string(),
            "[delivery]\ntls = \"opportunistic\"\n[delivery.timeouts]\nstarttls = \"3s\"\n",
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
fn without_pipelining_commands_go_in_lockstep() {
    for pipelining in [false, true] {
        let server = server(Options {
            pipelining,
            ..Default::default()
        });
        let fx = Fixture::new();
        let rcpts = campaign(&fx, 3);
        fx.config(&server.addr.to_string(), "[delivery]\nconnections = 1\n");
        fx.send_ok(Duration::from_secs(60));
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
fn server_closing_after_n_messages_loses_nothing() {
    for how in [Close::Silently, Close::With421] {
        let (server, fx, rcpts) = deliver_all(
            Options {
                pipelining: true,
                close_after: Some((3, how)),
                ..Default::default()
            },
            10,
            "connections = 2",
        );
        assert_each_delivered_once(&fx, &server, &rcpts);
        // 10 messages, at most 3 per connection: at least 4 connections
        let per_conn = per_connection(&server);
        assert!(per_conn.len() >= 4, "{per_conn:?}");
        let ev = fx.events();
        let delays = of_type(&ev, "DeliveryDelay");
        if how == Close::With421 {
            // the 421 answers a command of the next transaction: deferred
            assert!(
                !delays.is_empty(),
                "{how:?}: the refused transaction was deferred"
            );
        }
        for d in delays {
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
    fx.send_ok(Duration::from_secs(60));
    assert_each_delivered_once(&fx, &server, &rcpts);
    let per_conn = per_connection(&server);
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
fn commands_thrown_away_behind_a_message_lose_nothing_and_stop_streaming() {
    let (server, fx, rcpts) = deliver_all(
        Options {
            pipelining: true,
            discard_early: true,
            ..Default::default()
        },
        30,
        "connections = 1\nmessages_per_second = 100000\ntimeouts.mail = \"1s\"",
    );
    assert_each_delivered_once(&fx, &server, &rcpts);
    // the first message went out with the second's commands behind it
    assert_eq!(
        server.discarded(),
        1,
        "streaming stopped after the first loss"
    );
    let ev = fx.events();
    assert!(of_type(&ev, "DeliveryDelay").is_empty(), "{ev:?}");
    assert!(of_type(&ev, "Bounce").is_empty());
    // no recipient was attempted twice
    assert_eq!(of_type(&ev, "Send").len(), 30);
    assert!(
        server.offered().values().all(|n| *n == 1),
        "{:?}",
        server.offered()
    );
}
