//! Events as JSON lines, each event's `mail` object written once for the
//! events that share it (a recipient's first attempt gives a `Send` and
//! its outcome with one `mail`): the same bytes as serializing each event
//! on its own, without the second pass over the headers sent. Pure.

use std::sync::Arc;

use super::model::{Event, Mail};

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
                serde_json::to_writer(&mut *out, &*e.mail)?;
                self.last = Some((Arc::clone(&e.mail), out[start..].to_vec()));
            }
        }
        // the body is an object of one key (`{"send":{}}`): its key and
        // value continue the event's object
        let start = out.len();
        serde_json::to_writer(&mut *out, &e.body)?;
        out[start] = b',';
        out.push(b'\n');
        Ok(())
    }
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
