//! Events as JSON lines, each event's `mail` object written once for the
//! events that share it (a recipient's first attempt gives a `Send` and
//! its outcome with one `mail`): the same bytes as serializing each event
//! on its own, without the second pass over the headers sent. The `mail`
//! object and the commonest bodies (`send`, `delivery`) are written
//! straight from their parts ([`Mail::write_json`]): a campaign's fixed
//! fields were written as JSON once, and a string with nothing to escape
//! is copied as it is ([`string`]). Pure.

use std::sync::Arc;

use super::model::{Body, Delivery, Event, Mail};

/// Writes events as JSON lines, remembering the last `mail` written.
#[derive(Default)]
pub struct Lines {
    last: Option<(Arc<Mail>, Vec<u8>)>,
}

impl Lines {
    /// Appends `e` as one line (JSON and LF) to `out`.
    pub fn write(&mut self, e: &Event, out: &mut Vec<u8>) -> serde_json::Result<()> {
        out.extend_from_slice(b"{\"eventType\":");
        serde_json::to_writer(&mut *out, e.event_type)?;
        out.extend_from_slice(b",\"mail\":");
        match &self.last {
            Some((m, json)) if Arc::ptr_eq(m, &e.mail) => out.extend_from_slice(json),
            _ => {
                let start = out.len();
                e.mail.write_json(out)?;
                self.last = Some((Arc::clone(&e.mail), out[start..].to_vec()));
            }
        }
        match &e.body {
            Body::Send(_) => out.extend_from_slice(b",\"send\":{}"),
            Body::Delivery(d) => delivery(out, d),
            body => {
                // the body is an object of one key (`{"send":{}}`): its
                // key and value continue the event's object
                let start = out.len();
                serde_json::to_writer(&mut *out, body)?;
                out[start] = b',';
                out.pop(); // its closing brace: the event's follows
            }
        }
        out.extend_from_slice(b"}\n");
        Ok(())
    }
}

/// Appends `,"delivery":{…}`, as serde writes it.
fn delivery(out: &mut Vec<u8>, d: &Delivery) {
    field(out, b",\"delivery\":{\"timestamp\":", &d.timestamp);
    out.extend_from_slice(b",\"processingTimeMillis\":");
    // writing to a Vec cannot fail
    let _ = serde_json::to_writer(&mut *out, &d.processing_time_millis);
    out.extend_from_slice(b",\"recipients\":");
    strings(out, &d.recipients);
    field(out, b",\"smtpResponse\":", &d.smtp_response);
    field(out, b",\"reportingMTA\":", &d.reporting_mta);
    out.push(b'}');
}

/// Appends `key` (JSON written as it is: the name, its colon and what
/// comes before) and then `value` as a JSON string.
pub fn field(out: &mut Vec<u8>, key: &[u8], value: &str) {
    out.extend_from_slice(key);
    string(out, value);
}

/// Appends `s` as a JSON string, as serde_json writes it: copied as it is
/// when nothing in it needs an escape (the usual case: addresses, ids,
/// timestamps, SMTP replies).
pub fn string(out: &mut Vec<u8>, s: &str) {
    if !needs_escape(s.as_bytes()) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // writing to a Vec cannot fail
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// Whether any byte of `b` is one JSON escapes (a control character, `"`
/// or `\`), looked for eight bytes at a time.
fn needs_escape(b: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // a byte of `x` below `n` (n <= 128) sets its high bit here; a set bit
    // above a true one may be false, which does not matter for "any"
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGH;
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let x = u64::from_le_bytes(w);
        let hits = below(x, 0x20)
            | below(x ^ (ONES * u64::from(b'"')), 1)
            | below(x ^ (ONES * u64::from(b'\\')), 1);
        if hits != 0 {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&c| c < 0x20 || c == b'"' || c == b'\\')
}

/// Appends a list of strings as a JSON array.
pub fn strings(out: &mut Vec<u8>, list: &[String]) {
    out.push(b'[');
    for (i, s) in list.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, s);
    }
    out.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::model::tests::sample_events;

    #[test]
    fn strings_are_written_as_serde_writes_them() {
        let mut cases: Vec<String> = vec![
            String::new(),
            "plain@example.com".into(),
            "2026-12-02T12:00:00.000Z".into(),
            "caf\u{e9} \u{1F600} \u{7f}".into(),
        ];
        // each escaped byte at each place of a 17-byte string
        for c in [0u8, 0x1f, b'"', b'\\', b'\n', b'\t'] {
            for at in 0..17 {
                let mut s = vec![b'a'; 17];
                s[at] = c;
                cases.push(String::from_utf8(s).unwrap());
            }
        }
        // bytes next to the escaped ones, and high bytes
        for c in [0x20u8, b'!', b'#', b'[', b']', 0x7f] {
            cases.push(String::from_utf8(vec![c; 19]).unwrap());
        }
        cases.push("\u{80}\u{800}\u{10000}\u{ffff}".repeat(3));
        for s in &cases {
            let mut out = Vec::new();
            string(&mut out, s);
            assert_eq!(out, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn lines_are_the_events_serialized_one_by_one() {
        let events = sample_events();
        assert!(events.len() >= 12);
        // a Send and its outcome share their mail
        assert!(
            events
                .windows(2)
                .any(|w| Arc::ptr_eq(&w[0].mail, &w[1].mail))
        );
        let mut lines = Lines::default();
        let mut out = Vec::new();
        for e in &events {
            lines.write(e, &mut out).unwrap();
        }
        let mut want = Vec::new();
        for e in &events {
            serde_json::to_writer(&mut want, e).unwrap();
            want.push(b'\n');
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            String::from_utf8(want).unwrap()
        );
    }
}
