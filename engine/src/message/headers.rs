//! The headers a message went out with, captured once when it is produced,
//! for its events (SES `mail.headers`, `headersTruncated`, the `date` of
//! `commonHeaders`).
//!
//! In: the message as written to DATA, in parts (DKIM-Signature lines, then
//! the MIME message). Out: a compact text, one `Name: value` per line
//! (separated by LF), every header in order, values as on the wire but
//! unfolded (the CRLF of each fold removed, RFC 5322 §2.2.3). At most
//! [`MAX_HEADERS`] bytes (SES caps at 10 KB): headers past that are left
//! out whole and `truncated` is set. Made once per message with the text:
//! SES's `mail.headers` list as JSON (`[{"name":…,"value":…},…]`) and the
//! Date value, which travel in the journal entry's detail, so that neither
//! the recorder nor the event pump escapes or splits the headers again for
//! each recipient. Pure. Exposure: the header bytes derive from recipient
//! data, but were already made safe by the MIME builder (no control
//! characters, so no LF inside a value).

/// Most bytes of header text kept (SES: 10 KB).
pub const MAX_HEADERS: usize = 10 * 1024;

/// The headers of a sent message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SentHeaders {
    /// `Name: value` per header, separated by LF.
    pub text: String,
    /// Headers were left out to stay within [`MAX_HEADERS`].
    pub truncated: bool,
    /// The headers as SES's `mail.headers` JSON list.
    pub json: String,
    /// The value of the first Date header (`commonHeaders.date`).
    pub date: Option<String>,
}

impl SentHeaders {
    /// The header section of a message given as consecutive parts: lines
    /// up to the first empty line.
    pub fn capture(parts: &[&[u8]]) -> SentHeaders {
        let mut h = SentHeaders {
            text: String::with_capacity(2048),
            ..SentHeaders::default()
        };
        // the header being gathered (folds joined)
        let mut current = String::new();
        'parts: for part in parts {
            let end = memchr::memmem::find(part, b"\r\n\r\n").map_or(part.len(), |i| i + 2);
            for line in part[..end].split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.is_empty() {
                    continue;
                }
                let line = String::from_utf8_lossy(line);
                if line.starts_with([' ', '\t']) {
                    current.push_str(&line);
                    continue;
                }
                if !h.push(&current) {
                    current.clear();
                    break 'parts;
                }
                current.clear();
                current.push_str(&line);
            }
            if end < part.len() {
                break; // the empty line: the body follows
            }
        }
        h.push(&current);
        SentHeaders::new(h.text, h.truncated)
    }

    /// The headers of `text` (one `Name: value` per line), with their
    /// JSON list and Date.
    pub fn new(text: String, truncated: bool) -> SentHeaders {
        let mut json = Vec::with_capacity(text.len() + text.len() / 4 + 64);
        json.push(b'[');
        for (i, (name, value)) in fields(&text).enumerate() {
            if i > 0 {
                json.push(b',');
            }
            json.extend_from_slice(b"{\"name\":");
            crate::events::json::string(&mut json, name);
            json.extend_from_slice(b",\"value\":");
            crate::events::json::string(&mut json, value);
            json.push(b'}');
        }
        json.push(b']');
        let date = fields(&text)
            .find(|(n, _)| n.eq_ignore_ascii_case("Date"))
            .map(|(_, v)| v.to_string());
        SentHeaders {
            // JSON of valid UTF-8 strings is valid UTF-8
            json: String::from_utf8(json).unwrap_or_default(),
            date,
            text,
            truncated,
        }
    }

    /// Appends one header; false (and `truncated`) when it does not fit.
    fn push(&mut self, header: &str) -> bool {
        if header.is_empty() {
            return true;
        }
        let sep = usize::from(!self.text.is_empty());
        if self.text.len() + sep + header.len() > MAX_HEADERS {
            self.truncated = true;
            return false;
        }
        if sep == 1 {
            self.text.push('\n');
        }
        self.text.push_str(header);
        true
    }

    /// Each header's name and value, in order (see [`fields`]).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        fields(&self.text)
    }

    /// The value of the first header called `name` (any case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }
}

/// The name and value (leading white space removed) of each header in a
/// [`SentHeaders::text`], in order.
pub fn fields(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.split('\n').filter_map(|line| {
        let (name, value) = line.split_once(':')?;
        Some((name, value.trim_start_matches([' ', '\t'])))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_every_header_in_order_unfolded() {
        let sigs = b"DKIM-Signature: v=1; a=rsa-sha256;\r\n\tb=abc\r\n   def;\r\n";
        let msg = b"From: \"A\" <a@x.test>\r\nSubject: long\r\n subject\r\nTo: r@y.test\r\n\r\nbody: not a header\r\n";
        let h = SentHeaders::capture(&[sigs, msg]);
        assert!(!h.truncated);
        let all: Vec<(&str, &str)> = h.iter().collect();
        assert_eq!(
            all,
            vec![
                ("DKIM-Signature", "v=1; a=rsa-sha256;\tb=abc   def;"),
                ("From", "\"A\" <a@x.test>"),
                ("Subject", "long subject"),
                ("To", "r@y.test"),
            ]
        );
        assert_eq!(h.get("subject"), Some("long subject"));
        assert_eq!(h.get("Date"), None);
    }

    #[test]
    fn headers_past_10_kb_are_left_out_whole() {
        let mut msg = String::new();
        for i in 0..400 {
            msg.push_str(&format!("X-H{i}: {}\r\n", "v".repeat(40)));
        }
        msg.push_str("\r\nbody");
        let h = SentHeaders::capture(&[msg.as_bytes()]);
        assert!(h.truncated);
        assert!(h.text.len() <= MAX_HEADERS);
        let names: Vec<&str> = h.iter().map(|(n, _)| n).collect();
        assert_eq!(names[0], "X-H0");
        assert!(names.len() > 100 && names.len() < 400, "{}", names.len());
        assert!(h.iter().all(|(_, v)| v.len() == 40));
    }
}
