//! Hostile recipient variables (the SMTP-smuggling shape `a\r.\rMAIL
//! FROM:<x@e.test>`, NUL, other control characters, a 2,000-octet line,
//! UTF-8 with CRLF and a lone dot) in the subject and both bodies: the
//! bytes that reach the receiver are 7-bit, every line ends in CRLF, there
//! is no bare CR and no NUL, each part's Content-Transfer-Encoding fits its
//! content and decodes (Python's `email` package) to what the templates
//! rendered, the message verifies with dkimpy, and no variable adds an SMTP
//! command or a header. Checked at the exact bytes (the scripted server)
//! and at Postfix's smtp-sink.

use std::process::Command;
use std::time::Duration;

use volley_tests::scripted::ScriptedServer;
use volley_tests::*;

/// The variables, by recipient number.
const VALUES: [&str; 7] = [
    "a\r.\rMAIL FROM:<x@e.test>",
    "nul\0byte",
    "bell\u{7} esc\u{1b} del\u{7f} vt\u{b}",
    "Grüße\r\n.\r\nQUIT",
    "lone\rcr and lf\nend",
    "plain words",
    "", // replaced by a 2,000-octet line
];

fn value(i: usize) -> String {
    if VALUES[i].is_empty() {
        "x".repeat(2000)
    } else {
        VALUES[i].to_string()
    }
}

/// Prints each leaf part of a message as JSON: its content type, declared
/// transfer encoding, raw payload and decoded text.
const PARTS_PY: &str = r#"
import email, email.policy, json, sys
m = email.message_from_bytes(open(sys.argv[1], "rb").read(), policy=email.policy.compat32)
out = []
for p in m.walk():
    if p.is_multipart():
        continue
    out.append({
        "type": p.get_content_type(),
        "cte": p.get("Content-Transfer-Encoding", ""),
        "raw": p.get_payload(decode=False),
        "text": p.get_payload(decode=True).decode("utf-8"),
    })
print(json.dumps(out))
"#;

/// Checks a raw part payload against its declared transfer encoding.
fn check_encoding(cte: &str, raw: &str) {
    // the parser hands lines back with CRLF or LF ends
    for line in raw.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)) {
        let printable = line
            .bytes()
            .all(|b| b == b'\t' || (0x20..0x7F).contains(&b));
        match cte {
            "7bit" => assert!(printable && line.len() <= 998, "7bit line {line:?}"),
            "quoted-printable" => {
                assert!(printable && line.len() <= 76, "QP line {line:?}")
            }
            "base64" => assert!(
                line.len() <= 76
                    && line
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)),
                "base64 line {line:?}"
            ),
            other => panic!("unexpected Content-Transfer-Encoding {other:?}"),
        }
    }
}

/// Every CR starts a CRLF, every LF ends one; nothing but printable ASCII
/// and TAB between.
fn assert_wire_bytes(m: &[u8], what: &str) {
    for (i, &c) in m.iter().enumerate() {
        let ok = match c {
            b'\r' => m.get(i + 1) == Some(&b'\n'),
            b'\n' => i > 0 && m[i - 1] == b'\r',
            b'\t' | 0x20..=0x7E => true,
            _ => false,
        };
        assert!(
            ok,
            "{what}: byte {c:#04x} at {i} near {:?}",
            String::from_utf8_lossy(&m[i.saturating_sub(30)..(i + 30).min(m.len())])
        );
    }
}

