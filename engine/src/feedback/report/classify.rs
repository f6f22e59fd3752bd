//! SES bounce type and subtype of one reported recipient, from the DSN
//! action, status and diagnostic text (the rules are tabled in the header
//! of `report/mod.rs`).
//!
//! In: action, optional status ("5.1.1", any text holding one), optional
//! diagnostic. Out: (`bounceType`, `bounceSubType`), always one of the
//! pairs SES publishes. Pure; phrases are matched as lowercase substrings
//! of at most `TEXT_CAP` bytes of the diagnostic, with `<...>` (addresses)
//! removed so that an address cannot read as a phrase.
//! Exposure: the diagnostic is remote server text.

use super::scan::{TEXT_CAP, contains_any, enhanced_code, prefix, smtp_code};

const MAILBOX_FULL: &[&str] = &[
    "mailbox full",
    "mailbox is full",
    "over quota",
    "overquota",
    "quota exceeded",
    "exceeded storage",
    "exceeds quota",
    "exceeded quota",
    "exceed the quota",
    "mailbox size limit",
    "insufficient storage",
    "out of storage",
    "mail box full",
    "user is over",
    "storage allocation",
    "mailfolder is full",
];

const TOO_LARGE: &[&str] = &[
    "message too large",
    "message is too large",
    "message too big",
    "message is too big",
    "size exceeds",
    "message size exceeds",
    "exceeds the maximum size",
    "exceeds size limit",
    "message size limit",
    "message length exceeds",
    "too large for",
];

const NO_EMAIL: &[&str] = &[
    "user unknown",
    "unknown user",
    "no such user",
    "does not exist",
    "doesn't exist",
    "mailbox unavailable",
    "recipient address rejected: user",
    "recipient address rejected: undeliverable",
    "no such recipient",
    "no such address",
    "no such mailbox",
    "invalid recipient",
    "invalid mailbox",
    "unknown recipient",
    "recipient unknown",
    "recipient not found",
    "user not found",
    "mailbox not found",
    "address not found",
    "unrouteable address",
    "unknown or illegal alias",
    "not listed in domino directory",
    "resolver.adr.recipnotfound",
    "recipnotfound",
    "no mailbox here",
    "doesn't have a yahoo",
    "this user doesn't have",
    "account has been disabled",
    "account is disabled",
    "addressee unknown",
    "invalid address",
    "bad destination mailbox",
    "couldn't be found",
    "could not be found",
    "is not a valid mailbox",
    "mailbox is unavailable",
];

const RELAY_OR_AUTH: &[&str] = &[
    "relay access denied",
    "relaying denied",
    "relay not permitted",
    "not permitted to relay",
    "unable to relay",
    "relaying not allowed",
    "not permitted",
    "authentication required",
];

const ATTACHMENT: &[&str] = &[
    "attachment",
    "file type",
    "executable",
    "blocked file",
    "prohibited file",
];

const CONTENT: &[&str] = &[
    "spam",
    "blocked",
    "blacklist",
    "blocklist",
    "content rejected",
    "rejected for policy",
    "message content",
    "content policy",
    "policy reasons",
    "reputation",
    "virus",
    "malware",
    "phish",
    "dmarc",
    "unsolicited",
    "bulk mail",
    "listed at",
    "listed on",
    "rbl",
    "block list",
    "blocklisted",
];

/// Lowercase diagnostic with `<...>` spans removed, at most `TEXT_CAP` bytes.
fn phrase_text(diagnostic: &str) -> String {
    let mut out = String::with_capacity(diagnostic.len().min(TEXT_CAP));
    let mut depth = false;
    for c in prefix(diagnostic, TEXT_CAP).chars() {
        match c {
            '<' => depth = true,
            '>' => depth = false,
            _ if !depth => out.extend(c.to_lowercase()),
            _ => {}
        }
    }
    out
}

