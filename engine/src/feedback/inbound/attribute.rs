//! Who a received report is about: the signed tokens it came with, checked,
//! and the recipients they prove it answers, each with the feedback to
//! publish (a `Bounce`, `Complaint` or `Subscription`) and whether it
//! suppresses the address.
//!
//! Tokens are looked for in the envelope recipients (the VERP return path
//! or the `mailto:` unsubscribe address the report was sent to) and, when
//! none is there (a feedback loop writes to its own registered address),
//! in the headers of the original message the report quotes (its
//! `Return-Path`). A token that does not verify is forged or altered: the
//! report is counted and changes nothing.
//!
//! Recipients: a token names its one recipient through its record (while
//! the spool or its ledger has it) or through the addresses the report
//! gives, which must match the token's address hash. Shared tokens (bound
//! to a domain; not made while feedback is on) speak for nobody; mail to
//! an unsubscribe address counts only from the recipient's own address.
//! Only `failed` bounce actions count (delays, relays and
//! deliveries are notices, not bounces); auto-replies never do; a message
//! that is no recognizable report counts as an `Undetermined` bounce only
//! when it came from the null sender to a one-recipient token. Pure (the
//! record lookup is a closure). Exposure: the report is hostile input.

use volley_spool::RecipientId;

use super::super::report::{Original, Report};
use super::super::token::{Keys, MailRef, Purpose};
use crate::events::feedback::{Feedback, FeedbackKind};

/// Most tokens one report is taken to answer.
const MAX_TOKENS: usize = 16;
/// Most recipients one report is taken to be about.
const MAX_FINDINGS: usize = 1000;

/// One recipient a report is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub campaign: u32,
    /// The recipient (a shared message's first, when the record of the
    /// named one is not known).
    pub recipient: RecipientId,
    pub shared: bool,
    pub email: String,
    pub feedback: Feedback,
}

/// What became of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The recipients it is about.
    Found(Vec<Finding>),
    /// It carried a token that does not verify.
    Forged,
    /// It came with valid tokens, but names no recipient they speak for.
    Unattributed(String),
    /// Nothing to act on (an auto-reply, a delay notice, no token).
    Ignored(String),
}

/// What the attribution needs besides the report.
pub struct Inputs<'a> {
    pub keys: &'a Keys,
    pub bounce_domain: &'a str,
    /// Envelope sender and recipients of the received message.
    pub mail_from: &'a str,
    pub rcpts: &'a [String],
    /// The received message's own `From` address (unsubscribe mail).
    pub from: Option<&'a str>,
    /// Names the report (its digest): feedback ids derive from it.
    pub report_id: &'a str,
    /// A recipient's campaign and address, while its record exists.
    pub record: &'a dyn Fn(RecipientId) -> Option<(u32, String)>,
}

/// A verified token and what it is for.
type Token = (Purpose, MailRef);

/// The tokens the message came with: `Err(())` if one is forged.
fn tokens(i: &Inputs<'_>, report: &Report) -> Result<Vec<Token>, ()> {
    let mut out: Vec<Token> = Vec::new();
    let mut forged = false;
    let push = |purpose: Purpose, local: &str, out: &mut Vec<Token>, forged: &mut bool| match i
        .keys
        .verify_local_part(purpose, local)
    {
        Some(r) => {
            if out.len() < MAX_TOKENS && !out.contains(&(purpose, r)) {
                out.push((purpose, r));
            }
        }
        None => *forged = true,
    };
    for rcpt in i.rcpts {
        let Some((local, domain)) = rcpt.rsplit_once('@') else {
            continue;
        };
        if !domain.eq_ignore_ascii_case(i.bounce_domain) {
            continue;
        }
        let l = local.to_ascii_lowercase();
        if l.starts_with("b-") {
            push(Purpose::Bounce, local, &mut out, &mut forged);
        } else if l.starts_with("u-") {
            push(Purpose::Unsubscribe, local, &mut out, &mut forged);
        }
    }
    if out.is_empty()
        && !forged
        && let Some(orig) = original(report)
    {
        for local in quoted_tokens(orig, i.bounce_domain) {
            push(Purpose::Bounce, &local, &mut out, &mut forged);
        }
    }
    if forged && out.is_empty() {
        return Err(());
    }
    Ok(out)
}

