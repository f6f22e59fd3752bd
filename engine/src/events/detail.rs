//! What a journal entry carries for notification sinks (the entry's opaque
//! `detail` bytes): the rendered subject, the headers the message went out
//! with (SES's `mail.headers` list as JSON, made once per message, and the
//! Date; entries of earlier versions carry the headers as text), and the
//! reply/diagnostic fields an SES event needs. Compact JSON with short
//! keys; decoding never fails hard (damaged detail yields an event with
//! the fields it could read).
//!
//! Size: a journal entry holds at most 64 KiB. The texts are capped (subject
//! 2 KiB, reply and diagnostics 8 KiB, headers 10 KiB); should the encoded
//! detail still pass [`MAX_DETAIL`] (JSON escapes), the headers are left out
//! (`headersTruncated`) and then the texts cut further, so the outcome
//! fields always fit.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::message::headers::SentHeaders;
use crate::outcome::Outcome;

/// Longest subject kept (bytes): a subject rendered from huge variables
/// must not push the outcome fields out of the journal entry.
pub const MAX_SUBJECT: usize = 2048;
/// Longest reply, diagnostic or error kept (bytes).
pub const MAX_TEXT: usize = 8192;
/// Most bytes of encoded detail: a journal entry's 64 KiB less its fixed
/// part and the longest address it stores.
pub const MAX_DETAIL: usize = 62 * 1024;

