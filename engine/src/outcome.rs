//! The one classifier of delivery results: every reply and every session
//! failure becomes Delivered, Deferred or Bounced, with the status to
//! report, the SES bounce type/subtype or DeliveryDelay `delayType`, and
//! whether it signals throttling.
//!
//! The matches over phases, reply classes and failure kinds are exhaustive
//! (no catch-all arm), so a new kind of failure cannot be classified by
//! accident. The bounce subtype of a permanent reply comes from its enhanced
//! status code (RFC 3463) through a table. Pure: no I/O, no clock.
//! Exposure: reply text comes from remote servers; it is only copied into
//! the diagnostic and matched against the configured throttle patterns.

use crate::smtp::{ConnectKind, DnsFailure, Phase, Reply, SessionError};

/// What happened to one recipient on one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted by the receiving server.
    Delivered { reply: String },
    /// Temporary failure: retry later.
    Deferred {
        status: String,
        diagnostic: String,
        delay_type: &'static str,
    },
    /// Permanent failure.
    Bounced {
        status: String,
        diagnostic: String,
        bounce_type: &'static str,
        bounce_subtype: &'static str,
    },
    /// The message could not be produced (template, address or signing).
    RenderFailed { message: String },
    /// Not sent, by an operator's decision (a cancelled campaign): SES's
    /// `Reject`.
    Rejected { reason: String },
}

/// The class of a reply code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Positive,
    Intermediate,
    Transient,
    Permanent,
    Invalid,
}

fn class(code: u16) -> Class {
    match code / 100 {
        2 => Class::Positive,
        3 => Class::Intermediate,
        4 => Class::Transient,
        5 => Class::Permanent,
        _ => Class::Invalid,
    }
}

/// Bounce type and subtype by enhanced status code (subject, detail); the
/// first matching row wins, `None` matching any detail. Unlisted codes are
/// `Permanent`/`General`.
const BOUNCE_SUBTYPES: &[(u8, Option<u8>, &str, &str)] = &[
    (1, Some(1), "Permanent", "NoEmail"), // bad destination mailbox
    (1, Some(0), "Permanent", "NoEmail"), // other address status
    (1, Some(6), "Permanent", "NoEmail"), // mailbox has moved
    (2, Some(1), "Permanent", "NoEmail"), // mailbox disabled
    (2, Some(2), "Transient", "MailboxFull"),
    (2, Some(3), "Transient", "MessageTooLarge"), // message length exceeds limit
    (3, Some(4), "Transient", "MessageTooLarge"), // too big for system
    (6, None, "Transient", "ContentRejected"),
];

/// DeliveryDelay types by enhanced status code, as above; unlisted codes
/// are `RecipientServerError`.
const DELAY_TYPES: &[(u8, Option<u8>, &str)] = &[
    (2, Some(2), "MailboxFull"),
    (7, Some(1), "SpamDetected"),
    (4, None, "TransientCommunicationFailure"),
];

fn bounce_kind(esc: &[u8; 3]) -> (&'static str, &'static str) {
    BOUNCE_SUBTYPES
        .iter()
        .find(|(s, d, _, _)| *s == esc[1] && d.is_none_or(|d| d == esc[2]))
        .map_or(("Permanent", "General"), |(_, _, t, st)| (*t, *st))
}

fn delay_kind(esc: &[u8; 3]) -> &'static str {
    DELAY_TYPES
        .iter()
        .find(|(s, d, _)| *s == esc[1] && d.is_none_or(|d| d == esc[2]))
        .map_or("RecipientServerError", |(_, _, t)| *t)
}

fn deferred(status: &str, diagnostic: String, delay_type: &'static str) -> Outcome {
    Outcome::Deferred {
        status: status.into(),
        diagnostic,
        delay_type,
    }
}

fn bounced(status: &str, diagnostic: String) -> Outcome {
    Outcome::Bounced {
        status: status.into(),
        diagnostic,
        bounce_type: "Permanent",
        bounce_subtype: "General",
    }
}

