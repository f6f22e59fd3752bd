//! Tests of the report parser: the sample corpus in
//! `tests/fixtures/feedback/` against its `expected.toml`, scanner unit
//! tests, and parsing mutated samples (truncated, bytes flipped) without a
//! panic. In: fixture files. Out: pass/fail with a list of mismatches.
//! Exposure: none (test code).

use std::path::Path;

use super::scan::{address, enhanced_code, ip_in, smtp_code, status_from_diagnostic, typed};
use super::{BounceReport, ComplaintReport, Report, parse};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/feedback");

fn samples() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(DIR).expect("fixture directory") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "eml") {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            out.push((name, std::fs::read(&path).expect("read sample")));
        }
    }
    out.sort();
    out
}

fn expected() -> toml::Table {
    let text =
        std::fs::read_to_string(Path::new(DIR).join("expected.toml")).expect("expected.toml");
    toml::from_str(&text).expect("expected.toml parses")
}

fn str_of<'a>(t: &'a toml::Table, key: &str) -> Option<&'a str> {
    t.get(key).and_then(|v| v.as_str())
}

/// Compares `got` with the expected string at `key` (when the key is given).
fn cmp(bad: &mut Vec<String>, t: &toml::Table, key: &str, got: Option<&str>) {
    if let Some(want) = t.get(key)
        && want.as_str() != got
    {
        bad.push(format!("{key}: want {want}, got {got:?}"));
    }
}

fn check_bounce(b: &BounceReport, t: &toml::Table, bad: &mut Vec<String>) {
    cmp(bad, t, "format", Some(b.format));
    cmp(bad, t, "reporting_mta", b.reporting_mta.as_deref());
    let first = b.recipients.first();
    cmp(
        bad,
        t,
        "diagnostic_code",
        first.and_then(|r| r.diagnostic_code.as_deref()),
    );
    cmp(
        bad,
        t,
        "remote_mta",
        first.and_then(|r| r.remote_mta.as_deref()),
    );
    cmp(
        bad,
        t,
        "remote_mta_ip",
        first.and_then(|r| r.remote_mta_ip.as_deref()),
    );
    cmp(
        bad,
        t,
        "original_recipient",
        first.and_then(|r| r.original_recipient.as_deref()),
    );
    let want: Vec<&toml::Table> = t
        .get("recipients")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_table()).collect())
        .unwrap_or_default();
    let count = t.get("recipient_count").and_then(|v| v.as_integer());
    let want_len = count.map(|c| c as usize).unwrap_or(want.len());
    if b.recipients.len() != want_len {
        let got: Vec<&str> = b
            .recipients
            .iter()
            .take(5)
            .map(|r| r.email.as_str())
            .collect();
        bad.push(format!(
            "recipients: want {want_len}, got {} {got:?}",
            b.recipients.len()
        ));
    }
    for (w, r) in want.iter().zip(&b.recipients) {
        let mut rb = Vec::new();
        cmp(&mut rb, w, "email", Some(&r.email));
        cmp(&mut rb, w, "action", Some(&r.action));
        cmp(&mut rb, w, "bounce_type", Some(r.bounce_type));
        cmp(&mut rb, w, "bounce_sub_type", Some(r.bounce_sub_type));
        if str_of(w, "status") != r.status.as_deref() {
            rb.push(format!(
                "status: want {:?}, got {:?}",
                str_of(w, "status"),
                r.status
            ));
        }
        bad.extend(rb.into_iter().map(|m| format!("{}: {m}", r.email)));
    }
}

fn check_complaint(c: &ComplaintReport, t: &toml::Table, bad: &mut Vec<String>) {
    cmp(bad, t, "feedback_type", Some(&c.feedback_type));
    cmp(bad, t, "user_agent", c.user_agent.as_deref());
    cmp(bad, t, "source_ip", c.source_ip.as_deref());
    cmp(bad, t, "arrival_date", c.arrival_date.as_deref());
    cmp(
        bad,
        t,
        "original_mail_from",
        c.original_mail_from.as_deref(),
    );
    let list = |key: &str| -> Option<Vec<String>> {
        t.get(key)?.as_array().map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
    };
    if let Some(want) = list("recipients")
        && want != c.original_rcpt_to
    {
        bad.push(format!(
            "recipients: want {want:?}, got {:?}",
            c.original_rcpt_to
        ));
    }
    if let Some(want) = list("reported_domain")
        && want != c.reported_domain
    {
        bad.push(format!(
            "reported_domain: want {want:?}, got {:?}",
            c.reported_domain
        ));
    }
}