#[test]
fn hostile_variables_reach_the_receiver_in_a_safe_wire_form() {
    let server = ScriptedServer::accept_all(true);
    let sink = PostfixSink::start();
    let fx = Fixture::new();
    let out = run(
        fx.path(),
        &[
            "keygen",
            "--algorithm",
            "ed25519",
            "--domain",
            "example.com",
            "--selector",
            "e1",
            "--out",
            "keys",
        ],
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "keygen: {}", text(&out.stderr));
    let key = format!(
        "e1._domainkey.example.com={}",
        fx.path().join("keys/e1.example.com.txt").display()
    );

    // each value twice: one recipient at the scripted server, one at Postfix
    let mut list = String::new();
    for i in 0..VALUES.len() {
        for domain in ["a.test", "b.test"] {
            let line =
                serde_json::json!({"email": format!("s{i}@{domain}"), "vars": {"v": value(i)}});
            list.push_str(&format!("{line}\n"));
        }
    }
    fx.write("list.jsonl", list);
    fx.write("page.html", "<p>{{v}}</p>\n.\n");
    fx.campaign(
        "list.jsonl",
        "Hi {{v}}",
        "Hello {{v}}\nbye\n",
        "html = \"page.html\"\nlist_unsubscribe = \"https://example.com/u?e={{email}}\"\n",
    );
    fx.write(
        "config.toml",
        format!(
            "[spool]\ndir = \"spool\"\n[events]\njsonl = \"events.jsonl\"\n[http]\nlisten = \"127.0.0.1:{}\"\n[[dkim]]\ndomain = \"example.com\"\nselector = \"e1\"\nkey = \"keys/e1.example.com.key.pem\"\nalgorithm = \"ed25519-sha256\"\n[routes]\n\"a.test\" = \"{}\"\n\"b.test\" = \"{}\"\n",
            free_port(),
            server.addr,
            sink.addr()
        ),
    );
    fx.send_ok(Duration::from_secs(120));

    // the exact bytes: no command was smuggled, every message is safe
    let received = server.received();
    assert_eq!(received.len(), VALUES.len());
    let mails = server
        .command_log()
        .iter()
        .filter(|c| c.to_ascii_uppercase().starts_with("MAIL FROM"))
        .count();
    assert_eq!(mails, VALUES.len(), "one MAIL per message");
    for m in &received {
        let rcpt = &m.rcpts[0];
        let i: usize = rcpt[1..rcpt.find('@').unwrap()].parse().unwrap();
        assert_wire_bytes(&m.data, rcpt);
        let head = String::from_utf8_lossy(&m.data);
        let head = &head[..head.find("\r\n\r\n").unwrap()];
        assert!(
            !head.contains("\r\nMAIL") && !head.contains("\r\nQUIT"),
            "{head}"
        );
        let file = fx.write(&format!("got/{rcpt}.eml"), &m.data);
        let (ok, report) = verify_dkim(&file, std::slice::from_ref(&key));
        assert!(ok, "{rcpt}: {report}");

        let py = Command::new("/usr/bin/python3")
            .args(["-c", PARTS_PY])
            .arg(&file)
            .output()
            .expect("python3");
        assert!(py.status.success(), "{}", text(&py.stderr));
        let parts: serde_json::Value = serde_json::from_slice(&py.stdout).unwrap();
        let v = value(i);
        let want = [
            ("text/plain", format!("Hello {v}\nbye\n")),
            ("text/html", format!("<p>{v}</p>\n.\n")),
        ];
        assert_eq!(parts.as_array().unwrap().len(), 2);
        for (p, (ctype, text)) in parts.as_array().unwrap().iter().zip(want) {
            assert_eq!(p["type"], ctype);
            let cte = p["cte"].as_str().unwrap();
            check_encoding(cte, p["raw"].as_str().unwrap());
            // line breaks are CRLF on the wire; everything else is carried
            let got = p["text"].as_str().unwrap().replace("\r\n", "\n");
            assert_eq!(got, text.replace("\r\n", "\n"), "{rcpt} {ctype} ({cte})");
            if i == 5 {
                assert_eq!(cte, "7bit", "clean text stays 7bit");
            } else {
                assert_ne!(cte, "7bit", "{rcpt}: {v:?} is not 7bit text");
            }
        }
    }

    // Postfix's smtp-sink: every message arrived, verifies, holds no NUL
    wait_until(Duration::from_secs(10), "sink dumps complete", || {
        sink.recipients().len() >= VALUES.len()
    });
    for f in sink.files() {
        let bytes = std::fs::read(&f).unwrap();
        assert!(!bytes.contains(&0), "{}: NUL", f.display());
        let (ok, report) = verify_dkim(&f, std::slice::from_ref(&key));
        assert!(ok, "{}: {report}", f.display());
    }
}
