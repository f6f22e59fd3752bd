//! Unit tests of MIME assembly: whatever the rendered values hold, the
//! message is 7-bit with CRLF line ends, and each part's declared transfer
//! encoding fits its content.

use super::*;

fn def() -> CampaignDef {
    CampaignDef {
        id: "t".into(),
        from: "News <news@example.com>".into(),
        from_name: Some("News\r\nBcc: evil@x.test".into()),
        from_addr: "news@example.com".into(),
        reply_to: Some("Help <help@example.com>".into()),
        subject: "s".into(),
        html: None,
        text: None,
        list_unsubscribe: None,
        tags: Default::default(),
        columns: vec![],
        personalized: true,
        to: None,
        configuration_set: None,
        message: None,
        list_management: None,
        pool: None,
    }
}

fn rendered(subject: &str, text: Option<&str>, html: Option<&str>) -> Rendered {
    Rendered {
        subject: subject.into(),
        text: text.map(String::from),
        html: html.map(String::from),
        list_unsubscribe: Some("https://example.com/u?e=r@x.test".into()),
        list_unsubscribe_mailto: None,
    }
}

/// Every CR starts a CRLF, every LF ends one; no NUL, no 8-bit byte, no
/// other control character but TAB; no line over 998 octets.
fn assert_wire_safe(m: &[u8]) {
    for (i, &c) in m.iter().enumerate() {
        let ok = match c {
            b'\r' => m.get(i + 1) == Some(&b'\n'),
            b'\n' => i > 0 && m[i - 1] == b'\r',
            b'\t' | 0x20..=0x7E => true,
            _ => false,
        };
        assert!(
            ok,
            "byte {c:#04x} at {i}: {:?}",
            String::from_utf8_lossy(&m[i.saturating_sub(40)..(i + 40).min(m.len())])
        );
    }
    let text = String::from_utf8_lossy(m);
    assert!(text.split("\r\n").all(|l| l.len() <= 998));
}

/// The declared transfer encodings, in order.
fn encodings(m: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(m)
        .split("\r\n")
        .filter_map(|l| l.strip_prefix("Content-Transfer-Encoding: "))
        .map(String::from)
        .collect()
}

#[test]
fn hostile_variables_cannot_break_the_wire_form() {
    let smuggle = "a\r.\rMAIL FROM:<x@e.test>\r\n.\r\nRCPT TO:<y@e.test>\n";
    let text = format!("Hello {smuggle} nul\0 esc\u{1b} {}\n", "w".repeat(1500));
    let html = "<p>caf\u{e9}\r</p>\n";
    let r = rendered("Hi\r\nBcc: evil@x.test\0!", Some(&text), Some(html));
    let m = build(&def(), "r@x.test", &r, "id@example.com", 1_700_000_000).unwrap();
    assert_wire_safe(&m);
    assert_eq!(encodings(&m), ["quoted-printable", "quoted-printable"]);
    let s = String::from_utf8_lossy(&m);
    // the smuggled CRs are data, not line ends
    assert!(s.contains("a=0D.=0DMAIL FROM:<x@e.test>\r\n.\r\nRCPT TO:<y@e.test>\r\n"));
    assert!(s.contains("nul=00 esc=1B"));
    // no value added a header line
    assert!(!s.contains("\r\nBcc:"), "{s}");
    assert!(s.contains("Subject: Hi  Bcc: evil@x.test !\r\n"), "{s}");
}

#[test]
fn clean_bodies_stay_7bit_with_crlf() {
    let r = rendered("Hi", Some("Hello\nworld\n.dot\n"), None);
    let m = build(&def(), "r@x.test", &r, "id@example.com", 1_700_000_000).unwrap();
    assert_wire_safe(&m);
    assert_eq!(encodings(&m), ["7bit"]);
    assert!(m.ends_with(b"\r\n\r\nHello\r\nworld\r\n.dot\r\n"));
}

#[test]
fn header_text_replaces_control_characters_only() {
    assert!(matches!(header_text("Grüße, Ada"), Cow::Borrowed(_)));
    assert_eq!(header_text("a\r\nb\0c\td\u{7f}"), "a  b c d ");
}

#[test]
fn addresses_that_cannot_be_written_are_refused() {
    let r = rendered("Hi", Some("x"), None);
    let e = build(&def(), "r@x.test\r\nBcc: y@z.test", &r, "id@example.com", 0).unwrap_err();
    assert!(e.contains("cannot be written"), "{e}");
}