fn check(report: &Report, t: &toml::Table) -> Vec<String> {
    let mut bad = Vec::new();
    let kind = str_of(t, "kind").unwrap_or("?");
    let original = match (kind, report) {
        ("any", _) => return bad,
        ("bounce", Report::Bounce(b)) => {
            check_bounce(b, t, &mut bad);
            Some(&b.original)
        }
        ("complaint", Report::Complaint(c)) => {
            check_complaint(c, t, &mut bad);
            Some(&c.original)
        }
        ("autoreply", Report::AutoReply { .. }) | ("unrecognized", Report::Unrecognized { .. }) => {
            None
        }
        _ => {
            bad.push(format!("kind: want {kind}, got {}", summary(report)));
            return bad;
        }
    };
    if let Some(o) = original {
        if let Some(want) = str_of(t, "original_contains")
            && !o.headers.iter().any(|(_, v)| v.contains(want))
        {
            bad.push(format!(
                "original: no header contains {want:?} ({} fields)",
                o.headers.len()
            ));
        }
        cmp(&mut bad, t, "message_id", o.message_id());
        if let Some(want) = t.get("original_truncated").and_then(|v| v.as_bool())
            && want != o.truncated
        {
            bad.push(format!(
                "original_truncated: want {want}, got {}",
                o.truncated
            ));
        }
    }
    bad
}

fn summary(report: &Report) -> String {
    match report {
        Report::Bounce(b) => format!("bounce/{} ({} recipients)", b.format, b.recipients.len()),
        Report::Complaint(c) => format!("complaint/{}", c.feedback_type),
        Report::AutoReply { reason } => format!("autoreply ({reason})"),
        Report::Unrecognized { reason } => format!("unrecognized ({reason})"),
    }
}

#[test]
fn corpus_matches_expected() {
    let expected = expected();
    let samples = samples();
    let mut mismatches = Vec::new();
    let mut matched = 0usize;
    for (name, raw) in &samples {
        let Some(t) = expected.get(name).and_then(|v| v.as_table()) else {
            mismatches.push(format!("{name}: not listed in expected.toml"));
            continue;
        };
        let bad = check(&parse(raw), t);
        if bad.is_empty() {
            matched += 1;
        }
        mismatches.extend(bad.into_iter().map(|m| format!("{name}: {m}")));
    }
    for name in expected.keys() {
        if !samples.iter().any(|(n, _)| n == name) {
            mismatches.push(format!("{name}: listed in expected.toml but missing"));
        }
    }
    println!(
        "feedback corpus: {} samples, {matched} matched",
        samples.len()
    );
    assert!(
        samples.len() >= 40,
        "the corpus has {} samples",
        samples.len()
    );
    assert!(
        mismatches.is_empty(),
        "corpus mismatches:\n  {}",
        mismatches.join("\n  ")
    );
}

#[test]
fn never_panics_on_mutated_samples() {
    let mut rng = fastrand::Rng::with_seed(0x5eed_f00d);
    let mut runs = 0usize;
    for (_, raw) in samples() {
        // Large samples are mutated near their start only, to bound time.
        let raw = raw.get(..raw.len().min(64 * 1024)).unwrap_or_default();
        if raw.is_empty() {
            continue;
        }
        for i in 0..24 {
            let cut = if i == 0 {
                raw.len() / 2
            } else {
                rng.usize(..raw.len())
            };
            let _ = parse(raw.get(..cut).unwrap_or_default());
            let mut flipped = raw.to_vec();
            for _ in 0..1 + rng.usize(..8) {
                let at = rng.usize(..flipped.len());
                if let Some(b) = flipped.get_mut(at) {
                    *b = match rng.u8(..4) {
                        0 => b'\n',
                        1 => b':',
                        2 => 0xff,
                        _ => rng.u8(..),
                    };
                }
            }
            let _ = parse(&flipped);
            runs += 2;
        }
    }
    assert!(runs > 1000, "{runs} mutated inputs");
}