/// The original message a report quotes.
fn original(report: &Report) -> Option<&Original> {
    match report {
        Report::Bounce(b) => Some(&b.original),
        Report::Complaint(c) => Some(&c.original),
        _ => None,
    }
}

/// Local parts of `b-…@<bounce domain>` addresses in the original's headers.
fn quoted_tokens(orig: &Original, bounce_domain: &str) -> Vec<String> {
    let suffix = format!("@{}", bounce_domain.to_ascii_lowercase());
    let mut out = Vec::new();
    for (_, value) in &orig.headers {
        let lower = value.to_ascii_lowercase();
        let mut from = 0;
        while let Some(at) = lower[from..].find(&suffix) {
            let at = from + at;
            let start = lower[..at]
                .char_indices()
                .rev()
                .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '-'))
                .map_or(0, |(i, c)| i + c.len_utf8());
            let local = &lower[start..at];
            if local.starts_with("b-") && out.len() < MAX_TOKENS {
                out.push(local.to_string());
            }
            from = at + suffix.len();
        }
    }
    out
}

/// Addresses in a header value (`a@b`, `Name <a@b>`, lists).
fn addresses(value: &str) -> impl Iterator<Item = String> + '_ {
    value
        .split([',', ';', ' ', '<', '>', '"', '\t'])
        .filter(|w| w.contains('@') && w.len() <= 320)
        .map(|w| {
            w.trim_matches(|c: char| "()[]'".contains(c))
                .to_ascii_lowercase()
        })
}

/// The report's candidate addresses for `r`, lowercased, that match it.
fn matching<'a>(r: &MailRef, candidates: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in candidates {
        let c = c
            .trim()
            .trim_start_matches("rfc822;")
            .trim()
            .to_ascii_lowercase();
        if r.matches(&c) && !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// Attributes a parsed report.
