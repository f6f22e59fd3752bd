//! Feedback into `volley run`, with real clients: a campaign goes out to
//! Postfix's smtp-sink with signed VERP return paths and one-click
//! unsubscribe links; a DSN (swaks, from the null sender) comes back to a
//! recipient's return path, an ARF complaint (Python's smtplib) to a
//! feedback-loop address quoting the original's `Return-Path`, a forged
//! DSN to an altered token, mail for another domain (refused: no relay),
//! an auto-reply, and the parser's whole sample corpus; an unsubscribe is
//! POSTed by an HTTP client. Then: the events (Bounce, Complaint,
//! Subscription) with their fields, the suppression list through
//! `volley suppression`, the next campaign skipping the suppressed
//! addresses (a Permanent/OnAccountSuppressionList bounce, nothing sent),
//! and a report accepted just before a kill -9 published after restart.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use volley_tests::postfix::PostfixSink;
use volley_tests::process::{Running, spawn};
use volley_tests::*;

const SECRET: &str = "c2VjcmV0LXRva2VuLWtleS1mb3ItdGVzdHMtb25seSE=";
const BOUNCES: &str = "bounces.example.net";

struct Rig {
    fx: Fixture,
    inbound: u16,
    sink: PostfixSink,
}

fn rig() -> Rig {
    let fx = Fixture::new();
    let inbound = free_port();
    let sink = PostfixSink::start();
    fx.config(&sink.addr(), "");
    // the HTTP listener's address is in the config; unsubscribe links go there
    let http = fx.http_addr();
    let cfg = std::fs::read_to_string(fx.path().join("config.toml")).expect("config");
    // a configuration set whose destination takes the feedback events only
    let cfg = cfg.replace(
        "jsonl = \"events.jsonl\"\n",
        "jsonl = \"events.jsonl\"\ndefault_configuration_set = \"news\"\n",
    ) + "[configuration_sets.news]\n[[configuration_sets.news.destinations]]\nname = \"feedback\"\n\
         event_types = [\"Bounce\", \"Complaint\", \"Subscription\"]\njsonl = { path = \"feedback.jsonl\" }\n";
    let cfg = cfg.replace(
        "[routes]",
        &format!(
            "[feedback]\nbounce_domain = \"{BOUNCES}\"\nfeedback_domains = [\"fbl.example.net\"]\nlisteners = [\"127.0.0.1:{inbound}\"]\n\
             [[feedback.keys]]\nid = \"k1\"\nsecret = \"{SECRET}\"\n\
             [feedback.unsubscribe]\nbase_url = \"http://{http}\"\nmailto = true\n[routes]"
        ),
    );
    fx.write("config.toml", cfg);
    Rig { fx, inbound, sink }
}

fn start(rig: &Rig) -> Running {
    let service = spawn(rig.fx.path(), &["run", "--config", "config.toml"]);
    wait_until(Duration::from_secs(60), "the inbound listener", || {
        TcpStream::connect(("127.0.0.1", rig.inbound)).is_ok()
    });
    service
}

