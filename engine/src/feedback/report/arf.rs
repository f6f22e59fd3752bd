//! Complaint reports: RFC 5965 ARF (`multipart/report;
//! report-type=feedback-report` with a `message/feedback-report` part), the
//! same fields sent as a text/plain part (Microsoft JMRP and others), and
//! provider reports that attach the original without any feedback fields
//! but say in their subject, sender or headers that they are a complaint
//! (e.g. Hotmail's `X-HmXmrOriginalRecipient`).
//!
//! In: the MIME view of the report and the original's header. Out: the
//! feedback type (normalized to the SES set), user agent, arrival date,
//! source IP, original sender and recipients, reported domains.
//! Invariants: at most `MAX_LIST` recipients or domains; values capped.
//! Exposure: hostile network input.

use super::ComplaintReport;
use super::mime::Mail;
use super::original::Original;
use super::scan::{
    Field, TEXT_CAP, address, cap, contains_any, field_groups, get, ip_in, lines, prefix,
};

/// Most Original-Rcpt-To / Reported-Domain values kept.
const MAX_LIST: usize = 1000;

/// Field names of a feedback report.
const ARF_FIELDS: &[&str] = &[
    "feedback-type",
    "user-agent",
    "version",
    "original-mail-from",
    "original-rcpt-to",
    "arrival-date",
    "received-date",
    "reporting-mta",
    "source-ip",
    "incidents",
    "authentication-results",
    "reported-domain",
    "reported-uri",
    "removal-recipient",
    "redacted-address",
    "original-envelope-id",
    "source",
    "delivery-result",
    "auth-failure",
];

/// The feedback fields of the report, if it has any: a
/// message/feedback-report part, or text whose lines include
/// "Feedback-Type:" together with "User-Agent:" or "Version:".
pub(super) fn feedback_fields(mail: &Mail<'_>) -> Option<Vec<Field>> {
    if let Some(text) = mail.texts_of(&["message/feedback-report"]).next() {
        return Some(fields(text));
    }
    for (ctype, text) in mail.all_texts() {
        if ctype.starts_with("message/") && ctype != "message/feedback-report" {
            continue;
        }
        if let Some(start) = embedded_start(text) {
            return Some(fields(text.get(start..).unwrap_or_default()));
        }
    }
    None
}

/// Offset of a "Feedback-Type:" line that has ARF company within a few
/// lines.
fn embedded_start(text: &str) -> Option<usize> {
    let mut offset = 0usize;
    let mut tries = 0usize;
    for line in text.split_inclusive('\n') {
        let head = prefix(line, 16).to_ascii_lowercase();
        if head.starts_with("feedback-type:") {
            tries += 1;
            if tries > 16 {
                return None;
            }
            let next = prefix(text.get(offset..).unwrap_or_default(), 2048).to_ascii_lowercase();
            if next.contains("\nuser-agent:") || next.contains("\nversion:") {
                return Some(offset);
            }
        }
        offset += line.len();
    }
    None
}

/// All ARF fields of `text`, groups merged, up to the first group with none.
fn fields(text: &str) -> Vec<Field> {
    let mut out = Vec::new();
    for group in field_groups(text, 4 * MAX_LIST) {
        if !group.iter().any(|(n, _)| ARF_FIELDS.contains(&n.as_str())) {
            if out.is_empty() {
                continue;
            }
            break;
        }
        out.extend(group);
    }
    out
}

/// The complaint from feedback fields.
pub(super) fn from_fields(fields: &[Field], original: &Original) -> ComplaintReport {
    let feedback_type = get(fields, "feedback-type")
        .map(feedback_type)
        .unwrap_or("other")
        .to_string();
    let mut rcpt: Vec<String> = fields
        .iter()
        .filter(|(n, _)| n == "original-rcpt-to" || n == "removal-recipient")
        .filter_map(|(_, v)| address(v.split_whitespace().next().unwrap_or_default()))
        .take(MAX_LIST)
        .collect();
    add_hotmail_recipients(&mut rcpt, original);
    let reported_domain = fields
        .iter()
        .filter(|(n, _)| n == "reported-domain")
        .map(|(_, v)| cap(v, 255).to_ascii_lowercase())
        .filter(|v| !v.is_empty())
        .take(MAX_LIST)
        .collect();
    ComplaintReport {
        feedback_type,
        user_agent: get(fields, "user-agent").map(|v| cap(v, TEXT_CAP)),
        arrival_date: get(fields, "arrival-date")
            .or_else(|| get(fields, "received-date"))
            .map(|v| cap(v, TEXT_CAP)),
        source_ip: get(fields, "source-ip").and_then(ip_in),
        original_mail_from: get(fields, "original-mail-from")
            .map(|v| address(v).unwrap_or_else(|| cap(v, TEXT_CAP))),
        original_rcpt_to: rcpt,
        reported_domain,
        original: Original::default(),
    }
}

