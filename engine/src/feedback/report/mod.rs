//! Classifies a message received at the bounce/feedback address: a bounce
//! (RFC 3464 DSN, or the text of a known MTA), a complaint (RFC 5965 ARF,
//! JMRP-style text, provider complaint), an auto-reply, or unrecognized.
//!
//! In: the raw bytes of the received message. Out: [`Report`], with the
//! header fields of the original message ([`Original`]) when the report
//! includes them (attached message/rfc822, text/rfc822-headers, or an
//! inline copy), so the caller can find its signed VERP token there.
//!
//! Precedence: status fields (a delivery-status part, or the same fields in
//! a text part) → feedback fields (ARF) → a known bounce template in the
//! human text → auto-reply signs → provider complaint signs → bounce-like
//! sender, subject or wording ("generic") → unrecognized. A bounce may
//! list no recipients when the report names none: the VERP address it was
//! sent to identifies the recipient.
//!
//! Classification ([`classify`], a project choice; first match wins):
//!
//! | condition                                                   | bounceType / bounceSubType          |
//! |-------------------------------------------------------------|-------------------------------------|
//! | action delivered/relayed/expanded, or class 2               | Undetermined / Undetermined         |
//! | X.2.2, "mailbox full", "over quota", "quota exceeded"       | Transient / MailboxFull             |
//! | X.2.3, X.3.4, "message too large", "size exceeds"           | Transient / MessageTooLarge         |
//! | X.1.1, X.1.10, "user unknown", "no such user", "does not exist", "mailbox unavailable", "recipient address rejected: user" | Permanent / NoEmail (class 5 or no status), else Transient / General |
//! | "relay access denied", "not permitted", "authentication required" | Permanent / General (class 5 or none), else Transient / General |
//! | "attachment", "file type", "executable"                     | Transient / AttachmentRejected      |
//! | "spam", "blocked", "content rejected", "policy", "blacklist", ... | Transient / ContentRejected   |
//! | action delayed, or class 4                                  | Transient / General                 |
//! | class 5 (status, or the diagnostic's SMTP code)             | Permanent / General                 |
//! | otherwise (no status, no recognizable text)                 | Undetermined / Undetermined         |
//!
//! Invariants: never panics on any input; work is linear in the input;
//! at most 1,000 recipients per report, texts capped at 1 KB, the
//! original's header at 200 fields / 10 KB. Pure: no I/O.
//! Exposure: hostile network input (every byte).

mod arf;
mod autoreply;
mod classify;
mod dsn;
mod mime;
mod original;
mod scan;
#[cfg(test)]
mod tests;
mod text;
mod text_phrases;

pub use classify::classify;
pub use dsn::MAX_RECIPIENTS;
pub use original::{MAX_BYTES as MAX_ORIGINAL_BYTES, MAX_FIELDS as MAX_ORIGINAL_FIELDS, Original};

use mime::{Body, Mail};
use scan::{TEXT_CAP, contains_any, prefix};

/// What a received message is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    Bounce(BounceReport),
    Complaint(ComplaintReport),
    /// auto-reply / out-of-office / vacation / challenge-response: not a bounce
    AutoReply {
        reason: String,
    },
    /// not recognizable as any report (say why, briefly)
    Unrecognized {
        reason: String,
    },
}

/// A delivery failure, delay (or success) report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BounceReport {
    /// "rfc3464" for status fields; else the template: "postfix", "exim",
    /// "qmail", "exchange", "gmail", "yahoo", "sendmail", "courier",
    /// "domino", "generic".
    pub format: &'static str,
    /// As SES writes it: "dns; mx.example.com".
    pub reporting_mta: Option<String>,
    pub arrival_date: Option<String>,
    pub recipients: Vec<BouncedRecipient>,
    /// What the report says of the message that bounced.
    pub original: Original,
}

