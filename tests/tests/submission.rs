//! SMTP submission into `volley run`, with real clients (Python's smtplib
//! and swaks): STARTTLS and implicit TLS, AUTH PLAIN and LOGIN with a user
//! made by `volley user` and with SES-style SMTP credentials (the password
//! derived by an independent implementation of AWS's derivation), several
//! RCPTs, the SES headers, refusals (no AUTH, wrong password, a sender
//! outside the user's identities, a message over the size limit, the
//! daily quota, repeated login failures), DKIM signatures checked by
//! dkimpy, and acceptance that survives kill -9.

use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use volley_tests::process::{Running, spawn};
use volley_tests::scripted::ScriptedServer;
use volley_tests::*;

struct Rig {
    fx: Fixture,
    starttls: u16,
    implicit: u16,
}

const SES_KEY: &str = "AKIAVOLLEYTEST";
const SES_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

fn volley_ok(dir: &Path, args: &[&str], stdin: &str) {
    use std::io::Write;
    let mut child = Command::new(process::volley())
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("volley");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("volley output");
    assert!(
        out.status.success(),
        "volley {args:?}: {}",
        text(&out.stderr)
    );
}

/// A fixture whose config has both listeners, a user `app` (identity
/// example.com), SES credentials, DKIM for example.com and `extra`.
fn rig(route: &str, extra: &str) -> Rig {
    let fx = Fixture::new();
    let (starttls, implicit) = (free_port(), free_port());
    volley_ok(
        fx.path(),
        &[
            "tls-cert",
            "--name",
            "localhost",
            "--cert",
            "cert.pem",
            "--key",
            "key.pem",
        ],
        "",
    );
    volley_ok(
        fx.path(),
        &[
            "keygen",
            "--algorithm",
            "ed25519",
            "--domain",
            "example.com",
            "--selector",
            "s1",
            "--out",
            ".",
        ],
        "",
    );
    fx.config(
        route,
        &format!(
            "[delivery]\nretry_first = \"1s\"\n[[dkim]]\ndomain = \"example.com\"\nselector = \"s1\"\nkey = \"s1.example.com.key.pem\"\nalgorithm = \"ed25519-sha256\"\n\
             [configuration_sets.tx]\n\
             [submission]\ncert = \"cert.pem\"\nkey = \"key.pem\"\nmax_message_size = \"64KB\"\n{extra}\n\
             [[submission.listeners]]\naddress = \"127.0.0.1:{starttls}\"\ntls = \"starttls\"\n\
             [[submission.listeners]]\naddress = \"127.0.0.1:{implicit}\"\ntls = \"implicit\"\n\
             [[submission.ses_credentials]]\naccess_key_id = \"{SES_KEY}\"\nsecret_access_key = \"{SES_SECRET}\"\nregion = \"eu-west-1\"\nidentities = [\"ses.example.com\"]\n"
        ),
    );
    volley_ok(
        fx.path(),
        &[
            "user",
            "add",
            "app",
            "--identity",
            "example.com",
            "--config",
            "config.toml",
        ],
        "correct horse battery\n",
    );
    Rig {
        fx,
        starttls,
        implicit,
    }
}

fn start(rig: &Rig) -> Running {
    let service = spawn(rig.fx.path(), &["run", "--config", "config.toml"]);
    wait_until(Duration::from_secs(60), "the submission listener", || {
        TcpStream::connect(("127.0.0.1", rig.implicit)).is_ok()
    });
    service
}

/// Sends with smtplib; the JSON result line.
fn smtplib(
    rig: &Rig,
    mode: &str,
    user: &str,
    pass: &str,
    from: &str,
    to: &str,
    msg: &str,
) -> serde_json::Value {
    let file = rig.fx.write(&format!("msg-{}.eml", fastrand_name()), msg);
    let port = if mode == "ssl" {
        rig.implicit
    } else {
        rig.starttls
    };
    let out = Command::new("python3")
        .arg(peers_dir().join("smtp_submit.py"))
        .args([
            "send",
            "127.0.0.1",
            &port.to_string(),
            mode,
            user,
            pass,
            from,
            to,
        ])
        .arg(&file)
        .output()
        .expect("python3 smtp_submit.py");
    let line = text(&out.stdout);
    serde_json::from_str(line.trim())
        .unwrap_or_else(|e| panic!("{e}: {line} {}", text(&out.stderr)))
}