/// The SES complaintFeedbackType for a Feedback-Type value.
fn feedback_type(value: &str) -> &'static str {
    let word = value
        .split(|c: char| c.is_whitespace() || c == ';')
        .next()
        .unwrap_or_default();
    match word.to_ascii_lowercase().as_str() {
        "abuse" => "abuse",
        "auth-failure" => "auth-failure",
        "fraud" => "fraud",
        "not-spam" => "not-spam",
        "virus" => "virus",
        _ => "other",
    }
}

/// Hotmail and Outlook.com name the complainant in the original's header.
fn add_hotmail_recipients(rcpt: &mut Vec<String>, original: &Original) {
    for (name, value) in &original.headers {
        if rcpt.len() >= MAX_LIST {
            break;
        }
        if name.eq_ignore_ascii_case("X-HmXmrOriginalRecipient")
            && let Some(a) = address(value)
            && !rcpt.contains(&a)
        {
            rcpt.push(a);
        }
    }
}

/// Subject and sender phrases of provider complaint reports (lowercase).
const COMPLAINT_SUBJECTS: &[&str] = &[
    "complaint about message from",
    "abuse report",
    "spam report",
    "spam complaint",
    "feedback loop",
    "fbl report",
    "junk mail report",
    "email abuse report",
    "[spam]",
];
const COMPLAINT_SENDERS: &[&str] = &[
    "staff@hotmail.com",
    "abuse@",
    "fbl@",
    "feedbackloop",
    "feedback-loop",
    "complaints@",
    "scomp@",
];

/// A complaint from a provider that attached the original without feedback
/// fields; None unless the report says it is one.
pub(super) fn provider_complaint(mail: &Mail<'_>, original: &Original) -> Option<ComplaintReport> {
    if original.is_empty() {
        return None;
    }
    let subject = mail.header("subject").unwrap_or_default().to_lowercase();
    let from = mail.header("from").unwrap_or_default().to_lowercase();
    let hotmail = original.get("X-HmXmrOriginalRecipient").is_some()
        || mail.header("x-hmxmroriginalrecipient").is_some();
    if !(hotmail
        || contains_any(&subject, COMPLAINT_SUBJECTS)
        || contains_any(&from, COMPLAINT_SENDERS))
    {
        return None;
    }
    let mut rcpt = Vec::new();
    if let Some(a) = mail.header("x-hmxmroriginalrecipient").and_then(address) {
        rcpt.push(a);
    }
    add_hotmail_recipients(&mut rcpt, original);
    // "complaint about message from 192.0.2.1" / "received from IP 192.0.2.1".
    let source_ip = subject
        .rsplit(' ')
        .next()
        .and_then(ip_in)
        .or_else(|| body_source_ip(mail));
    Some(ComplaintReport {
        feedback_type: "abuse".to_string(),
        user_agent: None,
        arrival_date: None,
        source_ip,
        original_mail_from: original.get("Return-Path").and_then(address),
        original_rcpt_to: rcpt,
        reported_domain: Vec::new(),
        original: Original::default(),
    })
}

/// "... received from IP 192.0.2.1 ..." in the human text.
fn body_source_ip(mail: &Mail<'_>) -> Option<String> {
    let text = mail.texts_of(&["text/plain", ""]).next()?;
    for line in lines(prefix(text, 16 * TEXT_CAP)) {
        let lower = line.to_ascii_lowercase();
        if let Some(p) = lower.find("from ip ") {
            let rest = line.get(p + 8..).unwrap_or_default();
            if let Some(ip) = rest.split_whitespace().next().and_then(ip_in) {
                return Some(ip);
            }
        }
    }
    None
}
