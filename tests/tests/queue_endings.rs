//! `volley queue cancel`, `bounce`, `drain` and `resume` on a running
//! `volley run`: a cancelled campaign's unsent recipients (set aside by a
//! hold, or spooled later, after a kill -9) end with a `Reject` event and
//! are never offered; a bounced domain's queued recipients end with a
//! `Bounce` while its mail spooled afterwards is still tried; messages
//! already produced and waiting for the one connection are not sent after
//! a cancel; a drain
//! answers only once the transaction in flight has its outcome, refuses
//! new campaign jobs, leaves the drop directory and due retries alone
//! until resumed, and reports what remains.

use std::sync::Arc;
use std::time::Duration;

use volley_tests::queue_rig::*;
use volley_tests::scripted::{self, ScriptedServer, Stage};
use volley_tests::*;

fn of_type<'a>(events: &'a [serde_json::Value], t: &str) -> Vec<&'a serde_json::Value> {
    events.iter().filter(|e| e["eventType"] == t).collect()
}

#[test]
fn a_cancelled_campaign_rejects_its_unsent_and_a_bounced_domain_its_queue() {
    let fx = Fixture::new();
    // dead.test defers everything; the others are accepted
    let server = ScriptedServer::start(
        true,
        Arc::new(|rcpt: &str, _: u32| {
            if rcpt.ends_with("@dead.test") {
                "451 4.4.1 Try again later".to_string()
            } else {
                "250 2.1.5 Ok".to_string()
            }
        }),
    );
    config(&fx, &server, "");
    let http = fx.http_addr();
    let mut service = spawn(fx.path(), &["run", "--config", "config.toml"]);
    wait_until(Duration::from_secs(60), "the service", || {
        http_get(&http, "/healthz").is_ok()
    });
    said(&queue(&fx, &["hold", "--campaign", "spring"]));
    let spring = campaign(&fx, "spring", &["s1@ok.test", "s2@ok.test"]);
    enqueue(&fx, &spring);
    let other = campaign(
        &fx,
        "other",
        &["o1@ok.test", "d1@dead.test", "d2@dead.test"],
    );
    enqueue(&fx, &other);
    wait_until(Duration::from_secs(60), "spring held, other tried", || {
        held_now(&http) == Some(2.0)
            && delivered(&fx) == ["o1@ok.test"]
            && per_recipient(&fx.events(), "DeliveryDelay").len() == 2
    });

    // cancel: the held recipients end at once, never offered
    assert_eq!(
        said(&queue(
            &fx,
            &["cancel", "--campaign", "spring", "--reason", "wrong list"]
        )),
        "campaign spring cancelled: its unsent recipients end with a Reject event"
    );
    wait_until(Duration::from_secs(60), "two Reject events", || {
        of_type(&fx.events(), "Reject").len() == 2
    });
    let events = fx.events();
    for e in of_type(&events, "Reject") {
        assert_eq!(e["mail"]["tags"]["volley:campaign"][0], "spring", "{e}");
        let reason = e["reject"]["reason"].as_str().unwrap();
        assert!(
            reason.contains("spring") && reason.contains("wrong list"),
            "{e}"
        );
    }
    assert!(
        !events.iter().any(
            |e| e["eventType"] == "Send" && e["mail"]["tags"]["volley:campaign"][0] == "spring"
        ),
        "a cancelled recipient is not sent"
    );
    let found = lines(&queue(&fx, &["inspect", "s1@ok.test"]));
    assert_eq!(found[0]["last"]["outcome"], "rejected", "{found:?}");
    assert_eq!(held_now(&http), Some(0.0));

    // bounce dead.test: its two deferred recipients end with a Bounce
    assert_eq!(
        said(&queue(&fx, &["bounce", "--domain", "Dead.test"])),
        "Dead.test: every recipient queued now ends with a Bounce event"
    );
    wait_until(Duration::from_secs(60), "two bounces", || {
        per_recipient(&fx.events(), "Bounce").len() == 2
    });
    for e in of_type(&fx.events(), "Bounce") {
        let b = &e["bounce"];
        assert_eq!(
            (&b["bounceType"], &b["bounceSubType"]),
            (
                &serde_json::json!("Transient"),
                &serde_json::json!("General")
            ),
            "{e}"
        );
        let r = &b["bouncedRecipients"][0];
        assert_eq!(r["status"], "4.0.0");
        assert!(
            r["diagnosticCode"]
                .as_str()
                .unwrap()
                .contains("bounced by the operator"),
            "{e}"
        );
    }
    // mail for the domain spooled afterwards is still tried
    let after = campaign(&fx, "after", &["d3@dead.test"]);
    enqueue(&fx, &after);
    wait_until(Duration::from_secs(60), "d3 tried and deferred", || {
        server.offered().get("d3@dead.test") == Some(&1)
            && per_recipient(&fx.events(), "DeliveryDelay").contains_key("d3@dead.test")
    });
    assert_eq!(per_recipient(&fx.events(), "Bounce").len(), 2);
    // the held and cancelled recipients were never offered
    let offered = server.offered();
    assert!(
        !offered.contains_key("s1@ok.test") && !offered.contains_key("s2@ok.test"),
        "{offered:?}"
    );
    // suppression is untouched (Transient)
    let out = run(
        fx.path(),
        &["suppression", "list", "--config", "config.toml"],
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stdout).contains("dead.test"),
        "{}",
        text(&out.stdout)
    );

    // a campaign cancelled before it is spooled, across a kill -9
    said(&queue(&fx, &["cancel", "--campaign", "later"]));
    service.kill().unwrap();
    let _ = service.wait();
    let endings = lines(&queue(&fx, &["endings"]));
    let kinds: Vec<_> = endings
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["kind"].as_str().unwrap(),
                e["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        kinds,
        ["campaign later", "campaign spring", "domain dead.test"]
    );
    let service = spawn(fx.path(), &["run", "--config", "config.toml"]);
    wait_until(Duration::from_secs(60), "the service again", || {
        http_get(&http, "/healthz").is_ok()
    });
    let later = campaign(&fx, "later", &["l1@ok.test"]);
    enqueue(&fx, &later);
    wait_until(Duration::from_secs(60), "later rejected", || {
        of_type(&fx.events(), "Reject").len() == 3
    });
    assert!(!server.offered().contains_key("l1@ok.test"));
    let log: Vec<String> = lines(&queue(&fx, &["log"]))
        .iter()
        .map(|a| a["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(log, ["hold", "cancel", "bounce", "cancel"]);
    stop(service);
}

#[test]
fn a_drain_waits_for_the_transaction_in_flight_and_takes_no_work_until_resumed() {
    let fx = Fixture::new();
    // every message takes a moment at the end of DATA; late.test is
    // deferred once
    let server = ScriptedServer::start_with(
        scripted::Options {
            pipelining: true,
            tarpit: Some((Stage::DataEnd, Duration::from_millis(1500))),
            ..Default::default()
        },
        Arc::new(|rcpt: &str, seen: u32| {
            if rcpt.ends_with("@late.test") && seen == 0 {
                "451 4.3.0 Try again later".to_string()
            } else {
                "250 2.1.5 Ok".to_string()
            }
        }),
    );
    config(&fx, &server, "");
    let http = fx.http_addr();
    let service = spawn(fx.path(), &["run", "--config", "config.toml"]);
    wait_until(Duration::from_secs(60), "the service", || {
        http_get(&http, "/healthz").is_ok()
    });
    let late = campaign(&fx, "late", &["l1@late.test"]);
    enqueue(&fx, &late);
    wait_until(Duration::from_secs(60), "late deferred", || {
        per_recipient(&fx.events(), "DeliveryDelay").len() == 1
    });
    let first = campaign(&fx, "first", &["f1@now.test"]);
    enqueue(&fx, &first);
    wait_until(Duration::from_secs(60), "f1 in its transaction", || {
        server.offered().contains_key("f1@now.test")
    });

    // the drain answers once f1's outcome is journaled
    let report = said(&queue(&fx, &["drain"]));
    assert!(report.starts_with("drained: nothing in flight"), "{report}");
    assert!(
        report.contains("remaining in the spool: 0 queued, 1 deferred (1 domains; most: late.test 0 queued 1 deferred)"),
        "{report}"
    );
    let found = lines(&queue(&fx, &["inspect", "f1@now.test"]));
    assert_eq!(found[0]["state"], "delivered", "{found:?}");

    // no new work: campaign jobs are refused, the drop directory waits,
    // a retry made due is not attempted
    let refused = queue_job(&fx, &campaign(&fx, "second", &["x1@now.test"]));
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("draining"),
        "{}",
        text(&refused.stderr)
    );
    let pickup = fx.path().join("spool/pickup");
    std::fs::write(
        pickup.join("tmp/m1.eml"),
        "From: app@example.com\nTo: p1@now.test\nSubject: hi\n\nhello\n",
    )
    .unwrap();
    std::fs::rename(pickup.join("tmp/m1.eml"), pickup.join("new/m1.eml")).unwrap();
    said(&queue(&fx, &["retry", "--all"]));
    wait_until(Duration::from_secs(60), "l1 due and held back", || {
        held_now(&http) == Some(1.0)
    });
    assert!(pickup.join("new/m1.eml").exists());
    assert_eq!(server.offered().get("l1@late.test"), Some(&1));

    // resume: the retry and the dropped message go out
    assert_eq!(
        said(&queue(&fx, &["resume"])),
        "resumed: taking new work and delivering"
    );
    wait_until(Duration::from_secs(60), "l1 and p1 delivered", || {
        let d = delivered(&fx);
        d.contains(&"l1@late.test".to_string()) && d.contains(&"p1@now.test".to_string())
    });
    let log: Vec<String> = lines(&queue(&fx, &["log"]))
        .iter()
        .map(|a| a["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(log, ["drain", "retry", "resume"]);
    stop(service);
}

/// `volley enqueue FILE` (its output, whatever the exit).
fn queue_job(fx: &Fixture, file: &str) -> std::process::Output {
    let out = run(
        fx.path(),
        &["enqueue", file, "--config", "config.toml"],
        Duration::from_secs(60),
    );
    assert_no_panic(&out);
    out
}

#[test]
fn a_cancel_stops_messages_already_produced_and_waiting_for_a_connection() {
    let fx = Fixture::new();
    // one connection, each message 4 s at the end of DATA: the others wait
    // produced, in the site's ready queue
    let server = ScriptedServer::start_with(
        scripted::Options {
            pipelining: true,
            tarpit: Some((Stage::DataEnd, Duration::from_millis(4000))),
            ..Default::default()
        },
        Arc::new(|_: &str, _: u32| "250 2.1.5 Ok".to_string()),
    );
    config(&fx, &server, "connections = 1\n");
    let http = fx.http_addr();
    let service = spawn(fx.path(), &["run", "--config", "config.toml"]);
    wait_until(Duration::from_secs(60), "the service", || {
        http_get(&http, "/healthz").is_ok()
    });
    let rcpts: Vec<String> = (0..6).map(|i| format!("r{i}@one.test")).collect();
    let refs: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    enqueue(&fx, &campaign(&fx, "slow", &refs));
    wait_until(
        Duration::from_secs(60),
        "the first in its transaction",
        || !server.offered().is_empty(),
    );
    said(&queue(&fx, &["cancel", "--campaign", "slow"]));
    wait_until(Duration::from_secs(60), "every recipient final", || {
        let e = fx.events();
        per_recipient(&e, "Delivery").len() + of_type(&e, "Reject").len() == 6
    });
    // the one in its transaction (and at most one sent behind it) went out
    let delivered = per_recipient(&fx.events(), "Delivery").len();
    assert!((1..=2).contains(&delivered), "{delivered} delivered");
    assert_eq!(server.received().len(), delivered);
    stop(service);
}
