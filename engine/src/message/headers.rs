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

use std::borrow::Cow;

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
        let (text, truncated) = gather(parts, false);
        match String::from_utf8(text) {
            Ok(text) => SentHeaders::new(text, truncated),
            // bytes that are not UTF-8 (a ready-made message's 8-bit
            // headers): each line made valid before it is measured
            Err(_) => {
                let (text, truncated) = gather(parts, true);
                // valid already: lines made so, joined at their ends
                SentHeaders::new(String::from_utf8_lossy(&text).into_owned(), truncated)
            }
        }
    }

    /// The headers of `text` (one `Name: value` per line), with their
    /// JSON list and Date.
    pub fn new(text: String, truncated: bool) -> SentHeaders {
        let mut json = Vec::with_capacity(text.len() + text.len() / 4 + 64);
        let mut date = None;
        json.push(b'[');
        for (i, (name, value)) in fields(&text).enumerate() {
            if i > 0 {
                json.push(b',');
            }
            if date.is_none() && name.eq_ignore_ascii_case("Date") {
                date = Some(value.to_string());
            }
            json.extend_from_slice(b"{\"name\":");
            crate::events::json::string(&mut json, name);
            json.extend_from_slice(b",\"value\":");
            crate::events::json::string(&mut json, value);
            json.push(b'}');
        }
        json.push(b']');
        SentHeaders {
            // JSON of valid UTF-8 strings is valid UTF-8
            json: String::from_utf8(json).unwrap_or_default(),
            date,
            text,
            truncated,
        }
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

/// The header lines of `parts` (up to the first empty line), each with
/// its line ending removed.
fn header_lines<'a>(parts: &[&'a [u8]]) -> impl Iterator<Item = &'a [u8]> {
    let mut done = false;
    parts.iter().flat_map(move |part| {
        let end = if done {
            0
        } else {
            match memchr::memmem::find(part, b"\r\n\r\n") {
                Some(i) => {
                    done = true; // the empty line: the body follows
                    i + 2
                }
                None => part.len(),
            }
        };
        part[..end]
            .split(|&b| b == b'\n')
            .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
            .filter(|line| !line.is_empty())
    })
}

/// The compact text of the headers in `parts` as bytes, and whether
/// headers were left out: each header unfolded, whole or not at all, up
/// to [`MAX_HEADERS`]. With `lossy`, each line is made valid UTF-8
/// (invalid bytes replaced) before it is measured.
fn gather(parts: &[&[u8]], lossy: bool) -> (Vec<u8>, bool) {
    let mut text = Vec::with_capacity(2048);
    // where the header being gathered starts (its separator included)
    let mut current = 0;
    for line in header_lines(parts) {
        let line = match lossy {
            true => match String::from_utf8_lossy(line) {
                Cow::Owned(valid) => Cow::Owned(valid.into_bytes()),
                Cow::Borrowed(_) => Cow::Borrowed(line),
            },
            false => Cow::Borrowed(line),
        };
        let fold = line[0] == b' ' || line[0] == b'\t';
        if !fold {
            current = text.len();
            if !text.is_empty() {
                text.push(b'\n');
            }
        }
        if text.len() + line.len() > MAX_HEADERS {
            text.truncate(current);
            return (text, true);
        }
        text.extend_from_slice(&line);
    }
    (text, false)
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
    fn bytes_that_are_not_utf8_are_replaced_and_a_fold_may_start_a_part() {
        let h = SentHeaders::capture(&[
            b"X-A: caf\xe9\r\n\tau lait\r\n",
            b"\tfin\r\nSubject: s\r\n\r\nX-Not: body\r\n",
            b"X-Not: later part\r\n",
        ]);
        assert_eq!(h.text, "X-A: caf\u{fffd}\tau lait\tfin\nSubject: s");
        assert!(!h.truncated);
        let list: serde_json::Value = serde_json::from_str(&h.json).unwrap();
        assert_eq!(list[0]["value"], "caf\u{fffd}\tau lait\tfin");
        assert_eq!(list.as_array().unwrap().len(), 2);
        assert_eq!(h.date, None);
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
