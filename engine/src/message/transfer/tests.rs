//! Unit tests of the transfer encoding: the wire invariants hold and the
//! text decodes back, for clean, hostile and random bodies.

use super::*;

/// Checks the wire invariants; `max_line` is the encoding's line limit.
fn wire_ok(s: &str, max_line: usize) -> Result<(), String> {
    let b = s.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'\r' if b.get(i + 1) != Some(&b'\n') => return Err(format!("bare CR at {i}")),
            b'\n' if i == 0 || b[i - 1] != b'\r' => return Err(format!("bare LF at {i}")),
            b'\r' | b'\n' | b'\t' | 0x20..=0x7E => {}
            _ => return Err(format!("byte {c:#04x} at {i}")),
        }
    }
    if let Some(l) = s.split("\r\n").find(|l| l.len() > max_line) {
        return Err(format!("line of {} octets", l.len()));
    }
    Ok(())
}

fn qp_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'=' if b[i + 1..].starts_with(b"\r\n") => i += 3,
            b'=' => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

fn decode(e: &Encoded<'_>) -> Vec<u8> {
    match e.cte {
        Cte::SevenBit => e.text.as_bytes().to_vec(),
        Cte::QuotedPrintable => qp_decode(&e.text),
        Cte::Base64 => B64.decode(e.text.replace("\r\n", "")).unwrap(),
    }
}

/// Encodes, checks the invariants and that it decodes to the text with CRLF
/// line breaks.
fn round_trip(text: &str) -> Encoded<'_> {
    let e = encode(text);
    let limit = if e.cte == Cte::SevenBit {
        MAX_LINE
    } else {
        QP_LINE
    };
    if let Err(why) = wire_ok(&e.text, limit) {
        panic!("{:?} of {text:?}: {why}\n{:?}", e.cte, e.text);
    }
    assert_eq!(
        String::from_utf8_lossy(&decode(&e)),
        crlf(text),
        "{:?}: {:?}",
        e.cte,
        e.text
    );
    e
}

#[test]
fn clean_text_with_crlf_is_borrowed_7bit() {
    let t = "Hello Ada,\r\n\tnews.\r\n.a dot line\r\n";
    let e = round_trip(t);
    assert_eq!(e.cte, Cte::SevenBit);
    assert!(matches!(e.text, Cow::Borrowed(_)));
}

#[test]
fn lf_line_ends_become_crlf_and_stay_7bit() {
    let e = round_trip("one\ntwo\r\nthree\n");
    assert_eq!(e.cte, Cte::SevenBit);
    assert_eq!(e.text, "one\r\ntwo\r\nthree\r\n");
    // long lines up to 998 octets are still 7bit
    let line = "x".repeat(MAX_LINE);
    assert_eq!(encode(&format!("{line}\n{line}")).cte, Cte::SevenBit);
}

#[test]
fn a_bare_cr_is_data_not_a_line_break() {
    let e = round_trip("a\r.\rMAIL FROM:<x@e.test>\r\n");
    assert_eq!(e.cte, Cte::QuotedPrintable);
    assert_eq!(e.text, "a=0D.=0DMAIL FROM:<x@e.test>\r\n");
}

#[test]
fn nul_and_control_characters_are_escaped() {
    let e = round_trip("nul\0 bell\u{7} del\u{7f} esc\u{1b}\n");
    assert_eq!(e.cte, Cte::QuotedPrintable);
    assert_eq!(e.text, "nul=00 bell=07 del=7F esc=1B\r\n");
}

#[test]
fn lines_over_998_octets_are_broken() {
    let long = "y".repeat(2500);
    let text = format!("short\n{long}\nend");
    assert_eq!(round_trip(&text).cte, Cte::QuotedPrintable);
    // ... also when the long line has no line end after it
    assert_eq!(round_trip(&long).cte, Cte::QuotedPrintable);
    assert_eq!(
        round_trip(&"z".repeat(MAX_LINE + 1)).cte,
        Cte::QuotedPrintable
    );
}

#[test]
fn white_space_before_a_line_break_is_kept_in_qp() {
    let e = round_trip("caf\u{e9} \nend\t");
    assert_eq!(e.cte, Cte::QuotedPrintable);
    assert_eq!(e.text, "caf=C3=A9=20\r\nend=09");
}

#[test]
fn mostly_non_ascii_text_is_base64() {
    let text = "Привет, мир!\n".repeat(40);
    assert_eq!(round_trip(&text).cte, Cte::Base64);
}

