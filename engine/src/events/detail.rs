//! What a journal entry carries for notification sinks (the entry's opaque
//! `detail` bytes): the rendered subject and the reply/diagnostic fields an
//! SES event needs. Compact JSON with short keys; decoding never fails hard
//! (damaged detail yields an event with the fields it could read).

use serde::{Deserialize, Serialize};

use crate::outcome::Outcome;

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
            subject: subject.to_string(),
            ..Detail::default()
        };
        match outcome {
            Outcome::Delivered { reply } => d.reply = Some(reply.clone()),
            Outcome::Deferred {
                status,
                diagnostic,
                delay_type,
            } => {
                d.status = Some(status.clone());
                d.diagnostic = Some(diagnostic.clone());
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
                d.diagnostic = Some(diagnostic.clone());
                d.bounce_type = Some((*bounce_type).to_string());
                d.bounce_subtype = Some((*bounce_subtype).to_string());
            }
            Outcome::RenderFailed { message } => d.error = Some(message.clone()),
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
