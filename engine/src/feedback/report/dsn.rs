//! RFC 3464 delivery status notifications (and RFC 6533 global ones): the
//! per-message and per-recipient field groups of a `message/delivery-status`
//! part, or of the same fields found in a text part (a mislabeled part, or
//! a multipart whose boundary the MIME parser did not find).
//!
//! In: the decoded text of the status fields. Out: reporting MTA, arrival
//! date and the recipients, each with its action, normalized status and
//! SES classification. Lenient: field names in any case, folded values,
//! "rfc822;addr" without a space, angle brackets, groups not separated by
//! blank lines (a second Final-Recipient starts a new recipient).
//! Invariants: at most `MAX_RECIPIENTS` recipients and `MAX_FIELDS` fields
//! are read; values are capped. Exposure: hostile network input.

use super::BouncedRecipient;
use super::classify::classify;
use super::scan::{
    Field, TEXT_CAP, address, cap, enhanced_code, field_groups, first_address, get, ip_in,
    normalize_status, prefix, status_from_diagnostic, typed, untyped,
};

/// Most recipients read from one report.
pub const MAX_RECIPIENTS: usize = 1000;
/// Most fields read from one status part.
const MAX_FIELDS: usize = MAX_RECIPIENTS * 16;

/// The status fields of one report.
#[derive(Debug, Default)]
pub(super) struct Dsn {
    pub reporting_mta: Option<String>,
    pub arrival_date: Option<String>,
    pub recipients: Vec<BouncedRecipient>,
}

/// Field names that mark a group as per-recipient.
const RECIPIENT_FIELDS: &[&str] = &[
    "final-recipient",
    "original-recipient",
    "x-actual-recipient",
];

/// Field names a status part may hold (to tell where the fields end when
/// they are found inside other text).
const KNOWN_FIELDS: &[&str] = &[
    "reporting-mta",
    "received-from-mta",
    "arrival-date",
    "original-envelope-id",
    "dsn-gateway",
    "final-recipient",
    "original-recipient",
    "x-actual-recipient",
    "action",
    "status",
    "remote-mta",
    "diagnostic-code",
    "last-attempt-date",
    "final-log-id",
    "will-retry-until",
    "x-postfix-queue-id",
    "x-postfix-sender",
    "x-display-name",
    "x-supplementary-info",
];

/// True when `text` holds status fields: a line starting with
/// "Final-Recipient:" (or "Original-Recipient:") and an Action or Status.
pub(super) fn looks_like_status(text: &str) -> bool {
    find_start(text).is_some()
}

/// Offset of the first status field group in `text`.
fn find_start(text: &str) -> Option<usize> {
    let mut offset = 0usize;
    let mut recipient_at = None;
    let mut group_start = 0usize;
    for line in text.split_inclusive('\n') {
        let head = prefix(line, 24).to_ascii_lowercase();
        if line.trim().is_empty() {
            group_start = offset + line.len();
        } else if RECIPIENT_FIELDS.iter().any(|f| {
            head.strip_prefix(f)
                .is_some_and(|r| r.trim_start().starts_with(':'))
        }) {
            recipient_at = Some(group_start.min(offset));
            break;
        }
        offset += line.len();
    }
    let start = recipient_at?;
    let rest = prefix(text.get(start..)?, 8 * TEXT_CAP).to_ascii_lowercase();
    let has = |f: &str| rest.starts_with(f) || rest.contains(&format!("\n{f}"));
    (has("action:") || has("status:")).then_some(start)
}

/// Reads the status fields of `text`. With `embedded`, the fields are
/// looked for inside other text and reading stops at the first group that
/// holds none of them after a recipient was read.
pub(super) fn parse_fields(text: &str, embedded: bool) -> Dsn {
    let mut dsn = Dsn::default();
    let body = if embedded {
        match find_start(text) {
            Some(start) => {
                // Take the per-message group just before, if there is one.
                let before = text.get(..start).unwrap_or_default();
                let from = before
                    .rfind("Reporting-MTA:")
                    .or_else(|| before.rfind("reporting-mta:"));
                text.get(from.unwrap_or(start)..).unwrap_or_default()
            }
            None => return dsn,
        }
    } else {
        text
    };
    for group in field_groups(body, MAX_FIELDS) {
        let is_known = group
            .iter()
            .any(|(n, _)| KNOWN_FIELDS.contains(&n.as_str()));
        if embedded && !is_known && !dsn.recipients.is_empty() {
            break;
        }
        if dsn.reporting_mta.is_none()
            && let Some(v) = get(&group, "reporting-mta")
        {
            dsn.reporting_mta = Some(typed(v));
        }
        if dsn.arrival_date.is_none()
            && let Some(v) = get(&group, "arrival-date")
        {
            dsn.arrival_date = Some(cap(v, TEXT_CAP));
        }
        for record in split_recipients(&group) {
            if dsn.recipients.len() >= MAX_RECIPIENTS {
                return dsn;
            }
            if let Some(r) = recipient(record) {
                dsn.recipients.push(r);
            }
        }
    }
    dsn
}