fn fastrand_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn ok_server() -> ScriptedServer {
    ScriptedServer::start(true, Arc::new(|_: &str, _: u32| "250 2.1.5 Ok".to_string()))
}

#[test]
fn real_clients_submit_over_tls_and_mail_goes_out_signed() {
    let server = ok_server();
    let rig = rig(&server.addr.to_string(), "");
    let service = start(&rig);
    let msg = "From: App <news@example.com>\r\nTo: a@one.test\r\nBcc: hidden@two.test\r\nSubject: Receipt 42\r\nX-SES-CONFIGURATION-SET: tx\r\nX-SES-MESSAGE-TAGS: kind=receipt, shop=north\r\n\r\nThanks.\r\n.leading dot\r\n";
    // smtplib: STARTTLS, AUTH (PLAIN), three RCPTs at two sites
    let r = smtplib(
        &rig,
        "starttls",
        "app",
        "correct horse battery",
        "news@example.com",
        "a@one.test,b@one.test,hidden@two.test",
        msg,
    );
    assert_eq!(r["ok"], true, "{r}");
    // SES SMTP credentials, password derived independently, implicit TLS
    let ses_pass = text(
        &Command::new("python3")
            .arg(peers_dir().join("smtp_submit.py"))
            .args(["ses-password", SES_SECRET, "eu-west-1"])
            .output()
            .expect("ses-password")
            .stdout,
    );
    let r = smtplib(
        &rig,
        "ssl",
        SES_KEY,
        ses_pass.trim(),
        "bounce@ses.example.com",
        "c@three.test",
        "From: shop@ses.example.com\r\nSubject: ses creds\r\n\r\nhi\r\n",
    );
    assert_eq!(r["ok"], true, "{r}");
    // swaks: STARTTLS, AUTH LOGIN
    let out = Command::new("swaks")
        .args([
            "--server",
            &format!("127.0.0.1:{}", rig.starttls),
            "-tls",
            "--auth",
            "LOGIN",
        ])
        .args([
            "--auth-user",
            "app",
            "--auth-password",
            "correct horse battery",
        ])
        .args([
            "--from",
            "news@example.com",
            "--to",
            "d@one.test",
            "--header",
            "Subject: from swaks",
        ])
        .output()
        .expect("swaks");
    let transcript = text(&out.stdout);
    assert!(out.status.success(), "{transcript}");
    assert!(transcript.contains("<~  250 2.0.0 Ok "), "{transcript}");

    wait_until(Duration::from_secs(60), "all recipients delivered", || {
        server
            .received()
            .iter()
            .map(|m| m.rcpts.len())
            .sum::<usize>()
            == 5
    });
    let received = server.received();
    // recipients of one message at one domain share its transaction (the
    // scheduler hands a domain's recipients to its site together; another
    // domain's, even at the same site, may go in a transaction of its own
    // when the site is already sending)
    let receipt: Vec<_> = received
        .iter()
        .filter(|m| text(&m.data).contains("Receipt 42"))
        .collect();
    let mut rcpts: Vec<String> = receipt.iter().flat_map(|m| m.rcpts.clone()).collect();
    rcpts.sort();
    assert_eq!(rcpts, ["a@one.test", "b@one.test", "hidden@two.test"]);
    let one_test: Vec<_> = receipt
        .iter()
        .filter(|m| m.rcpts.iter().any(|r| r.ends_with("@one.test")))
        .collect();
    assert_eq!(one_test.len(), 1, "one transaction for a@ and b@one.test");
    let both = ["a@one.test", "b@one.test"];
    assert!(
        both.iter()
            .all(|r| one_test[0].rcpts.iter().any(|x| x == r)),
        "{:?}",
        one_test[0].rcpts
    );
    for m in &received {
        let data = text(&m.data);
        assert!(!data.contains("Bcc:") && !data.contains("X-SES-"), "{data}");
        assert!(
            data.contains("Message-ID: <") || data.contains("Message-Id: <"),
            "{data}"
        );
        assert!(
            data.contains("\r\nDate: ") || data.starts_with("Date: "),
            "{data}"
        );
        if data.contains("Receipt 42") {
            assert!(
                data.contains("\r\n.leading dot\r\n"),
                "dot-stuffing undone: {data}"
            );
        }
        if data.contains("From: shop@ses.example.com") {
            continue; // no key for ses.example.com: unsigned
        }
        let f = rig
            .fx
            .write(&format!("got-{}.eml", fastrand_name()), &m.data);
        let (ok, report) = verify_dkim(
            &f,
            &["s1.example.com.txt".into()]
                .map(|k: String| rig.fx.path().join(k).display().to_string()),
        );
        assert!(ok, "{report}");
    }
    // once delivered and published, the messages' files go
    let campaigns = rig.fx.path().join("spool").join("campaigns");
    wait_until(
        Duration::from_secs(60),
        "finished messages reclaimed",
        || {
            std::fs::read_dir(&campaigns)
                .map(|d| d.count())
                .unwrap_or(1)
                == 0
        },
    );
    let out = process::stop(service);
    assert_no_panic(&out);
    // events: the set and tags from the SES headers, one message id
    let events = rig.fx.events();
    let deliveries: Vec<_> = events
        .iter()
        .filter(|e| e["eventType"] == "Delivery")
        .collect();
    assert_eq!(deliveries.len(), 5, "{events:?}");
    let receipt: Vec<_> = deliveries
        .iter()
        .filter(|e| e["mail"]["commonHeaders"]["subject"] == "Receipt 42")
        .collect();
    assert_eq!(receipt.len(), 3);
    for e in &receipt {
        assert_eq!(e["mail"]["tags"]["ses:configuration-set"][0], "tx");
        assert_eq!(e["mail"]["tags"]["kind"][0], "receipt");
        assert_eq!(e["mail"]["tags"]["shop"][0], "north");
        assert_eq!(e["mail"]["source"], "news@example.com");
        assert_eq!(e["mail"]["messageId"], receipt[0]["mail"]["messageId"]);
    }
}

