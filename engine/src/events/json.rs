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
    out.extend_from_slice(b",\"delivery\":{\"timestamp\":");
    string(out, &d.timestamp);
    out.extend_from_slice(b",\"processingTimeMillis\":");
    // writing to a Vec cannot fail
    let _ = serde_json::to_writer(&mut *out, &d.processing_time_millis);
    out.extend_from_slice(b",\"recipients\":");
    strings(out, &d.recipients);
    out.extend_from_slice(b",\"smtpResponse\":");
    string(out, &d.smtp_response);
    out.extend_from_slice(b",\"reportingMTA\":");
    string(out, &d.reporting_mta);
    out.push(b'}');
}

/// Appends `s` as a JSON string, as serde_json writes it: copied as it is
/// when nothing in it needs an escape (the usual case: addresses, ids,
/// timestamps, SMTP replies).
pub fn string(out: &mut Vec<u8>, s: &str) {
    let plain = s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\');
    if plain {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // writing to a Vec cannot fail
        let _ = serde_json::to_writer(&mut *out, s);
    }
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