/// Splits one group into per-recipient records: a recipient field that the
/// current record already has starts the next record.
fn split_recipients(group: &[Field]) -> Vec<&[Field]> {
    let mut out = Vec::new();
    let mut start = None::<usize>;
    let mut seen: [bool; 3] = [false; 3];
    let mut has_body = false;
    for (i, (name, _)) in group.iter().enumerate() {
        if name == "action" || name == "status" {
            has_body = true;
        }
        let Some(k) = RECIPIENT_FIELDS.iter().position(|f| f == name) else {
            continue;
        };
        let restart = seen.get(k).copied().unwrap_or(false) || (has_body && seen.contains(&true));
        if let Some(s) = start
            && restart
        {
            out.push(group.get(s..i).unwrap_or_default());
            start = Some(i);
            seen = [false; 3];
            has_body = false;
        }
        if start.is_none() {
            start = Some(i);
        }
        if let Some(slot) = seen.get_mut(k) {
            *slot = true;
        }
    }
    if let Some(s) = start {
        // Fields before the first recipient field belong to it too.
        let s = if out.is_empty() { 0 } else { s };
        out.push(group.get(s..).unwrap_or_default());
    }
    out
}

/// One recipient from its fields; None without a usable address.
fn recipient(fields: &[Field]) -> Option<BouncedRecipient> {
    let original_recipient = get(fields, "original-recipient").and_then(recipient_address);
    let email = get(fields, "final-recipient")
        .and_then(recipient_address)
        .or_else(|| get(fields, "x-actual-recipient").and_then(recipient_address))
        .or_else(|| original_recipient.clone())?;
    let diagnostic_code = get(fields, "diagnostic-code").map(typed);
    let status = get(fields, "status")
        .and_then(normalize_status)
        .or_else(|| diagnostic_code.as_deref().and_then(status_from_diagnostic));
    let action = action(get(fields, "action"), status.as_deref());
    let remote_mta = get(fields, "remote-mta").map(typed);
    let remote_mta_ip = remote_mta
        .as_deref()
        .and_then(|m| ip_in(untyped(m)))
        .or_else(|| diagnostic_code.as_deref().and_then(ip_in));
    let (bounce_type, bounce_sub_type) =
        classify(&action, status.as_deref(), diagnostic_code.as_deref());
    Some(BouncedRecipient {
        email,
        original_recipient,
        action,
        status,
        diagnostic_code,
        remote_mta,
        remote_mta_ip,
        last_attempt_date: get(fields, "last-attempt-date").map(|v| cap(v, TEXT_CAP)),
        bounce_type,
        bounce_sub_type,
    })
}

/// The address of a recipient field ("rfc822; <a@b> (comment)").
fn recipient_address(value: &str) -> Option<String> {
    let v = untyped(value);
    address(v).or_else(|| first_address(v))
}

/// The Action value lowercased; a missing or unknown one is inferred from
/// the status class (4 -> delayed, 2 -> delivered, else failed).
fn action(value: Option<&str>, status: Option<&str>) -> String {
    const ACTIONS: &[&str] = &["failed", "delayed", "delivered", "relayed", "expanded"];
    let word = value
        .and_then(|v| {
            v.split(|c: char| !c.is_ascii_alphabetic())
                .find(|w| !w.is_empty())
        })
        .map(str::to_ascii_lowercase);
    if let Some(w) = word.filter(|w| ACTIONS.contains(&w.as_str())) {
        return w;
    }
    match status
        .and_then(enhanced_code)
        .as_deref()
        .and_then(|s| s.chars().next())
    {
        Some('4') => "delayed".into(),
        Some('2') => "delivered".into(),
        _ => "failed".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_fields;

    #[test]
    fn fields_lenient() {
        let text = "Reporting-MTA: dns;mx.example.com\r\nArrival-Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n\
            FINAL-RECIPIENT: RFC822;<Bob@Example.COM>\r\nACTION: Failed\r\nStatus: 5.1.1 (bad mailbox)\r\n\
            Remote-MTA: dns; [192.0.2.7]\r\nDiagnostic-Code: smtp;550 5.1.1 <Bob@Example.COM>:\r\n  user unknown\r\n\
            Final-Recipient: rfc822; carol@example.org (Carol)\r\nAction: delayed\r\nStatus: 4.4.1\r\n";
        let dsn = parse_fields(text, false);
        assert_eq!(dsn.reporting_mta.as_deref(), Some("dns; mx.example.com"));
        assert_eq!(dsn.recipients.len(), 2);
        let bob = &dsn.recipients[0];
        assert_eq!(bob.email, "Bob@example.com");
        assert_eq!(bob.action, "failed");
        assert_eq!(bob.status.as_deref(), Some("5.1.1"));
        assert_eq!(
            bob.diagnostic_code.as_deref(),
            Some("smtp; 550 5.1.1 <Bob@Example.COM>: user unknown")
        );
        assert_eq!(bob.remote_mta_ip.as_deref(), Some("192.0.2.7"));
        assert_eq!(
            (bob.bounce_type, bob.bounce_sub_type),
            ("Permanent", "NoEmail")
        );
        let carol = &dsn.recipients[1];
        assert_eq!(
            (carol.action.as_str(), carol.bounce_type),
            ("delayed", "Transient")
        );
    }

    #[test]
    fn embedded_fields_stop_at_the_original() {
        let text = "Some text\n\n--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; a.example\n\n\
            Final-Recipient: rfc822; x@example.net\nAction: failed\nStatus: 5.0.0\n\n--b\n\
            Content-Type: message/rfc822\n\nFrom: a@b.example\nFinal-Recipient: rfc822; y@example.net\n";
        let dsn = parse_fields(text, true);
        assert_eq!(dsn.recipients.len(), 1, "{dsn:?}");
        assert_eq!(dsn.reporting_mta.as_deref(), Some("dns; a.example"));
    }
}