/// Sends a campaign through the running service and waits for it.
fn campaign(rig: &Rig, id: &str, rcpts: &[&str], extra: &str) {
    let list = format!("email\n{}\n", rcpts.join("\n"));
    rig.fx.write(&format!("{id}.csv"), list);
    // a non-personalized campaign's templates use no recipient data
    let body = match extra.contains("personalized = false") {
        true => "Hello\n",
        false => "Hello {{email}}\n",
    };
    rig.fx.write("body.txt", body);
    rig.fx.write(
        &format!("{id}.toml"),
        format!(
            "id = \"{id}\"\nfrom = \"Sender <news@example.com>\"\nsubject = \"News\"\ntext = \"body.txt\"\nrecipients = \"{id}.csv\"\n{extra}\n"
        ),
    );
    let out = process::run(
        rig.fx.path(),
        &["send", &format!("{id}.toml"), "--config", "config.toml"],
        Duration::from_secs(120),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// What the sink got for `rcpt`: (MAIL FROM, the message).
fn received(sink: &PostfixSink, rcpt: &str) -> (String, String) {
    for f in sink.files() {
        let body = std::fs::read_to_string(&f).unwrap_or_default();
        if !body
            .lines()
            .any(|l| l.starts_with("X-Rcpt-Args: ") && l.contains(rcpt))
        {
            continue;
        }
        let from = body
            .lines()
            .find_map(|l| l.strip_prefix("X-Mail-Args: "))
            .and_then(|a| a.split('<').nth(1))
            .and_then(|a| a.split('>').next())
            .unwrap_or_default()
            .to_string();
        return (from, body);
    }
    panic!("no message for {rcpt} at the sink");
}

/// The one-click URL of a received message.
fn unsubscribe_url(message: &str) -> String {
    let header = unfolded(message, "List-Unsubscribe");
    header
        .split(['<', '>'])
        .find(|p| p.starts_with("http"))
        .unwrap_or_else(|| panic!("no URL in List-Unsubscribe: {header}"))
        .to_string()
}

fn unfolded(message: &str, name: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for l in message.lines() {
        if inside && (l.starts_with(' ') || l.starts_with('\t')) {
            out.push_str(l.trim_start());
            continue;
        }
        if inside {
            break;
        }
        if let Some(v) = l.strip_prefix(&format!("{name}: ")) {
            out.push_str(v);
            inside = true;
        }
    }
    out
}

fn dsn(to: &str, rcpt: &str) -> String {
    format!(
        "From: MAILER-DAEMON@mx.ex.test (Mail Delivery System)\r\nTo: {to}\r\nSubject: Undelivered Mail Returned to Sender\r\n\
         Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"B1\"\r\n\r\n\
         --B1\r\nContent-Type: text/plain\r\n\r\nThis is the mail system at host mx.ex.test.\r\n\r\n\
         <{rcpt}>: host mx.ex.test[192.0.2.25] said: 550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown\r\n\r\n\
         --B1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.ex.test\r\nArrival-Date: Tue,  1 Dec 2026 10:00:00 +0000\r\n\r\n\
         Final-Recipient: rfc822; {rcpt}\r\nOriginal-Recipient: rfc822;{rcpt}\r\nAction: failed\r\nStatus: 5.1.1\r\n\
         Remote-MTA: dns; mx.ex.test\r\nDiagnostic-Code: smtp; 550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown\r\n\r\n\
         --B1\r\nContent-Type: text/rfc822-headers\r\n\r\nReturn-Path: <{to}>\r\nFrom: Sender <news@example.com>\r\nTo: {rcpt}\r\nSubject: News\r\n\r\n--B1--\r\n"
    )
}

fn arf(return_path: &str, rcpt: &str) -> String {
    format!(
        "From: staff@hotmail.example\r\nTo: fbl@fbl.example.net\r\nSubject: complaint about message from 192.0.2.1\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=feedback-report; boundary=\"A1\"\r\n\r\n\
         --A1\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n\r\n\
         --A1\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: ExampleFBL/1.0\r\nVersion: 1\r\n\
         Original-Mail-From: <{return_path}>\r\nArrival-Date: Tue, 1 Dec 2026 10:00:00 +0000\r\nSource-IP: 192.0.2.1\r\nReported-Domain: example.com\r\n\r\n\
         --A1\r\nContent-Type: message/rfc822\r\n\r\nReturn-Path: <{return_path}>\r\nFrom: Sender <news@example.com>\r\nTo: {rcpt}\r\nSubject: News\r\n\r\nHello\r\n\r\n--A1--\r\n"
    )
}

fn peer() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/smtp_submit.py")
}

/// Delivers `message` to the inbound listener with smtplib; the JSON answer.
fn smtplib(rig: &Rig, from: &str, to: &str, message: impl AsRef<[u8]>) -> serde_json::Value {
    let f = rig.fx.write("report.eml", message);
    let out = Command::new("/usr/bin/python3")
        .arg(peer())
        .args([
            "send",
            "127.0.0.1",
            &rig.inbound.to_string(),
            "plain",
            "-",
            "-",
        ])
        .args([from, to])
        .arg(&f)
        .output()
        .expect("python3");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("smtp_submit.py: {}", text(&out.stderr)))
}

/// Delivers `message` with swaks; the transcript and whether it succeeded.
fn swaks(rig: &Rig, from: &str, to: &str, message: &str) -> (bool, String) {
    let f = rig.fx.write("swaks.eml", message);
    let out = Command::new("swaks")
        .args(["--server", &format!("127.0.0.1:{}", rig.inbound)])
        .args(["--from", from, "--to", to, "--data"])
        .arg(format!("@{}", f.display()))
        .output()
        .expect("swaks");
    (out.status.success(), text(&out.stdout))
}