#[test]
fn random_bodies_keep_the_invariants() {
    let alphabet: Vec<char> = vec![
        'a', 'b', ' ', '\t', '\r', '\n', '\0', '=', '.', '\u{7f}', '\u{1}', 'é', 'я', '😀',
    ];
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..3000 {
        let len = rng.usize(0..200);
        let mut s = String::new();
        for _ in 0..len {
            let c = alphabet[rng.usize(..alphabet.len())];
            // sometimes a long run, to cross the line limits
            let n = if rng.u8(..) == 0 {
                rng.usize(900..1100)
            } else {
                1
            };
            s.extend(std::iter::repeat_n(c, n));
        }
        round_trip(&s);
    }
}

#[test]
fn the_scan_sees_every_lane() {
    // a special byte in each position of the 64-byte blocks and the tail
    for at in 0..150 {
        for (c, cte) in [
            (b'\r', Cte::QuotedPrintable),
            (0x7F, Cte::QuotedPrintable),
            (0x00, Cte::QuotedPrintable),
            (0x1F, Cte::QuotedPrintable),
            (b'~', Cte::SevenBit),
            (b'\t', Cte::SevenBit),
        ] {
            let mut s = vec![b'a'; 150];
            s[at] = c;
            let text = String::from_utf8(s).unwrap();
            assert_eq!(encode(&text).cte, cte, "{c:#x} at {at}");
        }
        let mut s = "a".repeat(150);
        s.insert(at, '\u{e9}');
        assert_ne!(encode(&s).cte, Cte::SevenBit, "8-bit at {at}");
    }
}

#[test]
fn line_length_counts_octets_before_the_line_break() {
    for (len, cte) in [
        (MAX_LINE, Cte::SevenBit),
        (MAX_LINE + 1, Cte::QuotedPrintable),
    ] {
        let line = "x".repeat(len);
        for text in [
            format!("{line}\r\nend"),
            format!("{line}\nend"),
            format!("a\r\n{line}"),
            format!("a\n{line}\r\n"),
        ] {
            assert_eq!(encode(&text).cte, cte, "{len} octets in {:?}", &text[..4]);
        }
    }
}

/// Whether `text` may go as `7bit`, by the definition, a byte at a time.
fn clean_by_definition(text: &str) -> bool {
    let b = text.as_bytes();
    let bytes_ok = b.iter().enumerate().all(|(i, &c)| match c {
        b'\r' => b.get(i + 1) == Some(&b'\n'),
        b'\t' | b'\n' | 0x20..=0x7E => true,
        _ => false,
    });
    bytes_ok
        && text
            .split('\n')
            .all(|l| l.strip_suffix('\r').unwrap_or(l).len() <= MAX_LINE)
}

#[test]
fn seven_bit_exactly_when_clean() {
    // clean text mostly, lines near the limit, and the odd stray byte, at
    // every offset of the 64-byte blocks
    let mut rng = fastrand::Rng::with_seed(11);
    let mut clean = [0usize; 2];
    for _ in 0..20_000 {
        let mut s = String::new();
        while s.len() < rng.usize(0..2_200) {
            match rng.u8(..16) {
                0 => s.push('\r'),
                1 => s.push('\n'),
                2 => s.push_str("\r\n"),
                3 if rng.u8(..8) == 0 => s.push(['\0', '\u{7f}', '\u{1f}', 'é'][rng.usize(..4)]),
                4 => s.extend(std::iter::repeat_n('x', rng.usize(990..1_000))),
                _ => s.push_str("word "),
            }
        }
        let e = encode(&s);
        let want = clean_by_definition(&s);
        clean[usize::from(want)] += 1;
        assert_eq!(e.cte == Cte::SevenBit, want, "{s:?}");
        if e.cte == Cte::SevenBit {
            assert_eq!(e.text, s.replace("\r\n", "\n").replace('\n', "\r\n"));
        }
    }
    // both answers, many times over
    assert!(clean.iter().all(|&n| n > 2_000), "{clean:?}");
}

#[test]
fn a_cr_at_a_block_edge() {
    // a CR as the last byte of a 64-byte block: with its LF in the next
    // block it is a line end; ending the text, or before another byte, it
    // is bare
    for blocks in 1..4 {
        let head = "a".repeat(64 * blocks - 1);
        assert_eq!(encode(&format!("{head}\r\nb")).cte, Cte::SevenBit);
        assert_eq!(encode(&format!("{head}\r")).cte, Cte::QuotedPrintable);
        assert_eq!(encode(&format!("{head}\rb")).cte, Cte::QuotedPrintable);
        let text = format!("{head}\n.");
        assert_eq!(encode(&text).text, format!("{head}\r\n."));
    }
}