/// A reply that came where a final success was due, but was not one.
fn out_of_place(phase: Phase, reply: &Reply) -> Outcome {
    deferred(
        "4.5.0",
        format!("smtp; {reply} (unexpected reply to {})", phase.name()),
        "RecipientServerError",
    )
}

fn transient(reply: &Reply) -> Outcome {
    let status = reply
        .enhanced()
        .filter(|s| s.starts_with('4'))
        .unwrap_or_else(|| "4.0.0".into());
    // greylisting (often `451 4.7.1 Greylisted`) is a policy delay of the
    // receiving server that any sender gets once, not a spam verdict
    let delay_type = if is_greylisting(reply) {
        "RecipientServerError"
    } else {
        delay_kind(&reply.esc)
    };
    deferred(&status, format!("smtp; {reply}"), delay_type)
}

/// A `5xx` greeting or EHLO/HELO refusal: deferred with the reply's
/// enhanced code made temporary (`5.7.1` becomes `4.7.1`). A policy code
/// (`x.7.x`, typically the sending IP on a blocklist) is an `IPFailure`.
fn connection_refused(phase: Phase, reply: &Reply) -> Outcome {
    let status = match reply.esc {
        [5, subject, detail] => format!("4.{subject}.{detail}"),
        _ => "4.0.0".into(),
    };
    let delay_type = if reply.esc[1] == 7 {
        "IPFailure"
    } else {
        "RecipientServerError"
    };
    deferred(
        &status,
        format!(
            "smtp; {reply} (the server refused the connection at {})",
            phase.name()
        ),
        delay_type,
    )
}

/// Whether a temporary reply is greylisting (its text says so).
pub fn is_greylisting(reply: &Reply) -> bool {
    if reply.class() != 4 {
        return false;
    }
    let text = reply.text.to_ascii_lowercase();
    [
        "greylist",
        "graylist",
        "grey-list",
        "gray-list",
        "grey list",
        "gray list",
    ]
    .iter()
    .any(|w| text.contains(w))
}

fn permanent(reply: &Reply) -> Outcome {
    let status = reply
        .enhanced()
        .filter(|s| s.starts_with('5'))
        .unwrap_or_else(|| "5.0.0".into());
    let (bounce_type, bounce_subtype) = bounce_kind(&reply.esc);
    Outcome::Bounced {
        status,
        diagnostic: format!("smtp; {reply}"),
        bounce_type,
        bounce_subtype,
    }
}

/// Classifies the reply that decided a recipient at `phase`.
pub fn from_reply(phase: Phase, reply: &Reply) -> Outcome {
    match (phase, class(reply.code)) {
        // the only success: the end of data accepted
        (Phase::DataEnd, Class::Positive) => Outcome::Delivered {
            reply: reply.to_string(),
        },
        // temporary refusals anywhere
        (
            Phase::Connect
            | Phase::Greeting
            | Phase::Ehlo
            | Phase::StartTls
            | Phase::Mail
            | Phase::Rcpt
            | Phase::Data
            | Phase::DataEnd
            | Phase::Rset,
            Class::Transient,
        ) => transient(reply),
        // permanent refusals of the sender, the recipient or the message
        (
            Phase::Connect | Phase::Mail | Phase::Rcpt | Phase::Data | Phase::DataEnd,
            Class::Permanent,
        ) => permanent(reply),
        // a refused greeting or EHLO/HELO speaks of the connection (our IP
        // on a blocklist, our HELO name), never of a recipient: a site
        // fault, deferred (as Postfix does with smtp_skip_5xx_greeting)
        (Phase::Greeting | Phase::Ehlo, Class::Permanent) => connection_refused(phase, reply),
        // a refused STARTTLS or RSET says nothing about the recipient
        (Phase::StartTls | Phase::Rset, Class::Permanent) => deferred(
            "4.5.0",
            format!("smtp; {reply} (refused {})", phase.name()),
            "RecipientServerError",
        ),
        // a reply that is not what the phase can end with
        (
            Phase::Connect
            | Phase::Greeting
            | Phase::Ehlo
            | Phase::StartTls
            | Phase::Mail
            | Phase::Rcpt
            | Phase::Data
            | Phase::Rset,
            Class::Positive,
        )
        | (
            Phase::Connect
            | Phase::Greeting
            | Phase::Ehlo
            | Phase::StartTls
            | Phase::Mail
            | Phase::Rcpt
            | Phase::Data
            | Phase::DataEnd
            | Phase::Rset,
            Class::Intermediate | Class::Invalid,
        ) => out_of_place(phase, reply),
    }
}