#[test]
fn refusals_name_what_is_wrong() {
    let server = ok_server();
    let rig = rig(
        &server.addr.to_string(),
        "auth_failures_slow_after = 100\nauth_failures_refuse_after = 4\n",
    );
    let service = start(&rig);
    let msg = "From: news@example.com\r\nSubject: x\r\n\r\nbody\r\n";
    // no AUTH
    let r = smtplib(
        &rig,
        "starttls",
        "-",
        "",
        "news@example.com",
        "a@one.test",
        msg,
    );
    assert_eq!(
        (r["code"].as_i64(), r["stage"].as_str()),
        (Some(530), Some("send")),
        "{r}"
    );
    // a sender outside the identities: MAIL FROM, then the From header
    let r = smtplib(
        &rig,
        "starttls",
        "app",
        "correct horse battery",
        "evil@other.test",
        "a@one.test",
        msg,
    );
    assert_eq!(r["code"], 554, "{r}");
    assert!(
        r["reply"].as_str().unwrap().contains("5.7.1")
            && r["reply"].as_str().unwrap().contains("evil@other.test"),
        "{r}"
    );
    let r = smtplib(
        &rig,
        "starttls",
        "app",
        "correct horse battery",
        "news@example.com",
        "a@one.test",
        "From: ceo@other.test\r\n\r\nx\r\n",
    );
    assert_eq!(r["code"], 554, "{r}");
    assert!(
        r["reply"].as_str().unwrap().contains("ceo@other.test"),
        "{r}"
    );
    // over the size limit (64 KB here)
    let big = format!(
        "From: news@example.com\r\n\r\n{}",
        "0123456789abcdef\r\n".repeat(5000)
    );
    let r = smtplib(
        &rig,
        "starttls",
        "app",
        "correct horse battery",
        "news@example.com",
        "a@one.test",
        &big,
    );
    assert_eq!(r["code"], 552, "{r}");
    // an unknown configuration set
    let r = smtplib(
        &rig,
        "starttls",
        "app",
        "correct horse battery",
        "news@example.com",
        "a@one.test",
        "From: news@example.com\r\nX-SES-CONFIGURATION-SET: nope\r\n\r\nx\r\n",
    );
    assert_eq!(r["code"], 554, "{r}");
    assert!(r["reply"].as_str().unwrap().contains("nope"), "{r}");
    // AUTH without TLS is refused (and not offered)
    let r = smtplib(
        &rig,
        "plain",
        "app",
        "correct horse battery",
        "news@example.com",
        "a@one.test",
        msg,
    );
    assert_eq!(r["stage"], "auth", "{r}");
    // wrong passwords: 535 each (smtplib tries PLAIN, then LOGIN: two
    // failures per login), then the address is refused
    for _ in 0..2 {
        let r = smtplib(
            &rig,
            "starttls",
            "app",
            "wrong",
            "news@example.com",
            "a@one.test",
            msg,
        );
        assert_eq!(r["code"], 535, "{r}");
    }
    let out = Command::new("swaks")
        .args([
            "--server",
            &format!("127.0.0.1:{}", rig.starttls),
            "-tls",
            "--auth",
            "LOGIN",
        ])
        .args([
            "--auth-user",
            "app",
            "--auth-password",
            "correct horse battery",
        ])
        .args(["--from", "news@example.com", "--to", "d@one.test"])
        .output()
        .expect("swaks");
    let transcript = text(&out.stdout);
    assert!(transcript.contains("421 4.7.0"), "{transcript}");
    process::stop(service);
    assert_eq!(server.received_count(), 0, "nothing refused was sent");
}