/// One recipient of a bounce report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BouncedRecipient {
    /// Final-Recipient (address only), domain lowercased.
    pub email: String,
    pub original_recipient: Option<String>,
    /// "failed" | "delayed" | "delivered" | "relayed" | "expanded".
    pub action: String,
    /// Normalized "c.s.d"; inferred from the diagnostic when absent.
    pub status: Option<String>,
    /// As SES writes it: "smtp; 550 5.1.1 <x@y>: user unknown".
    pub diagnostic_code: Option<String>,
    /// "dns; mx.example.com" when given.
    pub remote_mta: Option<String>,
    pub remote_mta_ip: Option<String>,
    pub last_attempt_date: Option<String>,
    /// SES bounceType: "Permanent" | "Transient" | "Undetermined".
    pub bounce_type: &'static str,
    /// SES bounceSubType.
    pub bounce_sub_type: &'static str,
}

/// A complaint (feedback) report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComplaintReport {
    /// abuse | auth-failure | fraud | not-spam | other | virus.
    pub feedback_type: String,
    pub user_agent: Option<String>,
    /// Arrival-Date or Received-Date.
    pub arrival_date: Option<String>,
    pub source_ip: Option<String>,
    pub original_mail_from: Option<String>,
    /// The complained recipients when the provider did not redact them.
    pub original_rcpt_to: Vec<String>,
    pub reported_domain: Vec<String>,
    pub original: Original,
}

/// Parts whose text holds the status fields.
const STATUS_TYPES: &[&str] = &["message/delivery-status", "message/global-delivery-status"];
/// Parts whose text is the original's header.
const HEADER_TYPES: &[&str] = &[
    "text/rfc822-headers",
    "message/global-headers",
    "message/rfc822-headers",
];

/// Senders of bounces (lowercase).
const BOUNCE_SENDERS: &[&str] = &[
    "mailer-daemon",
    "mail delivery subsystem",
    "mail delivery system",
    "mail delivery service",
    "postmaster@",
    "mail administrator",
];
/// Subjects of bounces (lowercase).
const BOUNCE_SUBJECTS: &[&str] = &[
    "undeliverable",
    "undelivered",
    "undeliverable mail",
    "delivery status notification",
    "returned mail",
    "failure notice",
    "mail delivery failed",
    "delivery failure",
    "delivery failed",
    "non-delivery",
    "nondeliverable",
    "could not send message",
    "delayed mail",
    "message not delivered",
    "delivery has failed",
    "mail system error",
    "недоставленное сообщение",
];

/// Classifies the raw bytes of a received message.
pub fn parse(raw: &[u8]) -> Report {
    let Some(msg) = mime::parse_message(raw) else {
        return unrecognized("no header fields");
    };
    let mail = mime::view(&msg);
    let original = find_original(&mail);
    let human = human_text(&mail);
    let subject = mail.header("subject").unwrap_or_default().to_string();

    if let Some(dsn) = status_fields(&mail) {
        let mut recipients = dsn.recipients;
        if recipients.is_empty() {
            recipients = text::parse(&human, &subject, "rfc3464").recipients;
        }
        remote_ips_from_text(&mut recipients, &human);
        return Report::Bounce(BounceReport {
            format: "rfc3464",
            reporting_mta: dsn.reporting_mta,
            arrival_date: dsn.arrival_date,
            recipients,
            original,
        });
    }
    if let Some(fields) = arf::feedback_fields(&mail) {
        let mut c = arf::from_fields(&fields, &original);
        c.original = original;
        return Report::Complaint(c);
    }
    let lower = prefix(&human, text::MAX_TEXT)
        .to_lowercase()
        .replace('\r', "");
    if let Some(format) = text_phrases::template(&lower) {
        return text_bounce(&human, &subject, format, original);
    }
    if let Some(reason) = autoreply::detect(&mail) {
        return Report::AutoReply { reason };
    }
    if let Some(mut c) = arf::provider_complaint(&mail, &original) {
        c.original = original;
        return Report::Complaint(c);
    }
    let from = mail.header("from").unwrap_or_default().to_lowercase();
    let subject_lower = subject.to_lowercase();
    if contains_any(&from, BOUNCE_SENDERS)
        || contains_any(&subject_lower, BOUNCE_SUBJECTS)
        || mail.report_type == "delivery-status"
    {
        return text_bounce(&human, &subject, "generic", original);
    }
    if text_phrases::generic_wording(&lower) {
        let bounce = text::parse(&human, &subject, "generic");
        if bounce.recipients.iter().any(|r| r.status.is_some()) {
            return Report::Bounce(BounceReport {
                format: bounce.format,
                reporting_mta: bounce.reporting_mta,
                arrival_date: None,
                recipients: bounce.recipients,
                original,
            });
        }
    }
    unrecognized("no status fields, feedback fields, bounce or auto-reply signs")
}