/// Classifies a session failure (no reply decided the recipient).
pub fn from_session_error(e: &SessionError) -> Outcome {
    match e {
        SessionError::Refused(phase, reply) => from_reply(*phase, reply),
        SessionError::Dns(DnsFailure::NoDomain, _) => {
            bounced("5.1.2", format!("smtp; 550 5.1.2 {e}"))
        }
        SessionError::Dns(DnsFailure::NullMx, _) => {
            bounced("5.1.10", format!("smtp; 556 5.1.10 {e}"))
        }
        SessionError::Dns(DnsFailure::NoAddress, _) => deferred(
            "4.4.4",
            format!("smtp; 451 4.4.4 {e}"),
            "TransientCommunicationFailure",
        ),
        SessionError::Dns(DnsFailure::Temporary, _) => deferred(
            "4.4.3",
            format!("smtp; 451 4.4.3 {e}"),
            "TransientCommunicationFailure",
        ),
        SessionError::Connect(ConnectKind::Source, _) => {
            deferred("4.4.1", format!("smtp; 421 4.4.1 {e}"), "IPFailure")
        }
        SessionError::Connect(
            ConnectKind::Refused
            | ConnectKind::Unreachable
            | ConnectKind::Local
            | ConnectKind::Other,
            _,
        )
        | SessionError::Timeout(Phase::Connect) => deferred(
            "4.4.1",
            format!("smtp; 421 4.4.1 {e}"),
            "TransientCommunicationFailure",
        ),
        SessionError::Timeout(
            Phase::Greeting
            | Phase::Ehlo
            | Phase::StartTls
            | Phase::Mail
            | Phase::Rcpt
            | Phase::Data
            | Phase::DataEnd
            | Phase::Rset,
        )
        | SessionError::Closed(_)
        | SessionError::Io(..) => deferred(
            "4.4.2",
            format!("smtp; 421 4.4.2 {e}"),
            "TransientCommunicationFailure",
        ),
        SessionError::Tls(_) | SessionError::TlsRequired(_) => deferred(
            "4.7.0",
            format!("smtp; 421 4.7.0 {e}"),
            "TransientCommunicationFailure",
        ),
        SessionError::Protocol(..) => deferred(
            "4.5.0",
            format!("smtp; 421 4.5.0 {e}"),
            "RecipientServerError",
        ),
    }
}

/// Whether a reply asks the sender to slow down: 421, any 4.7.x, or a
/// temporary reply whose text contains one of `patterns` (given in lower
/// case, as the config stores them; the text is compared in lower case).
/// Greylisting is not (it delays each new sender once, whatever the rate).
pub fn is_throttle(reply: &Reply, patterns: &[String]) -> bool {
    if reply.class() != 4 || is_greylisting(reply) {
        return false;
    }
    if reply.code == 421 || (reply.esc[0] == 4 && reply.esc[1] == 7) {
        return true;
    }
    if patterns.is_empty() {
        return false;
    }
    let text = reply.text.to_ascii_lowercase();
    patterns
        .iter()
        .any(|p| !p.is_empty() && text.contains(p.as_str()))
}

/// The final bounce given when a recipient reaches the maximum age.
pub fn expired(last_diagnostic: &str) -> Outcome {
    Outcome::Bounced {
        status: "4.4.7".into(),
        diagnostic: format!("{last_diagnostic} (gave up: message expired)"),
        bounce_type: "Transient",
        bounce_subtype: "General",
    }
}

#[cfg(test)]
mod tests;
