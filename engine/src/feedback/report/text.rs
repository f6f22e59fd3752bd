//! Bounces without status fields: the human-readable templates of Exim,
//! qmail, Postfix, Courier, Sendmail, Yahoo, Exchange, Lotus Domino, Gmail
//! and the generic "undeliverable" wording of other systems.
//!
//! In: the report's human text (the original's copy already cut off) and
//! its subject. Out: the template's name, reporting MTA, and recipients
//! with the diagnostic written under each, their inferred action ("delayed"
//! for warnings, else "failed"), status (enhanced code, or the SMTP code's
//! class) and SES classification.
//! Method: one pass over the lines. A recipient line is a line that is an
//! address alone (`user@x`, `<user@x>`, `<user@x>:`, `'user@x' on ...`) or
//! starts with one followed by `:` or `...`; the non-blank lines after it,
//! up to a blank line or the next recipient, are its diagnostic. A
//! recipient without one gets the report's first line carrying an SMTP
//! code. Repeated recipients are merged, keeping a diagnostic with a code.
//! Invariants: at most `MAX_TEXT` bytes are read, `MAX_RECIPIENTS`
//! recipients kept (merging repeats is linear in those), diagnostics
//! capped. The phrase tables are in `text_phrases`. Exposure: hostile network input.

use super::BouncedRecipient;
use super::classify::classify;
use super::dsn::MAX_RECIPIENTS;
use super::scan::{
    TEXT_CAP, address, cap, contains_any, enhanced_code, first_address, ip_in, lines, prefix,
    smtp_code, status_from_diagnostic,
};
use super::text_phrases::{DELAY, INLINE_RECIPIENT, PERMANENT, REPORTING_HOST};

/// Most bytes of human text read.
pub(super) const MAX_TEXT: usize = 256 * 1024;

/// A bounce read from human text.
pub(super) struct TextBounce {
    pub format: &'static str,
    pub reporting_mta: Option<String>,
    pub recipients: Vec<BouncedRecipient>,
}

/// Reads recipients and diagnostics from `human` as template `format`.
/// `subject` helps tell delay warnings apart.
pub(super) fn parse(human: &str, subject: &str, format: &'static str) -> TextBounce {
    let human = prefix(human, MAX_TEXT);
    let lower = human.to_lowercase();
    let subject = subject.to_lowercase();
    let delayed = (contains_any(&lower, DELAY) || contains_any(&subject, DELAY))
        && !contains_any(&lower, PERMANENT);
    let mut blocks = blocks(human);
    if blocks.is_empty() {
        blocks.extend(inline_recipient(human, &lower));
    }
    let fallback = fallback_diagnostic(human);
    let action = if delayed { "delayed" } else { "failed" };
    let recipients = blocks
        .into_iter()
        .map(|(email, diag)| {
            let diag = if diag.is_empty() {
                fallback.clone().unwrap_or_default()
            } else {
                diag
            };
            recipient(email, &diag, action)
        })
        .collect();
    TextBounce {
        format,
        reporting_mta: reporting_host(&lower),
        recipients,
    }
}

/// One recipient from its diagnostic.
fn recipient(email: String, diag: &str, action: &str) -> BouncedRecipient {
    let diag = diag.trim();
    let status = status_from_diagnostic(diag);
    let code_at = smtp_code(diag)
        .map(|(p, _)| p)
        .or_else(|| enhanced_code(diag).and_then(|c| diag.find(&c)));
    let diagnostic_code = match code_at {
        Some(p) => Some(cap(
            &format!("smtp; {}", diag.get(p..).unwrap_or_default()),
            TEXT_CAP,
        )),
        None if !diag.is_empty() => Some(cap(diag, TEXT_CAP)),
        None => None,
    };
    let (remote_mta, remote_mta_ip) = remote(diag);
    let (bounce_type, bounce_sub_type) = classify(action, status.as_deref(), Some(diag));
    BouncedRecipient {
        email,
        original_recipient: None,
        action: action.to_string(),
        status,
        diagnostic_code,
        remote_mta,
        remote_mta_ip,
        last_attempt_date: None,
        bounce_type,
        bounce_sub_type,
    }
}

/// Recipient blocks: (address, diagnostic joined with single spaces).
fn blocks(human: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut current: Option<(String, String)> = None;
    let mut seen = 0usize; // recipient lines, repeats included
    for line in lines(human) {
        let t = line.trim();
        if t.is_empty() {
            if let Some(b) = current.take() {
                merge(&mut out, b);
            }
            continue;
        }
        if let Some((email, rest)) = recipient_line(t) {
            if let Some(b) = current.take() {
                merge(&mut out, b);
            }
            seen += 1;
            if out.len() >= MAX_RECIPIENTS || seen > 4 * MAX_RECIPIENTS {
                break;
            }
            current = Some((email, cap(rest, TEXT_CAP)));
            continue;
        }
        if let Some((_, diag)) = current.as_mut()
            && diag.len() < TEXT_CAP
        {
            if !diag.is_empty() {
                diag.push(' ');
            }
            diag.push_str(prefix(t, TEXT_CAP));
        }
    }
    if let Some(b) = current.take() {
        merge(&mut out, b);
    }
    out.truncate(MAX_RECIPIENTS);
    out
}