#[test]
fn hostile_shapes_are_bounded() {
    let mut many = String::from(
        "From: MAILER-DAEMON@x.example\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\n\n--b\nContent-Type: message/delivery-status\n\n",
    );
    for i in 0..5000 {
        many.push_str(&format!(
            "Final-Recipient: rfc822;r{i}@x.example\nAction: failed\nStatus: 5.0.0\n"
        ));
    }
    match parse(many.as_bytes()) {
        Report::Bounce(b) => assert_eq!(b.recipients.len(), super::MAX_RECIPIENTS),
        other => panic!("{other:?}"),
    }
    let long_diag = format!(
        "From: MAILER-DAEMON@x.example\nContent-Type: message/delivery-status\n\nFinal-Recipient: rfc822;a@x.example\nAction: failed\nDiagnostic-Code: smtp; 550 {}\n",
        "y".repeat(100_000)
    );
    match parse(long_diag.as_bytes()) {
        Report::Bounce(b) => {
            let d = b
                .recipients
                .first()
                .and_then(|r| r.diagnostic_code.as_deref())
                .unwrap_or_default();
            assert!(d.len() <= 1024, "{}", d.len());
        }
        other => panic!("{other:?}"),
    }
    for raw in [
        &b""[..],
        b"\n\n\n",
        b":",
        b"From:",
        b"Content-Type: multipart/report\n\n--",
    ] {
        let _ = parse(raw);
    }
}

#[test]
fn scanners() {
    assert_eq!(enhanced_code("#550 5.1.1 RESOLVER"), Some("5.1.1".into()));
    assert_eq!(
        enhanced_code("<mx.example.com #5.1.1>"),
        Some("5.1.1".into())
    );
    assert_eq!(enhanced_code("host [4.2.2.1] said"), None);
    assert_eq!(enhanced_code("v15.20.7633.000"), None);
    assert_eq!(enhanced_code("550-5.1.10 x"), Some("5.1.10".into()));
    assert_eq!(smtp_code("said: 550 5.1.1"), Some((6, 550)));
    assert_eq!(smtp_code("[1.2.3.4]:587: refused"), None);
    assert_eq!(smtp_code("mta1234 and 2024"), None);
    assert_eq!(
        status_from_diagnostic("554 delivery error"),
        Some("5.0.0".into())
    );
    assert_eq!(
        status_from_diagnostic("421 4.7.0 try later"),
        Some("4.7.0".into())
    );
    assert_eq!(address("<Bob@Example.COM>"), Some("Bob@example.com".into()));
    assert_eq!(address("rfc822; a@b"), None);
    assert_eq!(address("no-at-sign"), None);
    assert_eq!(address("a@b@c.example"), None);
    assert_eq!(
        ip_in("mx.example.com[192.0.2.1]:25"),
        Some("192.0.2.1".into())
    );
    assert_eq!(ip_in("[IPv6:2001:db8::1]"), Some("2001:db8::1".into()));
    assert_eq!(ip_in("dns; 192.0.2.9"), None);
    assert_eq!(typed("smtp;550 x"), "smtp; 550 x");
    assert_eq!(typed("dns;  mx.example"), "dns; mx.example");
}

#[test]
fn original_accessors() {
    let o = super::original::read_header_text(
        "From x\nReturn-Path: <b+tok@x.example>\nMessage-Id:\n <id-1@x.example>\nSubject: =?utf-8?q?caf=C3=A9?= ok\n\nbody: no\n",
    );
    assert_eq!(o.get("return-path"), Some("<b+tok@x.example>"));
    assert_eq!(o.message_id(), Some("id-1@x.example"));
    assert_eq!(o.get("Subject"), Some("café ok"));
    assert_eq!(o.get("body"), None);
}