/// SES (`bounceType`, `bounceSubType`) for one recipient.
pub fn classify(
    action: &str,
    status: Option<&str>,
    diagnostic: Option<&str>,
) -> (&'static str, &'static str) {
    let action = action.trim().to_ascii_lowercase();
    let diag = diagnostic.map(phrase_text).unwrap_or_default();
    let code = status
        .and_then(|s| enhanced_code(prefix(s, TEXT_CAP)))
        .or_else(|| enhanced_code(&diag));
    let parts: Vec<u16> = code
        .as_deref()
        .map(|c| c.split('.').filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default();
    let class = match parts.first() {
        Some(c) => Some(*c),
        None => smtp_code(&diag).map(|(_, c)| c / 100),
    };
    let (subject, detail) = (parts.get(1).copied(), parts.get(2).copied());
    let is = |s: u16, d: u16| subject == Some(s) && detail == Some(d);

    if matches!(action.as_str(), "delivered" | "relayed" | "expanded") || class == Some(2) {
        return ("Undetermined", "Undetermined");
    }
    let transient = action == "delayed" || class == Some(4);
    let permanent_ok = !transient && matches!(class, Some(5) | None);

    if is(2, 2) || contains_any(&diag, MAILBOX_FULL) {
        return ("Transient", "MailboxFull");
    }
    if is(2, 3) || is(3, 4) || contains_any(&diag, TOO_LARGE) {
        return ("Transient", "MessageTooLarge");
    }
    if is(1, 1) || is(1, 10) || contains_any(&diag, NO_EMAIL) {
        if permanent_ok {
            return ("Permanent", "NoEmail");
        }
        return ("Transient", "General");
    }
    if contains_any(&diag, RELAY_OR_AUTH) {
        return if permanent_ok {
            ("Permanent", "General")
        } else {
            ("Transient", "General")
        };
    }
    if contains_any(&diag, ATTACHMENT) {
        return ("Transient", "AttachmentRejected");
    }
    if contains_any(&diag, CONTENT) {
        return ("Transient", "ContentRejected");
    }
    if transient {
        return ("Transient", "General");
    }
    match class {
        Some(5) => ("Permanent", "General"),
        _ => ("Undetermined", "Undetermined"),
    }
}

#[cfg(test)]
mod tests {
    use super::classify;

    /// (action, status, diagnostic, expected (type, subtype)).
    type Case = (
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
        (&'static str, &'static str),
    );

    #[test]
    fn table() {
        let cases: &[Case] = &[
            (
                "failed",
                Some("5.1.1"),
                Some("smtp; 550 5.1.1 user unknown"),
                ("Permanent", "NoEmail"),
            ),
            ("failed", Some("5.1.10"), None, ("Permanent", "NoEmail")),
            (
                "failed",
                None,
                Some("550 No such user here"),
                ("Permanent", "NoEmail"),
            ),
            (
                "failed",
                Some("4.1.1"),
                Some("450 user unknown (try later)"),
                ("Transient", "General"),
            ),
            (
                "failed",
                Some("5.2.2"),
                Some("552 5.2.2 Mailbox full"),
                ("Transient", "MailboxFull"),
            ),
            (
                "failed",
                Some("5.0.0"),
                Some("550 user is over quota"),
                ("Transient", "MailboxFull"),
            ),
            (
                "failed",
                Some("5.3.4"),
                None,
                ("Transient", "MessageTooLarge"),
            ),
            (
                "failed",
                Some("5.2.3"),
                Some("552 message size exceeds limit"),
                ("Transient", "MessageTooLarge"),
            ),
            (
                "failed",
                Some("5.7.1"),
                Some("554 5.7.1 Message rejected as spam"),
                ("Transient", "ContentRejected"),
            ),
            (
                "failed",
                Some("5.7.1"),
                Some("554 5.7.1 <a@b>: Relay access denied"),
                ("Permanent", "General"),
            ),
            (
                "failed",
                Some("5.7.1"),
                Some("550 5.7.1 Authentication required"),
                ("Permanent", "General"),
            ),
            (
                "failed",
                Some("5.7.1"),
                Some("552 attachment of type .exe blocked"),
                ("Transient", "AttachmentRejected"),
            ),
            ("failed", Some("5.7.1"), None, ("Permanent", "General")),
            (
                "delayed",
                Some("4.4.1"),
                Some("connection timed out"),
                ("Transient", "General"),
            ),
            ("delayed", Some("5.1.1"), None, ("Transient", "General")),
            ("failed", Some("4.4.7"), None, ("Transient", "General")),
            ("failed", None, None, ("Undetermined", "Undetermined")),
            (
                "failed",
                None,
                Some("something odd happened"),
                ("Undetermined", "Undetermined"),
            ),
            (
                "failed",
                Some("5.0.0"),
                Some("550 <spam@example.com>... refused"),
                ("Permanent", "General"),
            ),
            (
                "delivered",
                Some("2.0.0"),
                None,
                ("Undetermined", "Undetermined"),
            ),
            (
                "FAILED",
                Some("5.1.1 (bad mailbox)"),
                None,
                ("Permanent", "NoEmail"),
            ),
        ];
        for (action, status, diag, want) in cases {
            assert_eq!(
                classify(action, *status, *diag),
                *want,
                "{action} {status:?} {diag:?}"
            );
        }
    }
}