fn unrecognized(reason: &str) -> Report {
    Report::Unrecognized {
        reason: reason.to_string(),
    }
}

/// A bounce read from the human text as `format`.
fn text_bounce(human: &str, subject: &str, format: &'static str, original: Original) -> Report {
    let bounce = text::parse(human, subject, format);
    Report::Bounce(BounceReport {
        format: bounce.format,
        reporting_mta: bounce.reporting_mta,
        arrival_date: None,
        recipients: bounce.recipients,
        original,
    })
}

/// Fills a recipient's `remote_mta_ip` the status fields did not give from
/// the human-readable part, where MTAs write it on the recipient's line
/// (Postfix: `<a@b>: host mx.b[192.0.2.1] said: ...`).
fn remote_ips_from_text(recipients: &mut [BouncedRecipient], human: &str) {
    if recipients.iter().all(|r| r.remote_mta_ip.is_some()) {
        return;
    }
    let text = prefix(human, text::MAX_TEXT);
    for r in recipients.iter_mut().filter(|r| r.remote_mta_ip.is_none()) {
        let needle = r.email.to_ascii_lowercase();
        r.remote_mta_ip = scan::lines(text)
            .filter(|l| l.len() <= 2048 && l.to_ascii_lowercase().contains(&needle))
            .find_map(scan::ip_in);
    }
}

/// The status fields: a delivery-status part, else the same fields inside
/// a text part.
fn status_fields(mail: &Mail<'_>) -> Option<dsn::Dsn> {
    if let Some(text) = mail.texts_of(STATUS_TYPES).next() {
        return Some(dsn::parse_fields(text, false));
    }
    for (ctype, text) in mail.all_texts() {
        if HEADER_TYPES.contains(&ctype) || ctype == "message/feedback-report" {
            continue;
        }
        if dsn::looks_like_status(text) {
            let found = dsn::parse_fields(text, true);
            if !found.recipients.is_empty() {
                return Some(found);
            }
        }
    }
    None
}

/// The original's header: an attached message, a headers part, or an
/// inline copy in a text part.
fn find_original(mail: &Mail<'_>) -> Original {
    for part in &mail.parts {
        if let Body::Message(o) = &part.body
            && !o.is_empty()
        {
            return o.clone();
        }
    }
    if let Some(text) = mail.texts_of(HEADER_TYPES).next() {
        let o = original::read_header_text(text.trim_start_matches(['\r', '\n']));
        if !o.is_empty() {
            return o;
        }
    }
    for (ctype, text) in mail.all_texts() {
        if (ctype.is_empty() || ctype.starts_with("text/") || ctype.starts_with("multipart/"))
            && let Some(o) = original::inline(text)
        {
            return o;
        }
    }
    Original::default()
}

/// The human-readable text: text parts (HTML converted), each cut where
/// an inline copy of the original starts, at most `text::MAX_TEXT` bytes.
fn human_text(mail: &Mail<'_>) -> String {
    let mut out = String::new();
    for (ctype, text) in mail.all_texts() {
        let unsplit = ctype.starts_with("multipart/");
        if !(ctype.is_empty() || ctype == "text/plain" || ctype == "text/html" || unsplit) {
            continue;
        }
        let end = original::inline_start(text).unwrap_or(text.len());
        let part = text.get(..end).unwrap_or(text);
        let room = text::MAX_TEXT.saturating_sub(out.len());
        if room < TEXT_CAP {
            break;
        }
        out.push_str(prefix(part, room));
        out.push('\n');
    }
    out
}
