//! Tests of message preparation: header edits and reads, defaults, every
//! refusal by name, hostile bytes that must never panic, line ends.

use super::*;

struct TwoSets;

impl Sets for TwoSets {
    fn exists(&self, name: &str) -> bool {
        name == "main" || name == "tx"
    }
    fn default_set(&self) -> Option<String> {
        Some("main".into())
    }
    fn pool_exists(&self, name: &str) -> bool {
        name == "bulk"
    }
}

fn meta() -> MessageMeta {
    MessageMeta {
        mail_from: "app@example.com".into(),
        source: "smtp".into(),
        user: Some("app".into()),
        add_message_id: false,
    }
}

fn limits() -> Limits {
    Limits {
        max_size: 1 << 20,
        max_recipients: 3,
    }
}

fn prep(raw: &str, rcpts: &[&str]) -> Result<Prepared, Rejected> {
    let rcpts: Vec<String> = rcpts.iter().map(|s| s.to_string()).collect();
    prepare(
        raw.as_bytes(),
        meta(),
        &rcpts,
        &limits(),
        &TwoSets,
        "m1".into(),
        1_700_000_000,
    )
}

#[test]
fn headers_are_edited_and_read() {
    let raw = "From: \"Ada L\" <Ada@Example.COM>\nTo: bob@example.org\nBcc: secret@example.net\nReturn-Path: <x@y.z>\nSubject: =?utf-8?q?caf=C3=A9?=\nX-SES-CONFIGURATION-SET: tx\nX-SES-MESSAGE-TAGS: campaign=welcome, kind=tx\nX-Long: a\n b\n\nbody line\n.dot line\n";
    let p = prep(
        raw,
        &["bob@example.org", "bob@EXAMPLE.org", "carol@example.org"],
    )
    .unwrap();
    let m = String::from_utf8(p.message.clone()).unwrap();
    assert!(m.starts_with("Date: "), "{m}");
    assert!(!m.contains("Bcc") && !m.contains("Return-Path") && !m.contains("X-SES"));
    assert!(m.contains("X-Long: a\r\n b\r\n"));
    assert!(m.ends_with("\r\n\r\nbody line\r\n.dot line\r\n"), "{m:?}");
    assert!(!m.replace("\r\n", "").contains('\n'));
    assert_eq!(p.def.from_addr, "Ada@example.com");
    assert_eq!(p.def.from_name.as_deref(), Some("Ada L"));
    assert_eq!(p.def.subject, "café");
    assert_eq!(p.def.configuration_set.as_deref(), Some("tx"));
    assert_eq!(
        p.def.tags.get("campaign").map(String::as_str),
        Some("welcome")
    );
    assert_eq!(p.def.to.as_deref(), Some("bob@example.org"));
    assert!(!p.def.personalized);
    assert!(p.def.message.as_ref().unwrap().add_message_id);
    // duplicates dropped, domain lower-cased
    assert_eq!(p.rcpts, vec!["bob@example.org", "carol@example.org"]);
    // the stored body gives back both parts
    let stored = p.stored();
    assert_eq!(CampaignDef::from_bytes(&stored).unwrap(), p.def);
    assert_eq!(
        CampaignDef::message_bytes(&stored),
        Some(p.message.as_slice())
    );
}

#[test]
fn defaults_and_additions() {
    let p = prep(
        "Subject: hi\r\nMessage-ID: <a@b>\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\n\r\nx",
        &["b@example.org"],
    )
    .unwrap();
    let m = String::from_utf8(p.message.clone()).unwrap();
    assert!(
        m.starts_with("From: app@example.com\r\nSubject: hi\r\n"),
        "{m}"
    );
    assert!(m.ends_with("\r\n\r\nx\r\n"));
    assert_eq!(p.def.configuration_set.as_deref(), Some("main"));
    assert!(!p.def.message.as_ref().unwrap().add_message_id);
    assert_eq!(p.def.to.as_deref(), Some(crate::campaign::UNDISCLOSED));
    // no header block at all: a body line starts the body
    let p = prep("just text\nmore\n", &["b@example.org"]).unwrap();
    let m = String::from_utf8(p.message).unwrap();
    assert!(m.contains("\r\n\r\njust text\r\nmore\r\n"), "{m}");
}

#[test]
fn refusals_name_the_problem() {
    let e = |raw: &str, rcpts: &[&str]| prep(raw, rcpts).unwrap_err();
    assert_eq!(
        e("X-SES-CONFIGURATION-SET: nope\r\n\r\nx", &["b@example.org"]),
        Rejected::UnknownSet("nope".into())
    );
    assert_eq!(
        e(
            "From: a@example.com\r\nX-Volley-Pool: nope\r\n\r\nx",
            &["b@example.org"]
        ),
        Rejected::UnknownPool("nope".into())
    );
    // a known pool is kept in the definition, the header taken out
    let p = prep(
        "From: a@example.com\r\nX-Volley-Pool: bulk\r\n\r\nx",
        &["b@example.org"],
    )
    .unwrap();
    assert_eq!(p.def.pool.as_deref(), Some("bulk"));
    assert!(!String::from_utf8_lossy(&p.message).contains("X-Volley-Pool"));
    assert!(matches!(
        e("X-SES-MESSAGE-TAGS: a b\r\n\r\nx", &["b@example.org"]),
        Rejected::BadTags(_)
    ));
    assert!(matches!(
        e("X-SES-MESSAGE-TAGS: ses:x=1\r\n\r\nx", &["b@example.org"]),
        Rejected::BadTags(_)
    ));
    assert!(matches!(
        e("From: not an address\r\n\r\nx", &["b@example.org"]),
        Rejected::BadFrom(_)
    ));
    assert_eq!(e("x", &[]), Rejected::NoRecipients);
    assert!(matches!(
        e("x", &["a@b.org", "c@b.org", "d@b.org", "e@b.org"]),
        Rejected::TooManyRecipients { count: 4, limit: 3 }
    ));
    assert!(matches!(
        e("x", &["no-at-sign"]),
        Rejected::BadRecipient { .. }
    ));
    let big = "a".repeat((1 << 20) + 1);
    assert!(matches!(
        e(&big, &["b@example.org"]),
        Rejected::TooLarge { .. }
    ));
    let bomb = "X-A: 1\r\n".repeat(MAX_HEADER_FIELDS + 1);
    assert_eq!(e(&bomb, &["b@example.org"]), Rejected::TooManyFields);
    let mut m = meta();
    m.mail_from.clear();
    let r = prepare(
        b"Subject: x\r\n\r\n",
        m,
        &["b@example.org".into()],
        &limits(),
        &TwoSets,
        "m".into(),
        0,
    );
    assert_eq!(r.unwrap_err(), Rejected::NoFrom);
}

#[test]
fn hostile_bytes_never_panic() {
    let mut seed = 7u64;
    for n in 0..2000 {
        let mut raw = Vec::new();
        for _ in 0..(n % 97) {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let pick = b"From: a@b.org\r\n:\t \x00\xff\xfe=?utf-8?b?";
            raw.push(pick[(seed >> 33) as usize % pick.len()]);
        }
        let _ = prepare(
            &raw,
            meta(),
            &["b@example.org".into()],
            &limits(),
            &TwoSets,
            "m".into(),
            0,
        );
    }
}

#[test]
fn line_ends() {
    assert_eq!(crlf(b"a\nb\rc\r\nd"), b"a\r\nb\r\nc\r\nd\r\n");
    assert_eq!(crlf(b""), b"\r\n");
}