pub fn attribute(i: &Inputs<'_>, report: &Report) -> Verdict {
    let tokens = match tokens(i, report) {
        Ok(t) => t,
        Err(()) => return Verdict::Forged,
    };
    if tokens.is_empty() {
        return Verdict::Ignored("no token of ours".into());
    }
    let mut found: Vec<Finding> = Vec::new();
    for (purpose, r) in &tokens {
        // a shared token could be replayed by any recipient of its
        // message against others at the domain: none are made, none count
        if r.shared {
            continue;
        }
        // the recipient's address while the spool still has its record
        let known = (i.record)(r.recipient)
            .filter(|(c, e)| *c == r.campaign && r.matches(e))
            .map(|(_, e)| e.to_ascii_lowercase());
        let mut add = |email: String, feedback: Feedback| {
            if found.len() < MAX_FINDINGS
                && !found
                    .iter()
                    .any(|f| f.email == email && f.campaign == r.campaign)
            {
                found.push(Finding {
                    campaign: r.campaign,
                    recipient: r.recipient,
                    shared: r.shared,
                    email,
                    feedback,
                });
            }
        };
        if *purpose == Purpose::Unsubscribe {
            // only the recipient's own address unsubscribes it
            let who = i.from.map(str::to_ascii_lowercase).filter(|f| r.matches(f));
            if let Some(email) = who {
                add(
                    email,
                    Feedback {
                        kind: FeedbackKind::Subscription,
                        source: Some("UnsubscribeHeader".into()),
                        ..Feedback::default()
                    },
                );
            }
            continue;
        }
        match report {
            Report::Bounce(b) => {
                let from = b.original.get("From").map(str::to_string);
                // the quoted original's To: a personalized message's is
                // its recipient
                let quoted_to: Vec<String> = b
                    .original
                    .get("To")
                    .map(|v| addresses(v).collect())
                    .unwrap_or_default();
                for (n, rcpt) in b.recipients.iter().enumerate() {
                    if !rcpt.action.eq_ignore_ascii_case("failed") {
                        continue;
                    }
                    let names = [
                        Some(rcpt.email.as_str()),
                        rcpt.original_recipient.as_deref(),
                    ];
                    let mut emails = matching(r, names.into_iter().flatten());
                    // the token names the recipient even where the report
                    // gives another address (a forward, an alias)
                    if emails.is_empty() && b.recipients.len() == 1 {
                        emails.extend(known.clone());
                        if emails.is_empty() {
                            emails = matching(r, quoted_to.iter().map(String::as_str));
                        }
                    }
                    for email in emails {
                        add(
                            email,
                            Feedback {
                                kind: FeedbackKind::Bounce,
                                feedback_id: format!("{}-{n:03}", i.report_id),
                                bounce_type: Some(rcpt.bounce_type.into()),
                                bounce_sub_type: Some(rcpt.bounce_sub_type.into()),
                                action: Some("failed".into()),
                                status: rcpt.status.clone(),
                                diagnostic_code: rcpt.diagnostic_code.clone(),
                                reporting_mta: b.reporting_mta.clone(),
                                remote_mta_ip: rcpt.remote_mta_ip.clone(),
                                from: from.clone(),
                                ..Feedback::default()
                            },
                        );
                    }
                }
            }
            Report::Complaint(c) => {
                let to: Vec<String> = c
                    .original
                    .headers
                    .iter()
                    .filter(|(n, _)| n.eq_ignore_ascii_case("To"))
                    .flat_map(|(_, v)| addresses(v))
                    .collect();
                let named = c
                    .original_rcpt_to
                    .iter()
                    .map(String::as_str)
                    .chain(to.iter().map(String::as_str));
                let mut emails = matching(r, named);
                if emails.is_empty() {
                    emails.extend(known.clone());
                }
                let from = c.original.get("From").map(str::to_string);
                for (n, email) in emails.into_iter().enumerate() {
                    add(
                        email,
                        Feedback {
                            kind: FeedbackKind::Complaint,
                            feedback_id: format!("{}-{n:03}", i.report_id),
                            feedback_type: Some(c.feedback_type.clone()),
                            user_agent: c.user_agent.clone(),
                            arrival_date: c.arrival_date.clone(),
                            from: from.clone(),
                            ..Feedback::default()
                        },
                    );
                }
            }
            Report::AutoReply { reason } => {
                return Verdict::Ignored(format!("auto-reply ({reason})"));
            }
            Report::Unrecognized { reason } => {
                if let (true, Some(email)) = (i.mail_from.is_empty(), known.clone()) {
                    add(
                        email,
                        Feedback {
                            kind: FeedbackKind::Bounce,
                            feedback_id: format!("{}-000", i.report_id),
                            bounce_type: Some("Undetermined".into()),
                            bounce_sub_type: Some("Undetermined".into()),
                            action: Some("failed".into()),
                            diagnostic_code: Some(format!("unrecognized report: {reason}")),
                            ..Feedback::default()
                        },
                    );
                } else {
                    return Verdict::Ignored(format!("not a report ({reason})"));
                }
            }
        }
    }
    if found.is_empty() {
        let what = match report {
            Report::Bounce(b)
                if b.recipients
                    .iter()
                    .all(|r| !r.action.eq_ignore_ascii_case("failed")) =>
            {
                return Verdict::Ignored("no failed recipient (a delay or success notice)".into());
            }
            Report::Bounce(_) => "bounce",
            Report::Complaint(_) => "complaint",
            _ => "message",
        };
        return Verdict::Unattributed(format!(
            "the {what} names no recipient its token speaks for"
        ));
    }
    Verdict::Found(found)
}

#[cfg(test)]
mod tests;
