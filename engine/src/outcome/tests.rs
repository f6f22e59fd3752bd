//! Table-driven tests of the classifier: every arm of the reply and failure
//! matches and every row of the subtype tables.

use super::*;

#[derive(Debug, PartialEq)]
enum Want {
    Delivered,
    Deferred(&'static str, &'static str),
    Bounced(&'static str, &'static str, &'static str),
}

fn got(o: &Outcome) -> Want {
    match o {
        Outcome::Delivered { .. } => Want::Delivered,
        Outcome::Deferred {
            status, delay_type, ..
        } => Want::Deferred(leak(status), delay_type),
        Outcome::Bounced {
            status,
            bounce_type,
            bounce_subtype,
            ..
        } => Want::Bounced(leak(status), bounce_type, bounce_subtype),
        Outcome::RenderFailed { .. } | Outcome::Rejected { .. } => {
            panic!("not a delivery outcome")
        }
    }
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

fn r(code: u16, esc: [u8; 3]) -> Reply {
    Reply::new(code, esc, "text")
}

#[test]
fn replies() {
    use Phase::*;
    use Want::*;
    let rows: &[(Phase, Reply, Want)] = &[
        (DataEnd, r(250, [2, 0, 0]), Delivered),
        (
            DataEnd,
            r(451, [4, 3, 0]),
            Deferred("4.3.0", "RecipientServerError"),
        ),
        (
            DataEnd,
            r(552, [5, 3, 4]),
            Bounced("5.3.4", "Transient", "MessageTooLarge"),
        ),
        (
            DataEnd,
            r(552, [5, 2, 3]),
            Bounced("5.2.3", "Transient", "MessageTooLarge"),
        ),
        (
            DataEnd,
            r(554, [5, 6, 0]),
            Bounced("5.6.0", "Transient", "ContentRejected"),
        ),
        (
            DataEnd,
            r(354, [0, 0, 0]),
            Deferred("4.5.0", "RecipientServerError"),
        ),
        (
            DataEnd,
            r(450, [4, 4, 7]),
            Deferred("4.4.7", "TransientCommunicationFailure"),
        ),
        (
            Rcpt,
            r(550, [5, 1, 1]),
            Bounced("5.1.1", "Permanent", "NoEmail"),
        ),
        (
            Rcpt,
            r(550, [5, 1, 0]),
            Bounced("5.1.0", "Permanent", "NoEmail"),
        ),
        (
            Rcpt,
            r(550, [5, 1, 6]),
            Bounced("5.1.6", "Permanent", "NoEmail"),
        ),
        (
            Rcpt,
            r(550, [5, 2, 1]),
            Bounced("5.2.1", "Permanent", "NoEmail"),
        ),
        (
            Rcpt,
            r(552, [5, 2, 2]),
            Bounced("5.2.2", "Transient", "MailboxFull"),
        ),
        (
            Rcpt,
            r(553, [0, 0, 0]),
            Bounced("5.0.0", "Permanent", "General"),
        ),
        (Rcpt, r(450, [4, 2, 2]), Deferred("4.2.2", "MailboxFull")),
        (Rcpt, r(451, [4, 7, 1]), Deferred("4.7.1", "SpamDetected")),
        (
            Rcpt,
            Reply::new(451, [4, 7, 1], "Greylisted, please try again later"),
            Deferred("4.7.1", "RecipientServerError"),
        ),
        (
            Rcpt,
            Reply::new(450, [4, 2, 0], "Recipient address rejected: Greylisted"),
            Deferred("4.2.0", "RecipientServerError"),
        ),
        (
            Rcpt,
            r(421, [4, 4, 2]),
            Deferred("4.4.2", "TransientCommunicationFailure"),
        ),
        (
            Rcpt,
            r(451, [5, 1, 1]),
            Deferred("4.0.0", "RecipientServerError"),
        ),
        (
            Rcpt,
            r(250, [2, 1, 5]),
            Deferred("4.5.0", "RecipientServerError"),
        ),
        (
            Mail,
            r(550, [5, 7, 1]),
            Bounced("5.7.1", "Permanent", "General"),
        ),
        (
            Mail,
            r(452, [4, 3, 1]),
            Deferred("4.3.1", "RecipientServerError"),
        ),
        (
            Mail,
            r(250, [0, 0, 0]),
            Deferred("4.5.0", "RecipientServerError"),
        ),
        (
            Data,
            r(554, [5, 5, 1]),
            Bounced("5.5.1", "Permanent", "General"),
        ),
        (
            Data,
            r(451, [0, 0, 0]),
            Deferred("4.0.0", "RecipientServerError"),
        ),
        (
            Data,
            r(354, [0, 0, 0]),
            Deferred("4.5.0", "RecipientServerError"),
        ),
        (
            Greeting,
            r(421, [4, 3, 2]),
            Deferred("4.3.2", "RecipientServerError"),
        ),
        (Greeting, r(554, [5, 7, 1]), Deferred("4.7.1", "IPFailure")),
        (
            Greeting,
            r(554, [0, 0, 0]),
            Deferred("4.0.0", "RecipientServerError"),
        ),
        (
            Greeting,
            r(220, [0, 0, 0]),
            Deferred("4.5.0", "RecipientServerError"),
        ),
        (
            Ehlo,
            r(550, [0, 0, 0]),
            Deferred("4.0.0", "RecipientServerError"),
        ),
        (
            Ehlo,
            r(501, [5, 5, 4]),
            Deferred("4.5.4", "RecipientServerError"),
        ),
        (Ehlo, r(550, [5, 7, 1]), Deferred("4.7.1", "IPFailure")),
        (
            Ehlo,
            r(421, [0, 0, 0]),
            Deferred("4.0.0", "RecipientServerError"),
        ),
        (
            StartTls,
            r(454, [4, 7, 0]),
            Deferred("4.7.0", "RecipientServerError"),
        ),
        (
            StartTls,
            r(501, [5, 5, 4]),
            Deferred("4.5.0", "RecipientServerError"),
        ),
        (
            StartTls,
            r(220, [0, 0, 0]),
            Deferred("4.5.0", "RecipientServerError"),
        ),
        (
            Rset,
            r(500, [0, 0, 0]),
            Deferred("4.5.0", "RecipientServerError"),
        ),
        (
            Rset,
            r(421, [0, 0, 0]),
            Deferred("4.0.0", "RecipientServerError"),
        ),
        (
            Rset,
            r(250, [0, 0, 0]),
            Deferred("4.5.0", "RecipientServerError"),
        ),
        (
            Connect,
            r(999, [0, 0, 0]),
            Deferred("4.5.0", "RecipientServerError"),
        ),
        (
            Connect,
            r(554, [0, 0, 0]),
            Bounced("5.0.0", "Permanent", "General"),
        ),
    ];
    for (phase, reply, want) in rows {
        let o = from_reply(*phase, reply);
        assert_eq!(&got(&o), want, "{phase:?} {reply}");
        if let Outcome::Deferred { diagnostic, .. } | Outcome::Bounced { diagnostic, .. } = &o {
            assert!(diagnostic.starts_with("smtp; "), "{diagnostic}");
        }
    }
}

#[test]
fn failures() {
    use Want::*;
    let rows: Vec<(SessionError, Want)> = vec![
        (
            SessionError::Dns(DnsFailure::NoDomain, "x".into()),
            Bounced("5.1.2", "Permanent", "General"),
        ),
        (
            SessionError::Dns(DnsFailure::NullMx, "x".into()),
            Bounced("5.1.10", "Permanent", "General"),
        ),
        (
            SessionError::Dns(DnsFailure::NoAddress, "x".into()),
            Deferred("4.4.4", "TransientCommunicationFailure"),
        ),
        (
            SessionError::Dns(DnsFailure::Temporary, "x".into()),
            Deferred("4.4.3", "TransientCommunicationFailure"),
        ),
        (
            SessionError::Connect(ConnectKind::Refused, "x".into()),
            Deferred("4.4.1", "TransientCommunicationFailure"),
        ),
        (
            SessionError::Connect(ConnectKind::Unreachable, "x".into()),
            Deferred("4.4.1", "TransientCommunicationFailure"),
        ),
        (
            SessionError::Connect(ConnectKind::Other, "x".into()),
            Deferred("4.4.1", "TransientCommunicationFailure"),
        ),
        (
            SessionError::Timeout(Phase::Connect),
            Deferred("4.4.1", "TransientCommunicationFailure"),
        ),
        (
            SessionError::Timeout(Phase::Greeting),
            Deferred("4.4.2", "TransientCommunicationFailure"),
        ),
        (
            SessionError::Timeout(Phase::DataEnd),
            Deferred("4.4.2", "TransientCommunicationFailure"),
        ),
        (
            SessionError::Closed(Phase::Data),
            Deferred("4.4.2", "TransientCommunicationFailure"),
        ),
        (
            SessionError::Closed(Phase::DataEnd),
            Deferred("4.4.2", "TransientCommunicationFailure"),
        ),
        (
            SessionError::Io(Phase::Mail, "reset".into()),
            Deferred("4.4.2", "TransientCommunicationFailure"),
        ),
        (
            SessionError::Tls("bad".into()),
            Deferred("4.7.0", "TransientCommunicationFailure"),
        ),
        (
            SessionError::TlsRequired("not offered".into()),
            Deferred("4.7.0", "TransientCommunicationFailure"),
        ),
        (
            SessionError::Protocol(Phase::Rcpt, "junk".into()),
            Deferred("4.5.0", "RecipientServerError"),
        ),
        (
            SessionError::Refused(Phase::Greeting, r(421, [4, 7, 0])),
            Deferred("4.7.0", "RecipientServerError"),
        ),
        (
            SessionError::Refused(Phase::Greeting, r(554, [0, 0, 0])),
            Deferred("4.0.0", "RecipientServerError"),
        ),
        (
            SessionError::Refused(Phase::Ehlo, r(550, [5, 7, 1])),
            Deferred("4.7.1", "IPFailure"),
        ),
    ];
    for (e, want) in &rows {
        assert_eq!(&got(&from_session_error(e)), want, "{e:?}");
    }
    assert!(matches!(
        expired("smtp; 421 x"),
        Outcome::Bounced {
            bounce_type: "Transient",
            ..
        }
    ));
}

#[test]
fn throttle_signals() {
    let p = crate::config::delivery::default_throttle_patterns();
    let t = |code, esc, text: &str| is_throttle(&Reply::new(code, esc, text), &p);
    assert!(t(421, [4, 3, 0], "service not available"));
    assert!(t(451, [4, 7, 1], "rate limited"));
    assert!(t(450, [0, 0, 0], "Too many connections from your IP"));
    assert!(t(452, [4, 3, 1], "Please SLOW DOWN"));
    assert!(!t(451, [4, 3, 0], "temporary lookup failure"));
    assert!(!t(451, [4, 7, 1], "Greylisted, please try again later"));
    assert!(!t(450, [4, 2, 0], "Recipient address rejected: Greylisted"));
    assert!(!t(550, [5, 7, 1], "too many connections"));
    assert!(!t(250, [2, 0, 0], "ok"));
}
