//! Non-personalized campaigns (`personalized = false`): one message for
//! every recipient, several RCPTs per transaction at one site (up to
//! `recipients_per_transaction`), per-recipient outcomes from per-RCPT
//! replies, one `mail.messageId` (the Message-ID header) for all, and the
//! campaign's `to` as the To header. A template that uses recipient data is
//! refused at load.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use volley_tests::scripted::ScriptedServer;
use volley_tests::*;

#[test]
fn recipients_share_transactions_and_get_their_own_outcomes() {
    let server = ScriptedServer::start(
        true,
        Arc::new(|addr: &str, _: u32| {
            if addr.starts_with("gone") {
                "550 5.1.1 No such user".to_string()
            } else {
                "250 2.1.5 Ok".to_string()
            }
        }),
    );
    let fx = Fixture::new();
    let mut csv = String::from("email,name\n");
    let mut gone = HashSet::new();
    for i in 0..250 {
        let local = if i % 50 == 7 { "gone" } else { "r" };
        let email = format!("{local}{i}@shared{}.test", i % 5);
        if local == "gone" {
            gone.insert(email.clone());
        }
        csv.push_str(&format!("{email},N{i}\n"));
    }
    fx.write("list.csv", csv);
    fx.campaign(
        "list.csv",
        "News for everyone",
        "Hello all\n",
        "personalized = false\nto = \"Subscribers <list@example.com>\"\n",
    );
    fx.config(
        &server.addr.to_string(),
        // a low rate: transactions wait for the limiter, so the ready
        // recipients gather into them however the threads are scheduled
        "[delivery]\nconnections = 2\nrecipients_per_transaction = 40\nmessages_per_second = 10\n",
    );
    fx.send_ok(Duration::from_secs(120));

    let received = server.received();
    let delivered: usize = received.iter().map(|m| m.rcpts.len()).sum();
    assert_eq!(delivered, 250 - gone.len());
    assert!(
        received.iter().all(|m| m.rcpts.len() <= 40),
        "at most recipients_per_transaction per transaction"
    );
    assert!(
        received.len() <= 30,
        "{} transactions for {delivered} recipients: they were not shared",
        received.len()
    );
    assert!(received.iter().any(|m| m.rcpts.len() > 1));
    let rcpts_total: usize = server.offered().values().map(|&n| n as usize).sum();
    assert_eq!(rcpts_total, 250, "each recipient offered once");

    // one message: the same Message-ID in every transaction, the campaign's
    // To header, no recipient data
    let mut ids = HashSet::new();
    for m in &received {
        let data = text(&m.data);
        let header = |name: &str| {
            data.lines()
                .find(|l| l.to_ascii_lowercase().starts_with(&format!("{name}:")))
                .map(|l| l[name.len() + 1..].trim().to_string())
                .unwrap_or_default()
        };
        assert_eq!(header("to"), "\"Subscribers\" <list@example.com>");
        ids.insert(header("message-id"));
    }
    assert_eq!(ids.len(), 1, "one Message-ID for the campaign: {ids:?}");
    let header_id = ids.into_iter().next().unwrap();

    let events = fx.events();
    let delivery = per_recipient(&events, "Delivery");
    let bounce = per_recipient(&events, "Bounce");
    assert_eq!(delivery.len(), 250 - gone.len());
    assert_eq!(
        bounce.keys().cloned().collect::<HashSet<_>>(),
        gone,
        "each rejected RCPT bounces alone"
    );
    let mut mids: HashMap<String, usize> = HashMap::new();
    for e in events.iter().filter(|e| e["eventType"] != "Send") {
        *mids
            .entry(e["mail"]["messageId"].as_str().unwrap().to_string())
            .or_default() += 1;
        assert_eq!(
            e["mail"]["commonHeaders"]["to"][0],
            "Subscribers <list@example.com>"
        );
    }
    assert_eq!(mids.len(), 1, "{mids:?}");
    let mid = mids.keys().next().unwrap();
    assert!(
        header_id.starts_with(&format!("<{mid}@")),
        "{header_id} vs {mid}"
    );
}

#[test]
fn templates_with_recipient_data_are_refused() {
    let fx = Fixture::new();
    fx.write("list.csv", "email,name\na@x.test,A\n");
    fx.campaign(
        "list.csv",
        "Hi {{name}}",
        "Hello\n",
        "personalized = false\n",
    );
    fx.config("127.0.0.1:9", "");
    let out = fx.volley("enqueue", Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("personalized") && err.contains("name"),
        "{err}"
    );

    fx.campaign("list.csv", "Hi", "Hello\n", "to = \"x@example.com\"\n");
    let out = run(
        fx.path(),
        &["enqueue", "campaign.toml", "--config", "config.toml"],
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("`to`"), "{}", text(&out.stderr));
}