/// Adds a block, merging it into an earlier one for the same address
/// (keeping the diagnostic that carries an SMTP code). Linear in the kept
/// blocks, which are capped.
fn merge(out: &mut Vec<(String, String)>, (email, diag): (String, String)) {
    let diag = cap(&diag, TEXT_CAP);
    if let Some((_, old)) = out.iter_mut().find(|(e, _)| e.eq_ignore_ascii_case(&email)) {
        let has_code = |d: &str| smtp_code(d).is_some() || enhanced_code(d).is_some();
        if old.is_empty() || (!has_code(old) && has_code(&diag)) {
            *old = diag;
        }
        return;
    }
    out.push((email, diag));
}

/// The address a recipient line starts with, and the text after it.
fn recipient_line(t: &str) -> Option<(String, &str)> {
    if t.starts_with(">>>") || t.starts_with("<<<") || t.len() > 2 * TEXT_CAP {
        return None;
    }
    let (candidate, rest) = if let Some(inner) = t.strip_prefix('<') {
        let close = inner.find('>')?;
        (inner.get(..close)?, inner.get(close + 1..)?)
    } else if let Some(inner) = t.strip_prefix(['\'', '"']) {
        let close = inner.find(['\'', '"'])?;
        (inner.get(..close)?, inner.get(close + 1..)?)
    } else {
        let end = t
            .find(|c: char| c.is_whitespace() || c == ':')
            .unwrap_or(t.len());
        (t.get(..end)?, t.get(end..)?)
    };
    let email = address(candidate)?;
    if email.to_ascii_lowercase().starts_with("mailer-daemon@") {
        return None;
    }
    let rest = rest.trim_start();
    let rest = if let Some(r) = rest.strip_prefix("...") {
        r
    } else if let Some(r) = rest.strip_prefix(':') {
        r
    } else if rest.is_empty() || rest.starts_with('(') || rest.starts_with("on ") {
        ""
    } else {
        return None;
    };
    Some((email, rest.trim()))
}

/// A recipient written inside a sentence ("Your message wasn't delivered
/// to user@example.com because ...").
fn inline_recipient(human: &str, lower: &str) -> Option<(String, String)> {
    for phrase in INLINE_RECIPIENT {
        if let Some(p) = lower.find(phrase) {
            let start = p + phrase.len();
            // `lower` may differ in length from `human` for non-ASCII text.
            let rest = lower.get(start..).unwrap_or_default();
            let addr = first_address(prefix(rest, 300))?;
            let original_case = human.get(start..).filter(|_| human.len() == lower.len());
            let email = original_case
                .and_then(|r| first_address(prefix(r, 300)))
                .unwrap_or(addr);
            return Some((email, String::new()));
        }
    }
    None
}

/// The first line carrying an SMTP code (with its indented continuation),
/// or the line after "because:" (Lotus Domino).
fn fallback_diagnostic(human: &str) -> Option<String> {
    let mut after_because = false;
    let mut found: Option<String> = None;
    for line in lines(human) {
        let t = line.trim();
        if let Some(f) = found.as_mut() {
            if line.starts_with([' ', '\t']) && !t.is_empty() && f.len() < TEXT_CAP {
                f.push(' ');
                f.push_str(prefix(t, TEXT_CAP));
                continue;
            }
            break;
        }
        if t.is_empty() {
            continue;
        }
        if after_because || smtp_code(t).is_some() || enhanced_code(t).is_some() {
            found = Some(cap(t, TEXT_CAP));
            continue;
        }
        after_because = t.eq_ignore_ascii_case("because:");
    }
    found
}

/// Remote MTA ("dns; host") and IP from "host mx.example.com[192.0.2.1]
/// said", "host mx.example.com [192.0.2.1]:", or qmail's leading IP.
fn remote(diag: &str) -> (Option<String>, Option<String>) {
    let ip = ip_in(diag).or_else(|| diag.split_whitespace().next().and_then(ip_in));
    let lower = prefix(diag, TEXT_CAP).to_ascii_lowercase();
    let host = lower.find("host ").and_then(|p| {
        let word = diag.get(p + 5..)?.split_whitespace().next()?;
        let name = word.split('[').next()?.trim_end_matches([':', ',', '.']);
        let ok = name.contains('.')
            && name.len() <= 255
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        ok.then(|| format!("dns; {}", name.to_ascii_lowercase()))
    });
    (host, ip)
}

/// The reporting host named in the text ("This is the mail system at host
/// mx.example.com."), as "dns; host".
fn reporting_host(lower: &str) -> Option<String> {
    for phrase in REPORTING_HOST {
        if let Some(p) = lower.find(phrase) {
            let word = lower.get(p + phrase.len()..)?.split_whitespace().next()?;
            let name = word.trim_end_matches(['.', ',', ':']);
            if name.contains('.')
                && name.len() <= 255
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
            {
                return Some(format!("dns; {name}"));
            }
        }
    }
    None
}
