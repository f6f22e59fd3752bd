//! Per-recipient SMTP outcomes against the scripted server: permanent
//! rejections become Bounce events, temporary ones DeliveryDelay events and
//! later deliveries; a pipelined transaction with mixed RCPT replies is
//! decided per recipient.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use volley_engine::outcome::{self, Outcome};
use volley_engine::smtp::session::dot_stuff;
use volley_engine::smtp::{Phase, Timeouts, TlsMode, TlsSettings, client};
use volley_tests::prom::metrics_when;
use volley_tests::scripted::ScriptedServer;
use volley_tests::*;

/// Refuses `bad*` for good, and `slow*` for now: while `hold` is set, and
/// always on the first offer.
fn script(hold: Arc<AtomicBool>) -> Arc<volley_tests::scripted::RcptScript> {
    Arc::new(move |addr: &str, seen: u32| {
        if addr.starts_with("bad") {
            format!("550 5.1.1 <{addr}>: Recipient address rejected: User unknown")
        } else if addr.starts_with("slow") && (seen == 0 || hold.load(Ordering::Acquire)) {
            "451 4.3.0 Temporary lookup failure, try again".to_string()
        } else {
            "250 2.1.5 Ok".to_string()
        }
    })
}

#[test]
fn bounces_deferrals_then_delivery() {
    // the slow recipients are refused until `send` has ended, however long
    // it takes and however often they are retried meanwhile
    let hold = Arc::new(AtomicBool::new(true));
    let server = ScriptedServer::start(true, script(Arc::clone(&hold)));
    let fx = Fixture::new();
    let mut csv = String::from("email,name\n");
    let mut good = Vec::new();
    let mut bad = Vec::new();
    let mut slow = Vec::new();
    for i in 0..30 {
        let (kind, list) = match i % 3 {
            0 => ("good", &mut good),
            1 => ("bad", &mut bad),
            _ => ("slow", &mut slow),
        };
        let email = format!("{kind}{i}@d{}.test", i % 3);
        csv.push_str(&format!("{email},N{i}\n"));
        list.push(email);
    }
    fx.write("list.csv", csv);
    fx.campaign("list.csv", "Hello {{name}}", "Hi {{name}}\n", "");
    fx.config(
        &server.addr.to_string(),
        "[delivery]\nretry_first = \"1s\"\nretry_factor = 1.0\nconnections = 2\n",
    );

    let out = fx.volley("send", Duration::from_secs(60));
    assert_eq!(
        out.status.code(),
        Some(3),
        "deferred recipients remain: exit 3\n{}",
        text(&out.stderr)
    );

    let ev = fx.events();
    let bounces: Vec<_> = ev.iter().filter(|e| e["eventType"] == "Bounce").collect();
    assert_eq!(bounces.len(), bad.len());
    for b in &bounces {
        let r = &b["bounce"]["bouncedRecipients"][0];
        assert!(bad.contains(&r["emailAddress"].as_str().unwrap().to_string()));
        assert_eq!(r["status"], "5.1.1");
        assert_eq!(r["action"], "failed");
        let diag = r["diagnosticCode"].as_str().unwrap();
        assert!(
            diag.starts_with("smtp; 550 5.1.1") && diag.contains("User unknown"),
            "{diag}"
        );
        assert_eq!(b["bounce"]["bounceType"], "Permanent");
        assert_eq!(b["bounce"]["bounceSubType"], "NoEmail");
        assert!(
            b["mail"]["commonHeaders"]["subject"]
                .as_str()
                .unwrap()
                .starts_with("Hello N")
        );
    }
    let delays: Vec<_> = ev
        .iter()
        .filter(|e| e["eventType"] == "DeliveryDelay")
        .collect();
    let delayed = per_recipient(&ev, "DeliveryDelay");
    assert_eq!(delayed.len(), slow.len(), "{delayed:?}");
    for d in &delays {
        let r = &d["deliveryDelay"]["delayedRecipients"][0];
        assert!(slow.contains(&r["emailAddress"].as_str().unwrap().to_string()));
        assert_eq!(r["status"], "4.3.0");
        assert!(
            r["diagnosticCode"]
                .as_str()
                .unwrap()
                .contains("451 4.3.0 Temporary lookup failure")
        );
        assert!(
            d["deliveryDelay"]["expirationTime"]
                .as_str()
                .unwrap()
                .ends_with('Z')
        );
    }
    assert_eq!(per_recipient(&ev, "Delivery").len(), good.len());
    assert_eq!(
        per_recipient(&ev, "Send").len(),
        30,
        "one Send per recipient's first attempt"
    );

    // the service retries the deferred recipients, now accepted
    hold.store(false, Ordering::Release);
    let service = spawn(fx.path(), &["run", "--config", "config.toml"]);
    wait_until(
        Duration::from_secs(60),
        "deferred recipients delivered",
        || per_recipient(&fx.events(), "Delivery").len() == good.len() + slow.len(),
    );
    // the service's endpoints
    let (code, body) = http_get(&fx.http_addr(), "/healthz").expect("GET /healthz");
    assert_eq!((code, body.trim()), (200, "ok"));
    let metrics = metrics_when(
        &fx.http_addr(),
        Duration::from_secs(10),
        "10 deliveries counted",
        |m| m.contains("volley_outcomes_total{outcome=\"delivered\"} 10"),
    );
    assert!(metrics.contains("volley_smtp_attempts_total"), "{metrics}");
    stop(service);

    let ev = fx.events();
    let delivered = per_recipient(&ev, "Delivery");
    for r in good.iter().chain(&slow) {
        assert_eq!(delivered.get(r), Some(&1), "exactly one Delivery for {r}");
    }
    for r in &bad {
        assert!(!delivered.contains_key(r));
    }
    assert_eq!(ev.iter().filter(|e| e["eventType"] == "Send").count(), 30);
    // the server got each accepted recipient's message exactly once
    let mut got: Vec<String> = server
        .received()
        .into_iter()
        .flat_map(|m| m.rcpts)
        .collect();
    got.sort();
    let mut want: Vec<String> = good.iter().chain(&slow).cloned().collect();
    want.sort();
    assert_eq!(got, want);
    let offered = server.offered();
    for r in &slow {
        assert!(
            offered[r] >= 2,
            "{r} offered (451 until released, then 250)"
        );
    }
    for r in &bad {
        assert_eq!(offered[r], 1, "{r} bounced, never retried");
    }
}