#[test]
fn daily_quota_is_enforced() {
    let server = ok_server();
    let rig = rig(&server.addr.to_string(), "");
    volley_ok(
        rig.fx.path(),
        &[
            "user",
            "add",
            "capped",
            "--identity",
            "example.com",
            "--max-24-hour-send",
            "3",
            "--config",
            "config.toml",
        ],
        "another password\n",
    );
    let service = start(&rig);
    let msg = "From: news@example.com\r\nSubject: q\r\n\r\nbody\r\n";
    let r = smtplib(
        &rig,
        "starttls",
        "capped",
        "another password",
        "news@example.com",
        "a@one.test,b@one.test",
        msg,
    );
    assert_eq!(r["ok"], true, "{r}");
    let r = smtplib(
        &rig,
        "starttls",
        "capped",
        "another password",
        "news@example.com",
        "c@one.test,d@one.test",
        msg,
    );
    assert_eq!(r["code"], 554, "{r}");
    assert!(
        r["reply"]
            .as_str()
            .unwrap()
            .contains("Daily message quota exceeded"),
        "{r}"
    );
    let r = smtplib(
        &rig,
        "starttls",
        "capped",
        "another password",
        "news@example.com",
        "c@one.test",
        msg,
    );
    assert_eq!(r["ok"], true, "{r}");
    wait_until(Duration::from_secs(60), "3 delivered", || {
        server
            .received()
            .iter()
            .map(|m| m.rcpts.len())
            .sum::<usize>()
            == 3
    });
    process::stop(service);
}

#[test]
fn accepted_mail_survives_kill_9() {
    // nothing listens at the route at first: accepted mail stays queued
    let down = format!("127.0.0.1:{}", free_port());
    let rig = rig(&down, "");
    let mut service = start(&rig);
    let mut accepted = 0;
    for i in 0..20 {
        let msg = format!("From: news@example.com\r\nSubject: durable {i}\r\n\r\nbody {i}\r\n");
        let r = smtplib(
            &rig,
            "starttls",
            "app",
            "correct horse battery",
            "news@example.com",
            &format!("r{i}@one.test,s{i}@two.test"),
            &msg,
        );
        assert_eq!(r["ok"], true, "{r}");
        accepted += 2;
    }
    service.kill().expect("kill -9");
    let _ = service.wait();
    // now the destination is up
    let server = ok_server();
    let cfg = std::fs::read_to_string(rig.fx.path().join("config.toml")).unwrap();
    rig.fx
        .write("config.toml", cfg.replace(&down, &server.addr.to_string()));
    let service = start(&rig);
    wait_until(
        Duration::from_secs(120),
        "every accepted recipient delivered",
        || {
            server
                .received()
                .iter()
                .map(|m| m.rcpts.len())
                .sum::<usize>()
                >= accepted
        },
    );
    process::stop(service);
    let mut got: Vec<String> = server
        .received()
        .iter()
        .flat_map(|m| m.rcpts.clone())
        .collect();
    got.sort();
    got.dedup();
    assert_eq!(got.len(), accepted);
}
