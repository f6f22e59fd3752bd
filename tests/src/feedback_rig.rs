//! The rig of the feedback tests (`tests/feedback*.rs`): a `volley run`
//! with `[feedback]` on (a bounce domain, a feedback domain, the inbound
//! listener, one-click and mailto unsubscribe, a configuration set whose
//! destination takes the feedback events) delivering to Postfix's
//! smtp-sink; campaigns sent through it; the messages the sink got; DSN and
//! ARF reports built to Postfix's and the RFCs' formats; and the clients
//! that talk to it: Python's smtplib, swaks, urllib, `volley suppression`.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::postfix::PostfixSink;
use crate::process::{self, Running, spawn, text};
use crate::{Fixture, free_port, wait_until};

pub const SECRET: &str = "c2VjcmV0LXRva2VuLWtleS1mb3ItdGVzdHMtb25seSE=";
pub const BOUNCES: &str = "bounces.example.net";

pub struct Rig {
    pub fx: Fixture,
    pub inbound: u16,
    pub sink: PostfixSink,
}

pub fn rig() -> Rig {
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

pub fn start(rig: &Rig) -> Running {
    let service = spawn(rig.fx.path(), &["run", "--config", "config.toml"]);
    wait_until(Duration::from_secs(60), "the inbound listener", || {
        TcpStream::connect(("127.0.0.1", rig.inbound)).is_ok()
    });
    service
}

/// Sends a campaign through the running service and waits for it.
pub fn campaign(rig: &Rig, id: &str, rcpts: &[&str], extra: &str) {
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
pub fn received(sink: &PostfixSink, rcpt: &str) -> (String, String) {
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
pub fn unsubscribe_url(message: &str) -> String {
    let header = unfolded(message, "List-Unsubscribe");
    header
        .split(['<', '>'])
        .find(|p| p.starts_with("http"))
        .unwrap_or_else(|| panic!("no URL in List-Unsubscribe: {header}"))
        .to_string()
}

pub fn unfolded(message: &str, name: &str) -> String {
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

pub fn dsn(to: &str, rcpt: &str) -> String {
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

pub fn arf(return_path: &str, rcpt: &str) -> String {
    format!(
        "From: staff@hotmail.example\r\nTo: fbl@fbl.example.net\r\nSubject: complaint about message from 192.0.2.1\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=feedback-report; boundary=\"A1\"\r\n\r\n\
         --A1\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n\r\n\
         --A1\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: ExampleFBL/1.0\r\nVersion: 1\r\n\
         Original-Mail-From: <{return_path}>\r\nArrival-Date: Tue, 1 Dec 2026 10:00:00 +0000\r\nSource-IP: 192.0.2.1\r\nReported-Domain: example.com\r\n\r\n\
         --A1\r\nContent-Type: message/rfc822\r\n\r\nReturn-Path: <{return_path}>\r\nFrom: Sender <news@example.com>\r\nTo: {rcpt}\r\nSubject: News\r\n\r\nHello\r\n\r\n--A1--\r\n"
    )
}

pub fn peer() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/smtp_submit.py")
}

/// Delivers `message` to the inbound listener with smtplib; the JSON answer.
pub fn smtplib(rig: &Rig, from: &str, to: &str, message: impl AsRef<[u8]>) -> serde_json::Value {
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
pub fn swaks(rig: &Rig, from: &str, to: &str, message: &str) -> (bool, String) {
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
pub fn http(url: &str, post: bool) -> (u16, String) {
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

pub fn suppression(rig: &Rig, args: &[&str]) -> std::process::Output {
    let mut a = vec!["suppression"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["--config", "config.toml"]);
    process::run(rig.fx.path(), &a, Duration::from_secs(60))
}

/// Waits until `cond` holds of the events; on timeout, fails showing them.
pub fn wait_events(rig: &Rig, what: &str, cond: impl Fn(&[serde_json::Value]) -> bool) {
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

pub fn of_type<'a>(events: &'a [serde_json::Value], t: &str) -> Vec<&'a serde_json::Value> {
    events.iter().filter(|e| e["eventType"] == t).collect()
}
