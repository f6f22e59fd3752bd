//! One suppression entry and the checks every entry passes before it is
//! stored (pure).
//!
//! Normalization: an address is trimmed and lower-cased as a whole (local
//! part included, Unicode lower case; as the major mailbox providers treat
//! addresses, and so that `A@X` and `a@x` are one entry). It must be
//! `local@domain` (split at the last `@`) with a non-empty local part, a
//! non-empty domain without spaces, no control characters anywhere, and
//! at most [`MAX_EMAIL`] bytes. Message id, feedback id and topic are
//! trimmed (empty means absent), at most [`MAX_FIELD`] bytes, without
//! control characters; topics are compared exactly (case-sensitive).
//!
//! Exposure: entries come from CSV imports, API requests and inbound
//! bounce and complaint reports: all hostile. A bad value is a typed error
//! naming it, never a panic.

use std::fmt;
use std::str::FromStr;

use super::error::{SuppressionError, quote};

/// Longest normalized address, in bytes.
pub const MAX_EMAIL: usize = 320;
/// Longest message id, feedback id or topic, in bytes.
pub const MAX_FIELD: usize = 1024;

/// Why an address is suppressed (SES's `Reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    Bounce,
    Complaint,
    /// The recipient unsubscribed (one-click or `mailto:`); with a topic,
    /// from that topic only.
    Unsubscribe,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Bounce => "BOUNCE",
            Reason::Complaint => "COMPLAINT",
            Reason::Unsubscribe => "UNSUBSCRIBE",
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            Reason::Bounce => 1,
            Reason::Complaint => 2,
            Reason::Unsubscribe => 3,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Reason> {
        match code {
            1 => Some(Reason::Bounce),
            2 => Some(Reason::Complaint),
            3 => Some(Reason::Unsubscribe),
            _ => None,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Reason {
    type Err = SuppressionError;

    /// `BOUNCE`, `COMPLAINT` or `UNSUBSCRIBE`, in any case, surrounding spaces ignored.
    fn from_str(s: &str) -> Result<Reason, SuppressionError> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("BOUNCE") {
            Ok(Reason::Bounce)
        } else if t.eq_ignore_ascii_case("COMPLAINT") {
            Ok(Reason::Complaint)
        } else if t.eq_ignore_ascii_case("UNSUBSCRIBE") {
            Ok(Reason::Unsubscribe)
        } else {
            Err(SuppressionError::InvalidField {
                field: "reason",
                value: quote(s),
                why: "expected BOUNCE, COMPLAINT or UNSUBSCRIBE",
            })
        }
    }
}

/// One suppressed address (SES's `SuppressedDestination`), or one
/// list-level unsubscribe when `topic` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Normalized once stored (see the module header).
    pub email: String,
    pub reason: Reason,
    /// Last update time, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The SES message id of the message that caused the entry.
    pub message_id: Option<String>,
    pub feedback_id: Option<String>,
    /// Set: suppresses only mail for this topic (list); absent: all mail.
    pub topic: Option<String>,
}

impl Entry {
    /// An entry suppressing all mail to `email`, without ids.
    pub fn new(email: impl Into<String>, reason: Reason, at_ms: u64) -> Entry {
        Entry {
            email: email.into(),
            reason,
            at_ms,
            message_id: None,
            feedback_id: None,
            topic: None,
        }
    }

    /// The entry with every field checked and normalized.
    pub(crate) fn normalized(self) -> Result<Entry, SuppressionError> {
        Ok(Entry {
            email: normalize_email(&self.email)?,
            reason: self.reason,
            at_ms: self.at_ms,
            message_id: field("message id", self.message_id)?,
            feedback_id: field("feedback id", self.feedback_id)?,
            topic: field("topic", self.topic)?,
        })
    }
}

/// Which entries [`super::SuppressionList::list`] visits: all conditions
/// given must hold; times are inclusive bounds on `at_ms`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    pub reason: Option<Reason>,
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
}

impl ListFilter {
    pub fn matches(&self, e: &Entry) -> bool {
        self.reason.is_none_or(|r| r == e.reason)
            && self.since_ms.is_none_or(|t| e.at_ms >= t)
            && self.until_ms.is_none_or(|t| e.at_ms <= t)
    }
}

fn bad(value: &str, why: &'static str) -> SuppressionError {
    SuppressionError::InvalidAddress {
        value: quote(value),
        why,
    }
}

/// The stored form of `raw` (see the module header), or why it is not an
/// address.
pub fn normalize_email(raw: &str) -> Result<String, SuppressionError> {
    let t = raw.trim();
    if t.len() > MAX_EMAIL {
        return Err(bad(raw, "longer than 320 bytes"));
    }
    if t.chars().any(char::is_control) {
        return Err(bad(raw, "contains a control character"));
    }
    let Some((local, domain)) = t.rsplit_once('@') else {
        return Err(bad(raw, "missing @"));
    };
    if local.is_empty() {
        return Err(bad(raw, "empty local part"));
    }
    if domain.is_empty() {
        return Err(bad(raw, "empty domain"));
    }
    if domain.chars().any(char::is_whitespace) {
        return Err(bad(raw, "space in the domain"));
    }
    let lower = if t.is_ascii() {
        t.to_ascii_lowercase()
    } else {
        t.to_lowercase()
    };
    if lower.len() > MAX_EMAIL {
        return Err(bad(raw, "longer than 320 bytes once lower-cased"));
    }
    Ok(lower)
}

/// A trimmed optional field: `None` when absent or empty.
fn field(name: &'static str, v: Option<String>) -> Result<Option<String>, SuppressionError> {
    let Some(v) = v else { return Ok(None) };
    let t = v.trim();
    if t.is_empty() {
        return Ok(None);
    }
    let err = |why| SuppressionError::InvalidField {
        field: name,
        value: quote(&v),
        why,
    };
    if t.len() > MAX_FIELD {
        return Err(err("longer than 1024 bytes"));
    }
    if t.chars().any(char::is_control) {
        return Err(err("contains a control character"));
    }
    Ok(Some(if t.len() == v.len() { v } else { t.to_string() }))
}

/// `topic` trimmed, `None` when absent or empty (as stored).
pub(crate) fn topic_key(topic: Option<&str>) -> Option<&str> {
    topic.map(str::trim).filter(|t| !t.is_empty())
}