/// `s` cut to at most `max` bytes at a character boundary.
pub fn capped(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Detail {
    #[serde(rename = "s", default, skip_serializing_if = "String::is_empty")]
    pub subject: String,
    /// Final SMTP reply of a delivery.
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    #[serde(rename = "st", default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    pub diagnostic: Option<String>,
    #[serde(rename = "bt", default, skip_serializing_if = "Option::is_none")]
    pub bounce_type: Option<String>,
    #[serde(rename = "bs", default, skip_serializing_if = "Option::is_none")]
    pub bounce_subtype: Option<String>,
    #[serde(rename = "dt", default, skip_serializing_if = "Option::is_none")]
    pub delay_type: Option<String>,
    /// Render failure message.
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why an operator rejected it (a `Reject` event; journaled as a
    /// failure).
    #[serde(rename = "rj", default, skip_serializing_if = "Option::is_none")]
    pub reject: Option<String>,
    /// For deferrals: when the recipient will be given up (ms).
    #[serde(rename = "x", default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
    /// The headers the message went out with, as text
    /// ([`SentHeaders::text`]): written by earlier versions, read still.
    #[serde(rename = "h", default, skip_serializing_if = "String::is_empty")]
    pub headers: String,
    /// The headers the message went out with, as SES's `mail.headers`
    /// list ([`SentHeaders::json`]); none when no message was produced
    /// (rendering or lookup failures) or it had no Date.
    #[serde(rename = "hl", default, skip_serializing_if = "Option::is_none")]
    pub headers_json: Option<Json>,
    /// Their Date value (`commonHeaders.date`).
    #[serde(rename = "hd", default, skip_serializing_if = "Option::is_none")]
    pub headers_date: Option<String>,
    /// Headers were left out (SES `headersTruncated`).
    #[serde(rename = "ht", default, skip_serializing_if = "std::ops::Not::not")]
    pub headers_truncated: bool,
    /// When the recipient was accepted into the spool (ms): its events'
    /// `mail.timestamp`, kept here because its record may be gone by the
    /// time they are published.
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    pub accepted_ms: Option<u64>,
    /// A feedback entry's report (bounce, complaint, unsubscribe).
    #[serde(rename = "fb", default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<Box<super::feedback::Feedback>>,
}

/// JSON kept as it was written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Json(pub Box<RawValue>);

impl PartialEq for Json {
    fn eq(&self, other: &Json) -> bool {
        self.0.get() == other.0.get()
    }
}

impl Eq for Json {}

impl Detail {
    /// The detail of an outcome of a message sent with `headers` (if one
    /// was produced).
    pub fn of(
        outcome: &Outcome,
        subject: &str,
        expires_ms: Option<u64>,
        headers: Option<&SentHeaders>,
    ) -> Detail {
        let mut d = Detail {
            subject: capped(subject, MAX_SUBJECT),
            ..Detail::default()
        };
        if let Some(h) = headers {
            d.set_headers(h);
        }
        match outcome {
            Outcome::Delivered { reply } => d.reply = Some(capped(reply, MAX_TEXT)),
            Outcome::Deferred {
                status,
                diagnostic,
                delay_type,
            } => {
                d.status = Some(status.clone());
                d.diagnostic = Some(capped(diagnostic, MAX_TEXT));
                d.delay_type = Some((*delay_type).to_string());
                d.expires_ms = expires_ms;
            }
            Outcome::Bounced {
                status,
                diagnostic,
                bounce_type,
                bounce_subtype,
            } => {
                d.status = Some(status.clone());
                d.diagnostic = Some(capped(diagnostic, MAX_TEXT));
                d.bounce_type = Some((*bounce_type).to_string());
                d.bounce_subtype = Some((*bounce_subtype).to_string());
            }
            Outcome::RenderFailed { message } => d.error = Some(capped(message, MAX_TEXT)),
            Outcome::Rejected { reason } => d.reject = Some(capped(reason, MAX_TEXT)),
        }
        d
    }

    /// Carries `h` as the headers sent (none without a Date: the events
    /// then name the headers the message started with).
    fn set_headers(&mut self, h: &SentHeaders) {
        self.headers_truncated = h.truncated;
        if let Some(date) = &h.date {
            self.headers_json = RawValue::from_string(h.json.clone()).ok().map(Json);
            self.headers_date = Some(date.clone());
        }
    }

    fn has_headers(&self) -> bool {
        !self.headers.is_empty() || self.headers_json.is_some()
    }

    /// The JSON bytes, at most [`MAX_DETAIL`] long.
    pub fn encode(&self) -> Vec<u8> {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        if bytes.len() <= MAX_DETAIL {
            return bytes;
        }
        // escapes made it too long (rare): headers go first, then text
        let mut d = self.clone();
        if d.has_headers() {
            d.headers.clear();
            d.headers_json = None;
            d.headers_date = None;
            d.headers_truncated = true;
            let bytes = serde_json::to_vec(&d).unwrap_or_default();
            if bytes.len() <= MAX_DETAIL {
                return bytes;
            }
        }
        // each text at most 1 KiB, 6 KiB escaped: well within the limit
        d.subject = capped(&d.subject, 1024);
        for t in [&mut d.reply, &mut d.diagnostic, &mut d.error]
            .into_iter()
            .flatten()
        {
            *t = capped(t, 1024);
        }
        serde_json::to_vec(&d).unwrap_or_default()
    }

    /// [`Detail::encode`] of this detail with `headers` as its headers
    /// sent, spliced as they were written once for their message (the
    /// recipients of one message share them).
    pub fn encode_sent(mut self, headers: &SentHeaders) -> Vec<u8> {
        self.headers_truncated = headers.truncated;
        let mut bytes = serde_json::to_vec(&self).unwrap_or_default();
        if let Some(date) = &headers.date
            && bytes.last() == Some(&b'}')
        {
            bytes.pop();
            if bytes.len() > 1 {
                bytes.push(b',');
            }
            bytes.extend_from_slice(b"\"hl\":");
            bytes.extend_from_slice(headers.json.as_bytes());
            bytes.extend_from_slice(b",\"hd\":");
            super::json::string(&mut bytes, date);
            bytes.push(b'}');
        }
        if bytes.len() <= MAX_DETAIL {
            return bytes;
        }
        self.set_headers(headers);
        self.encode()
    }

    pub fn decode(b: &[u8]) -> Detail {
        serde_json::from_slice(b).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Headers, an outcome and a subject of control characters, which
    /// JSON escapes to six bytes each: too long for a detail escaped.
    fn worst_case() -> (SentHeaders, Outcome, String) {
        let text = format!(
            "Date: Mon, 1 Jan 2024 00:00:00 +0000\nX-Junk: {}",
            "\u{1}".repeat(crate::message::headers::MAX_HEADERS - 60)
        );
        let headers = SentHeaders::new(text, false);
        let o = Outcome::Bounced {
            status: "5.1.1".into(),
            diagnostic: "\u{1}".repeat(MAX_TEXT),
            bounce_type: "Permanent",
            bounce_subtype: "General",
        };
        (headers, o, "\u{1}".repeat(MAX_SUBJECT))
    }

    #[test]
    fn huge_subject_leaves_the_outcome_fields_intact() {
        let subject = "é".repeat(60_000);
        let outcome = Outcome::Bounced {
            status: "5.1.1".into(),
            diagnostic: "smtp; 550 5.1.1 no such user".into(),
            bounce_type: "Permanent",
            bounce_subtype: "General",
        };
        let d = Detail::of(&outcome, &subject, None, None);
        let bytes = d.encode();
        assert!(bytes.len() < 16 * 1024, "{}", bytes.len());
        let back = Detail::decode(&bytes);
        assert_eq!(back.bounce_type.as_deref(), Some("Permanent"));
        assert_eq!(back.status.as_deref(), Some("5.1.1"));
        assert!(back.subject.len() <= MAX_SUBJECT && back.subject.starts_with('é'));
    }

    #[test]
    fn headers_travel_and_escapes_never_push_the_detail_past_its_cap() {
        let headers = SentHeaders::new(
            "From: a@x.test\nSubject: \"quoted\"\nDate: Mon, 1 Jan 2024 00:00:00 +0000".into(),
            false,
        );
        let o = Outcome::Delivered {
            reply: "250 ok".into(),
        };
        let back = Detail::decode(&Detail::of(&o, "s", None, Some(&headers)).encode());
        assert_eq!(
            back.headers_json.map(|j| j.0.get().to_string()),
            Some(headers.json.clone())
        );
        assert_eq!(back.headers_date, headers.date);
        assert!(!back.headers_truncated);
        let list: serde_json::Value = serde_json::from_str(&headers.json).unwrap();
        assert_eq!(
            list[1],
            serde_json::json!({"name": "Subject", "value": "\"quoted\""})
        );
        // control characters escape to six bytes each in JSON
        let (worst, o, subject) = worst_case();
        let bytes = Detail::of(&o, &subject, None, Some(&worst)).encode();
        assert!(bytes.len() <= MAX_DETAIL, "{}", bytes.len());
        let back = Detail::decode(&bytes);
        assert!(back.headers_truncated);
        assert_eq!(back.bounce_type.as_deref(), Some("Permanent"));
        assert!(back.diagnostic.unwrap().starts_with('\u{1}'));
    }

    #[test]
    fn headers_spliced_decode_as_the_detail_with_them() {
        let headers = SentHeaders::new(
            "From: \"A\" <a@x.test>\nSubject: caf\u{e9} \\ \u{1}\nDate: Mon, 1 Jan 2024 00:00:00 +0000"
                .into(),
            true,
        );
        for o in [
            Outcome::Delivered {
                reply: "250 ok".into(),
            },
            Outcome::RenderFailed {
                message: String::new(),
            },
        ] {
            let mut d = Detail::of(&o, "", Some(7), None);
            d.accepted_ms = Some(5);
            let bytes = d.encode_sent(&headers);
            let want = Detail::of(&o, "", Some(7), Some(&headers));
            let want = Detail {
                accepted_ms: Some(5),
                ..want
            };
            assert_eq!(Detail::decode(&bytes), want);
        }
        // headers too long once escaped: the general path leaves them out
        let (worst, o, subject) = worst_case();
        let d = Detail::of(&o, &subject, None, None);
        let bytes = d.encode_sent(&worst);
        assert!(bytes.len() <= MAX_DETAIL, "{}", bytes.len());
        assert!(Detail::decode(&bytes).headers_truncated);
    }
}