/// A POST (or GET) by Python's urllib; (status, body).
fn http(url: &str, post: bool) -> (u16, String) {
    let script = r#"
import sys, urllib.request, urllib.error
url, post = sys.argv[1], sys.argv[2] == "post"
data = (b"List-Unsubscribe=One-Click" if sys.argv[3] == "body" else b"") if post else None
req = urllib.request.Request(url, data=data, method="POST" if post else "GET")
if post:
    req.add_header("Content-Type", "application/x-www-form-urlencoded")
try:
    r = urllib.request.urlopen(req, timeout=20)
    print(r.status); print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode())
"#;
    let out = Command::new("/usr/bin/python3")
        .args(["-c", script, url, if post { "post" } else { "get" }, "body"])
        .output()
        .expect("python3");
    let t = text(&out.stdout);
    let (code, body) = t.split_once('\n').unwrap_or((&t, ""));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn suppression(rig: &Rig, args: &[&str]) -> std::process::Output {
    let mut a = vec!["suppression"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["--config", "config.toml"]);
    process::run(rig.fx.path(), &a, Duration::from_secs(60))
}

/// Waits until `cond` holds of the events; on timeout, fails showing them.
fn wait_events(rig: &Rig, what: &str, cond: impl Fn(&[serde_json::Value]) -> bool) {
    let start = std::time::Instant::now();
    loop {
        let ev = rig.fx.events();
        if cond(&ev) {
            return;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let summary: Vec<String> = ev
                .iter()
                .map(|e| format!("{} {}", e["eventType"], e["mail"]["destination"][0]))
                .collect();
            let log =
                std::fs::read_to_string(rig.fx.path().join("service.log")).unwrap_or_default();
            panic!("timed out waiting for {what}; events: {summary:#?}\n{log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn of_type<'a>(events: &'a [serde_json::Value], t: &str) -> Vec<&'a serde_json::Value> {
    events.iter().filter(|e| e["eventType"] == t).collect()
}

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

/// Replaces every occurrence of `from` (ASCII case-insensitive) in `raw`.
fn replace_ci(raw: &[u8], from: &str, to: &str) -> Vec<u8> {
    let needle = from.to_ascii_lowercase().into_bytes();
    let lower = raw.to_ascii_lowercase();
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if lower[i..].starts_with(&needle) {
            out.extend_from_slice(to.as_bytes());
            i += needle.len();
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    out
}

/// One sample of the parser's corpus about one recipient, as
/// `expected.toml` classifies it.
struct Case {
    file: String,
    email: String,
    kind: String,
    bounce: Option<(String, String)>,
    feedback_type: Option<String>,
}

fn cases() -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/feedback");
    let text = std::fs::read_to_string(dir.join("expected.toml")).expect("expected.toml");
    let table: toml::Table = text.parse().expect("expected.toml parses");
    let mut out = Vec::new();
    for (file, v) in table {
        let kind = v.get("kind").and_then(|k| k.as_str()).unwrap_or("");
        let rcpts = v
            .get("recipients")
            .and_then(|r| r.as_array())
            .cloned()
            .unwrap_or_default();
        if rcpts.len() != 1 || v.get("recipient_count").is_some() {
            continue;
        }
        // the address must be there to be replaced (not in an encoded part)
        let r = &rcpts[0];
        let named = r
            .get("email")
            .or(Some(r))
            .and_then(|x| x.as_str())
            .unwrap_or("");
        let raw = std::fs::read(dir.join(&file)).unwrap_or_default();
        if named.is_empty()
            || !raw
                .to_ascii_lowercase()
                .windows(named.len())
                .any(|w| w == named.to_ascii_lowercase().as_bytes())
        {
            continue;
        }
        let s = |k: &str| r.get(k).and_then(|x| x.as_str()).map(str::to_string);
        let case = match kind {
            "bounce" if s("action").as_deref() == Some("failed") => Case {
                file,
                email: s("email").unwrap_or_default(),
                kind: "Bounce".into(),
                bounce: Some((
                    s("bounce_type").unwrap_or_default(),
                    s("bounce_sub_type").unwrap_or_default(),
                )),
                feedback_type: None,
            },
            "complaint" => Case {
                file,
                email: r.as_str().unwrap_or_default().to_string(),
                kind: "Complaint".into(),
                bounce: None,
                feedback_type: v
                    .get("feedback_type")
                    .and_then(|f| f.as_str())
                    .map(str::to_string),
            },
            _ => continue,
        };
        out.push(case);
    }
    out
}

#[test]
fn reports_in_the_formats_of_real_mtas_are_attributed_by_their_return_path() {
    let cases = cases();
    assert!(cases.len() >= 20, "{} cases", cases.len());
    let rig = rig();
    let _service = start(&rig);
    let rcpts: Vec<String> = (0..cases.len())
        .map(|i| format!("r{i:02}@ex.test"))
        .collect();
    let refs: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    campaign(&rig, "formats", &refs, "");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/feedback");
    for (case, rcpt) in cases.iter().zip(&rcpts) {
        let (rp, _) = received(&rig.sink, rcpt);
        let raw = std::fs::read(dir.join(&case.file)).expect("sample");
        let raw = replace_ci(&raw, &case.email, rcpt);
        let r = smtplib(&rig, "", &rp, &raw);
        assert_eq!(r["ok"], true, "{}: {r}", case.file);
    }
    // every report gets its event (the per-case checks below name any
    // that does not)
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        let ev = rig.fx.events();
        if of_type(&ev, "Bounce").len() + of_type(&ev, "Complaint").len() >= cases.len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let ev = rig.fx.events();
    for (case, rcpt) in cases.iter().zip(&rcpts) {
        let found: Vec<&serde_json::Value> = of_type(&ev, &case.kind)
            .into_iter()
            .filter(|e| e["mail"]["destination"][0] == rcpt.as_str())
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{}: {} events for {rcpt}",
            case.file,
            found.len()
        );
        let e = found[0];
        if let Some((t, sub)) = &case.bounce {
            assert_eq!(e["bounce"]["bounceType"], t.as_str(), "{}: {e}", case.file);
            assert_eq!(
                e["bounce"]["bounceSubType"],
                sub.as_str(),
                "{}: {e}",
                case.file
            );
            assert_eq!(
                e["bounce"]["bouncedRecipients"][0]["emailAddress"],
                rcpt.as_str()
            );
        }
        if let Some(ft) = &case.feedback_type {
            assert_eq!(
                e["complaint"]["complaintFeedbackType"],
                ft.as_str(),
                "{}: {e}",
                case.file
            );
        }
    }
    println!("{} reports in real formats attributed", cases.len());
}

#[test]
fn a_redacted_complaint_is_attributed_after_the_records_are_gone() {
    let rig = rig();
    let _service = start(&rig);
    // a non-personalized campaign: with feedback on its recipients no
    // longer share a transaction, each has its own return path
    campaign(
        &rig,
        "first",
        &["gina@ex.test", "hank@ex.test"],
        "personalized = false\n",
    );
    let (rp, _) = received(&rig.sink, "gina@ex.test");
    let (hank_rp, _) = received(&rig.sink, "hank@ex.test");
    assert_ne!(rp, hank_rp);
    assert_eq!(rig.sink.files().len(), 2, "one transaction each");
    // the finished segment is reclaimed; its addresses stay in the ledger
    let spool = rig.fx.path().join("spool");
    wait_until(Duration::from_secs(60), "the segment reclaimed", || {
        let segs = std::fs::read_dir(spool.join("segments"))
            .map(|d| d.count())
            .unwrap_or(0);
        let ledgers = std::fs::read_dir(spool.join("ledger"))
            .map(|d| d.count())
            .unwrap_or(0);
        segs == 0 && ledgers > 0
    });
    // a complaint whose provider redacted the recipient everywhere
    let report = arf(&rp, "redacted@ex.test").replace("To: redacted@ex.test", "To: [redacted]");
    let r = smtplib(&rig, "fbl@provider.example", "fbl@fbl.example.net", report);
    assert_eq!(r["ok"], true, "{r}");
    wait_events(&rig, "the complaint", |ev| {
        !of_type(ev, "Complaint").is_empty()
    });
    let ev = rig.fx.events();
    let c = of_type(&ev, "Complaint")[0];
    assert_eq!(
        c["complaint"]["complainedRecipients"][0]["emailAddress"], "gina@ex.test",
        "{c}"
    );
    assert_eq!(c["mail"]["tags"]["volley:campaign"][0], "first");
}
