//! The one classifier of delivery results: every reply or session failure
//! becomes Delivered, Deferred or Bounced, with the SES bounce type/subtype
//! or DeliveryDelay `delayType` and the status/diagnostic to report.
//!
//! Pure functions (no I/O, no clock). Enhanced status codes (RFC 3463)
//! decide the subtype where present; the basic reply class decides the rest.
//! Exposure: reply text comes from remote servers; it is only copied into the
//! diagnostic, never interpreted beyond its codes.

use crate::delivery::smtp::{Phase, Reply, SessionError};

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
}

/// Classifies the reply that decided a recipient.
pub fn from_reply(phase: Phase, reply: &Reply) -> Outcome {
    let diagnostic = format!("smtp; {reply}");
    match reply.class() {
        2 if phase == Phase::DataEnd => Outcome::Delivered {
            reply: reply.to_string(),
        },
        5 => {
            let status = reply.enhanced().unwrap_or_else(|| "5.0.0".into());
            let (bounce_type, bounce_subtype) = bounce_kind(&reply.esc);
            Outcome::Bounced {
                status,
                diagnostic,
                bounce_type,
                bounce_subtype,
            }
        }
        // 4xx, and anything that is not a final success where one was due
        // (a 2xx/3xx out of place): try again later.
        _ => {
            let status = match reply.enhanced() {
                Some(s) if reply.class() == 4 => s,
                _ => "4.0.0".into(),
            };
            Outcome::Deferred {
                status,
                diagnostic,
                delay_type: delay_kind(&reply.esc),
            }
        }
    }
}

/// Classifies a session failure (no reply decided the recipient).
pub fn from_session_error(e: &SessionError) -> Outcome {
    match e {
        SessionError::Refused(phase, reply) => from_reply(*phase, reply),
        SessionError::Connect(_) | SessionError::Timeout(Phase::Connect) => Outcome::Deferred {
            status: "4.4.1".into(),
            diagnostic: format!("smtp; 421 4.4.1 {e}"),
            delay_type: "TransientCommunicationFailure",
        },
        SessionError::Timeout(_) | SessionError::Closed(_) | SessionError::Io(..) => {
            Outcome::Deferred {
                status: "4.4.2".into(),
                diagnostic: format!("smtp; 421 4.4.2 {e}"),
                delay_type: "TransientCommunicationFailure",
            }
        }
        SessionError::Tls(_) => Outcome::Deferred {
            status: "4.7.0".into(),
            diagnostic: format!("smtp; 421 4.7.0 {e}"),
            delay_type: "TransientCommunicationFailure",
        },
        SessionError::Protocol(..) => Outcome::Deferred {
            status: "4.5.0".into(),
            diagnostic: format!("smtp; 421 4.5.0 {e}"),
            delay_type: "RecipientServerError",
        },
    }
}

fn bounce_kind(esc: &[u8; 3]) -> (&'static str, &'static str) {
    match (esc[1], esc[2]) {
        (1, 1) | (1, 0) | (1, 10) => ("Permanent", "NoEmail"),
        (2, 2) => ("Transient", "MailboxFull"),
        (2, 3) | (3, 4) => ("Transient", "MessageTooLarge"),
        (6, _) => ("Transient", "ContentRejected"),
        _ => ("Permanent", "General"),
    }
}

fn delay_kind(esc: &[u8; 3]) -> &'static str {
    match (esc[1], esc[2]) {
        (2, 2) => "MailboxFull",
        (7, 1) => "SpamDetected",
        (4, _) => "TransientCommunicationFailure",
        (0, 0) => "RecipientServerError",
        _ => "RecipientServerError",
    }
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
mod tests {
    use super::*;

    fn r(code: u16, esc: [u8; 3]) -> Reply {
        Reply::new(code, esc, "text")
    }

    #[test]
    fn replies() {
        assert!(matches!(
            from_reply(Phase::DataEnd, &r(250, [2, 0, 0])),
            Outcome::Delivered { .. }
        ));
        let Outcome::Bounced {
            status,
            bounce_subtype,
            diagnostic,
            ..
        } = from_reply(Phase::Rcpt, &r(550, [5, 1, 1]))
        else {
            panic!()
        };
        assert_eq!((status.as_str(), bounce_subtype), ("5.1.1", "NoEmail"));
        assert_eq!(diagnostic, "smtp; 550 5.1.1 text");
        let Outcome::Deferred { status, .. } = from_reply(Phase::Rcpt, &r(451, [4, 3, 0])) else {
            panic!()
        };
        assert_eq!(status, "4.3.0");
        let Outcome::Bounced {
            status,
            bounce_type,
            ..
        } = from_reply(Phase::Mail, &r(554, [0, 0, 0]))
        else {
            panic!()
        };
        assert_eq!((status.as_str(), bounce_type), ("5.0.0", "Permanent"));
        assert!(matches!(
            from_reply(Phase::DataEnd, &r(552, [5, 3, 4])),
            Outcome::Bounced {
                bounce_subtype: "MessageTooLarge",
                ..
            }
        ));
        // a 250 to RCPT is not a delivery by itself
        assert!(matches!(
            from_reply(Phase::Rcpt, &r(250, [0, 0, 0])),
            Outcome::Deferred { .. }
        ));
    }

    #[test]
    fn failures() {
        assert!(matches!(
            from_session_error(&SessionError::Connect("refused".into())),
            Outcome::Deferred {
                delay_type: "TransientCommunicationFailure",
                ..
            }
        ));
        assert!(matches!(
            from_session_error(&SessionError::Refused(Phase::Greeting, r(421, [4, 7, 0]))),
            Outcome::Deferred { .. }
        ));
        assert!(matches!(
            from_session_error(&SessionError::Refused(Phase::Greeting, r(554, [5, 7, 1]))),
            Outcome::Bounced { .. }
        ));
        assert!(matches!(
            from_session_error(&SessionError::Closed(Phase::DataEnd)),
            Outcome::Deferred { .. }
        ));
    }
}
