//! What a journal entry carries for notification sinks (the entry's opaque
//! `detail` bytes): the rendered subject and the reply/diagnostic fields an
//! SES event needs. Compact JSON with short keys; decoding never fails hard
//! (damaged detail yields an event with the fields it could read).

use serde::{Deserialize, Serialize};

use crate::outcome::Outcome;

/// Longest subject kept (bytes): a subject rendered from huge variables
/// must not push the outcome fields out of the journal entry.
pub const MAX_SUBJECT: usize = 2048;
/// Longest reply, diagnostic or error kept (bytes).
pub const MAX_TEXT: usize = 8192;

/// `s` cut to at most `max` bytes at a character boundary.
fn capped(s: &str, max: usize) -> String {
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
    /// For deferrals: when the recipient will be given up (ms).
    #[serde(rename = "x", default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
}

impl Detail {
    /// The detail of an outcome.
    pub fn of(outcome: &Outcome, subject: &str, expires_ms: Option<u64>) -> Detail {
        let mut d = Detail {
            subject: capped(subject, MAX_SUBJECT),
            ..Detail::default()
        };
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
        }
        d
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(b: &[u8]) -> Detail {
        serde_json::from_slice(b).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_subject_leaves_the_outcome_fields_intact() {
        let subject = "é".repeat(60_000);
        let outcome = Outcome::Bounced {
            status: "5.1.1".into(),
            diagnostic: "smtp; 550 5.1.1 no such user".into(),
            bounce_type: "Permanent",
            bounce_subtype: "General",
        };
        let d = Detail::of(&outcome, &subject, None);
        let bytes = d.encode();
        assert!(bytes.len() < 16 * 1024, "{}", bytes.len());
        let back = Detail::decode(&bytes);
        assert_eq!(back.bounce_type.as_deref(), Some("Permanent"));
        assert_eq!(back.status.as_deref(), Some("5.1.1"));
        assert!(back.subject.len() <= MAX_SUBJECT && back.subject.starts_with('é'));
    }
}
