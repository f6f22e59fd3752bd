//! Feedback into `volley run`, with real clients: a campaign goes out to
//! Postfix's smtp-sink with signed VERP return paths and one-click
//! unsubscribe links; a DSN (swaks, from the null sender) comes back to a
//! recipient's return path, an ARF complaint (Python's smtplib) to a
//! feedback-loop address quoting the original's `Return-Path`, a forged
//! DSN to an altered token, mail for another domain (refused: no relay),
//! an auto-reply, the parser's whole sample corpus, and an unsubscribe by
//! mail; an unsubscribe is POSTed by an HTTP client. Then: the events
//! (Bounce, Complaint, Subscription) with their fields, in the events file
//! and a configuration set's destination, the suppression list through
//! `volley suppression`, the next campaign skipping the suppressed
//! addresses (a Permanent/OnAccountSuppressionList bounce, nothing sent),
//! a report accepted just before a kill -9 published after restart, and
//! the list's import and export without a service.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use volley_tests::feedback_rig::*;
use volley_tests::*;

#[test]
fn bounces_complaints_and_unsubscribes_come_back_and_suppress() {
    let rig = rig();
    let mut service = start(&rig);
    let rcpts = [
        "alice@ex.test",
        "bob@ex.test",
        "carol@ex.test",
        "dave@ex.test",
    ];
    campaign(
        &rig,
        "first",
        &rcpts,
        "[list_management]\ncontact_list = \"news\"\ntopic = \"weekly\"\n",
    );
    let (alice_rp, _) = received(&rig.sink, "alice@ex.test");
    let (bob_rp, _) = received(&rig.sink, "bob@ex.test");
    let (carol_rp, carol_msg) = received(&rig.sink, "carol@ex.test");
    let (dave_rp, dave_msg) = received(&rig.sink, "dave@ex.test");
    for rp in [&alice_rp, &bob_rp, &carol_rp, &dave_rp] {
        assert!(
            rp.starts_with("b-k1-") && rp.ends_with(&format!("@{BOUNCES}")),
            "{rp}"
        );
    }
    assert_ne!(alice_rp, bob_rp, "each recipient has its own return path");
    assert!(dave_msg.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"));
    assert!(unfolded(&dave_msg, "List-Unsubscribe").contains("mailto:u-k1-"));

    // a DSN from the null sender to alice's return path (swaks)
    let (ok, t) = swaks(&rig, "<>", &alice_rp, &dsn(&alice_rp, "alice@ex.test"));
    assert!(ok && t.contains("<-  250 2.0.0 OK"), "{t}");
    // an ARF complaint to the feedback loop address (smtplib)
    let r = smtplib(
        &rig,
        "staff@hotmail.example",
        "fbl@fbl.example.net",
        arf(&bob_rp, "bob@ex.test"),
    );
    assert_eq!(r["ok"], true, "{r}");
    // a forged bounce: carol's token with one character changed
    let mut forged = carol_rp.clone();
    let i = "b-k1-".len() + 3;
    let c = if &forged[i..=i] == "a" { "b" } else { "a" };
    forged.replace_range(i..=i, c);
    let r = smtplib(&rig, "", &forged, dsn(&forged, "carol@ex.test"));
    assert_eq!(
        r["ok"], true,
        "a forgery is not told apart to its sender: {r}"
    );
    // an out-of-office reply to carol's return path changes nothing
    let ooo = "From: carol@ex.test\r\nTo: x\r\nSubject: Out of Office: News\r\nAuto-Submitted: auto-replied\r\n\r\nI am away.\r\n";
    assert_eq!(smtplib(&rig, "carol@ex.test", &carol_rp, ooo)["ok"], true);
    // no relay: mail for any other domain is refused
    let r = smtplib(
        &rig,
        "x@y.test",
        "someone@elsewhere.test",
        "Subject: hi\r\n\r\nhi\r\n",
    );
    assert_eq!(r["ok"], false, "{r}");
    assert!(r["reply"].as_str().unwrap_or("").contains("5.7.1"), "{r}");
    // every sample of the parser's corpus is taken (none names our token)
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/feedback");
    let mut samples: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .expect("corpus")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    samples.sort();
    for s in &samples {
        let raw = std::fs::read(s).expect("sample");
        let r = smtplib(&rig, "", "fbl@fbl.example.net", &raw);
        let reply = r["reply"].as_str().unwrap_or("");
        assert!(
            r["ok"] == true || reply.starts_with("552"),
            "{}: {r}",
            s.display()
        );
    }
    // carol unsubscribes by mail, from her own address
    let mailto = unfolded(&carol_msg, "List-Unsubscribe")
        .split(['<', '>'])
        .find_map(|p| p.strip_prefix("mailto:").map(str::to_string))
        .expect("a mailto: target");
    let r = smtplib(
        &rig,
        "carol@ex.test",
        &mailto,
        "From: Carol <carol@ex.test>\r\nSubject: unsubscribe\r\n\r\n\r\n",
    );
    assert_eq!(r["ok"], true, "{r}");
    // one-click unsubscribe from an HTTP client
    let url = unsubscribe_url(&dave_msg);
    let (code, page) = http(&url, false);
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("<form method=\"post\""), "{page}");
    let (code, page) = http(&url, true);
    assert_eq!(code, 200, "{page}");
    let out = Command::new("/usr/bin/python3")
        .args(["-c", "import sys, urllib.request, urllib.error\ntry:\n urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=b'', method='POST'))\n print(200)\nexcept urllib.error.HTTPError as e:\n print(e.code)", &url])
        .output()
        .expect("python3");
    assert_eq!(
        text(&out.stdout).trim(),
        "400",
        "a POST that is no one-click request"
    );
    let (code, _) = http(&format!("{url}x"), true);
    assert_eq!(code, 404, "a forged unsubscribe token does nothing");

    wait_events(&rig, "the feedback events", |ev| {
        of_type(ev, "Complaint").len() == 1
            && of_type(ev, "Subscription").len() == 2
            && of_type(ev, "Bounce").len() == 1
    });
    // the set's destination gets them too, and nothing else
    let dest = rig.fx.path().join("feedback.jsonl");
    wait_until(Duration::from_secs(60), "the destination's events", || {
        events(&dest).len() >= 4
    });
    let types: Vec<String> = events(&dest)
        .iter()
        .map(|e| e["eventType"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        types.iter().filter(|t| *t == "Bounce").count(),
        1,
        "{types:?}"
    );
    assert_eq!(
        types.iter().filter(|t| *t == "Complaint").count(),
        1,
        "{types:?}"
    );
    assert_eq!(
        types.iter().filter(|t| *t == "Subscription").count(),
        2,
        "{types:?}"
    );
    let ev = rig.fx.events();
    let bounce = of_type(&ev, "Bounce")[0];
    let b = &bounce["bounce"];
    assert_eq!(b["bounceType"], "Permanent", "{bounce}");
    assert_eq!(b["bounceSubType"], "NoEmail", "{bounce}");
    assert_eq!(b["bouncedRecipients"][0]["emailAddress"], "alice@ex.test");
    assert_eq!(b["bouncedRecipients"][0]["status"], "5.1.1");
    assert_eq!(b["bouncedRecipients"][0]["action"], "failed");
    assert!(
        b["bouncedRecipients"][0]["diagnosticCode"]
            .as_str()
            .unwrap()
            .starts_with("smtp; 550 5.1.1")
    );
    assert_eq!(b["reportingMTA"], "dns; mx.ex.test");
    assert_eq!(b["remoteMtaIp"], "192.0.2.25", "from the DSN's text part");
    // attached to the original message's mail object
    let delivered = of_type(&ev, "Delivery")
        .into_iter()
        .find(|e| e["mail"]["destination"][0] == "alice@ex.test")
        .expect("alice's delivery");
    assert_eq!(bounce["mail"]["messageId"], delivered["mail"]["messageId"]);
    assert_eq!(bounce["mail"]["tags"]["volley:campaign"][0], "first");
    let complaint = of_type(&ev, "Complaint")[0];
    let c = &complaint["complaint"];
    assert_eq!(
        c["complainedRecipients"][0]["emailAddress"], "bob@ex.test",
        "{complaint}"
    );
    assert_eq!(c["complaintFeedbackType"], "abuse");
    assert_eq!(c["userAgent"], "ExampleFBL/1.0");
    assert!(c["arrivalDate"].is_string());
    let subs = of_type(&ev, "Subscription");
    let sub = subs
        .iter()
        .find(|e| e["mail"]["destination"][0] == "dave@ex.test")
        .expect("dave's unsubscribe");
    assert!(
        subs.iter()
            .any(|e| e["mail"]["destination"][0] == "carol@ex.test"),
        "carol's unsubscribe by mail"
    );
    let s = &sub["subscription"];
    assert_eq!(s["contactList"], "news");
    assert_eq!(s["source"], "UnsubscribeHeader");
    assert_eq!(
        s["newTopicPreferences"]["topicSubscriptionStatus"][0]["topicName"],
        "weekly"
    );
    assert_eq!(
        s["newTopicPreferences"]["topicSubscriptionStatus"][0]["subscriptionStatus"],
        "OptOut"
    );
    assert!(
        rig.fx
            .metric("volley_feedback_reports_total{result=\"forged\"}")
            >= 1.0
    );

    // the list, through the running service
    let out = suppression(&rig, &["list"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let list = text(&out.stdout);
    assert!(
        list.lines().any(|l| l.starts_with("alice@ex.test,BOUNCE,")),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.starts_with("bob@ex.test,COMPLAINT,")),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.starts_with("dave@ex.test,UNSUBSCRIBE,") && l.ends_with(",weekly")),
        "{list}"
    );
    assert!(
        list.lines().all(|l| !l.starts_with("carol@")
            || l.starts_with("carol@ex.test,UNSUBSCRIBE,") && l.ends_with(",weekly")),
        "a forged bounce suppresses nobody (carol only unsubscribed): {list}"
    );

    // the next campaign (no topic): alice and bob are not sent to; dave
    // left only the weekly topic; carol is fine
    campaign(&rig, "second", &rcpts, "");
    let ev = rig.fx.events();
    let second: Vec<&serde_json::Value> = ev
        .iter()
        .filter(|e| e["mail"]["tags"]["volley:campaign"][0] == "second")
        .collect();
    for who in ["alice@ex.test", "bob@ex.test"] {
        let b = second
            .iter()
            .find(|e| e["eventType"] == "Bounce" && e["mail"]["destination"][0] == who)
            .unwrap_or_else(|| panic!("no suppression bounce for {who}"));
        assert_eq!(b["bounce"]["bounceSubType"], "OnAccountSuppressionList");
        assert_eq!(b["bounce"]["bounceType"], "Permanent");
    }
    let sent = rig.sink.recipients();
    let times = |who: &str| sent.iter().filter(|r| *r == who).count();
    assert_eq!(
        [
            times("alice@ex.test"),
            times("bob@ex.test"),
            times("carol@ex.test"),
            times("dave@ex.test")
        ],
        [1, 1, 2, 2],
        "{sent:?}"
    );
    let out = process::stop(service);
    assert!(out.status.success(), "{}", text(&out.stderr));
    service = start(&rig);
    drop(service);
}

#[test]
fn a_report_accepted_before_a_kill_9_is_published_after_restart() {
    let rig = rig();
    let mut service = start(&rig);
    campaign(&rig, "first", &["erin@ex.test"], "");
    let (rp, _) = received(&rig.sink, "erin@ex.test");
    let r = smtplib(&rig, "", &rp, dsn(&rp, "erin@ex.test"));
    assert_eq!(r["ok"], true, "{r}");
    service.kill().expect("kill -9");
    let _ = service.wait();
    let _service = start(&rig);
    wait_until(
        Duration::from_secs(60),
        "the bounce after the restart",
        || {
            of_type(&rig.fx.events(), "Bounce")
                .iter()
                .any(|e| e["bounce"]["bouncedRecipients"][0]["emailAddress"] == "erin@ex.test")
        },
    );
    let out = suppression(&rig, &["get", "erin@ex.test"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("erin@ex.test,BOUNCE,"));
}

#[test]
fn the_suppression_list_imports_and_exports_without_a_service() {
    let rig = rig();
    rig.fx.write(
        "list.csv",
        "email,reason\nOne@Ex.Test,BOUNCE\ntwo@ex.test,complaint\nnot an address,BOUNCE\nthree@ex.test,\nfour@ex.test,SPAM\n",
    );
    let out = suppression(&rig, &["import", "list.csv"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "rejected rows give exit 4: {}",
        text(&out.stderr)
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("list.csv:4") && err.contains("list.csv:6"),
        "{err}"
    );
    assert!(err.contains("3 added"), "{err}");
    let out = suppression(&rig, &["export"]);
    assert_eq!(out.status.code(), Some(0));
    let csv = text(&out.stdout);
    assert!(csv.starts_with("email,reason,last_update_time,message_id,feedback_id,topic"));
    assert!(
        csv.contains("one@ex.test,BOUNCE,")
            && csv.contains("two@ex.test,COMPLAINT,")
            && csv.contains("three@ex.test,BOUNCE,"),
        "{csv}"
    );
    let out = suppression(&rig, &["remove", "two@ex.test"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = suppression(&rig, &["get", "two@ex.test"]);
    assert_eq!(out.status.code(), Some(1));
    // a suppressed address in a campaign sent by a job working alone
    let out = suppression(&rig, &["add", "carol@ex.test", "--reason", "COMPLAINT"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    rig.fx.write("body.txt", "Hi\n");
    rig.fx
        .write("list2.csv", "email\ncarol@ex.test\nfrank@ex.test\n");
    rig.fx.campaign("list2.csv", "Hi", "Hi\n", "");
    rig.fx.send_ok(Duration::from_secs(120));
    assert_eq!(rig.sink.recipients(), vec!["frank@ex.test".to_string()]);
    let ev = rig.fx.events();
    assert!(
        of_type(&ev, "Bounce")
            .iter()
            .any(|e| e["mail"]["destination"][0] == "carol@ex.test"
                && e["bounce"]["bounceSubType"] == "OnAccountSuppressionList")
    );
}