fn mixed_transaction(pipelining: bool) {
    let server = ScriptedServer::start(pipelining, script(Arc::new(AtomicBool::new(false))));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rcpts = ["ok1@a.test", "bad1@a.test", "slow1@a.test", "ok2@a.test"];
    let mut data = Vec::new();
    dot_stuff(b"Subject: x\r\n\r\n.leading dot\r\n", &mut data);
    assert!(
        data.ends_with(b"\r\n..leading dot\r\n.\r\n"),
        "{:?}",
        String::from_utf8_lossy(&data)
    );
    let results = rt.block_on(async {
        let mut s = client::open(
            server.addr,
            None,
            "client.test",
            &TlsSettings::disabled(),
            TlsMode::Disabled,
            "localhost",
            &Timeouts::default(),
        )
        .await
        .expect("session opens");
        assert_eq!(s.caps().pipelining, pipelining);
        let r = s
            .send("from@example.com", &rcpts, &data)
            .await
            .expect("transaction completes");
        // the session is reusable afterwards
        let again = s
            .send(
                "from@example.com",
                &["ok3@a.test"],
                b"Subject: y\r\n\r\nbody\r\n.\r\n",
            )
            .await
            .expect("second transaction");
        s.quit().await;
        (r, again)
    });
    let (r, again) = results;
    assert_eq!(r.len(), 4);
    assert_eq!((r[0].0, r[0].1.code), (Phase::DataEnd, 250));
    assert_eq!((r[1].0, r[1].1.code), (Phase::Rcpt, 550));
    assert_eq!((r[2].0, r[2].1.code), (Phase::Rcpt, 451));
    assert_eq!((r[3].0, r[3].1.code), (Phase::DataEnd, 250));
    assert!(matches!(
        outcome::from_reply(r[0].0, &r[0].1),
        Outcome::Delivered { .. }
    ));
    assert!(
        matches!(outcome::from_reply(r[1].0, &r[1].1), Outcome::Bounced { ref status, .. } if status == "5.1.1")
    );
    assert!(
        matches!(outcome::from_reply(r[2].0, &r[2].1), Outcome::Deferred { ref status, .. } if status == "4.3.0")
    );
    assert_eq!(again[0].1.code, 250);

    let received = server.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].rcpts, vec!["ok1@a.test", "ok2@a.test"]);
    assert_eq!(
        received[0].data, b"Subject: x\r\n\r\n.leading dot\r\n",
        "the stuffed dot is removed again by the server"
    );
    let log = server.command_log();
    let mail = log.iter().position(|l| l.starts_with("MAIL FROM")).unwrap();
    if pipelining {
        // MAIL, every RCPT and DATA went out in one write (one read here)
        let group: usize = log[mail..mail + 6].iter().map(|l| l.len() + 2).sum();
        assert!(
            server.reads().contains(&group),
            "no read of {group} bytes in {:?}",
            server.reads()
        );
    }
    assert_eq!(
        &log[mail + 1..mail + 6],
        &[
            "RCPT TO:<ok1@a.test>",
            "RCPT TO:<bad1@a.test>",
            "RCPT TO:<slow1@a.test>",
            "RCPT TO:<ok2@a.test>",
            "DATA"
        ]
    );
}

#[test]
fn pipelined_transaction_with_mixed_rcpt_replies() {
    mixed_transaction(true);
}

#[test]
fn lockstep_transaction_with_mixed_rcpt_replies() {
    mixed_transaction(false);
}

#[test]
fn starttls_is_used_when_offered() {
    let server = ScriptedServer::start_with(
        volley_tests::scripted::Options {
            pipelining: true,
            tls: Some(volley_tests::scripted::self_signed_tls()),
            ..Default::default()
        },
        Arc::new(|_: &str, _: u32| "250 2.1.5 Ok".to_string()),
    );
    let fx = Fixture::new();
    fx.write("list.csv", "email\na@tls.test\nb@tls.test\n");
    fx.campaign("list.csv", "Secret", "Over TLS\n", "");
    fx.config(&server.addr.to_string(), "");
    fx.send_ok(Duration::from_secs(60));
    let received = server.received();
    assert_eq!(received.len(), 2);
    assert!(
        received.iter().all(|m| m.tls),
        "every message went over TLS"
    );
    let log = server.command_log();
    // each connection (there may be several) said EHLO, STARTTLS, EHLO again
    let starttls = log.iter().filter(|l| *l == "STARTTLS").count();
    let ehlo = log.iter().filter(|l| l.starts_with("EHLO")).count();
    assert!(starttls >= 1, "{log:?}");
    assert_eq!(
        ehlo,
        2 * starttls,
        "EHLO again after every STARTTLS: {log:?}"
    );
    assert_eq!(per_recipient(&fx.events(), "Delivery").len(), 2);
}
