//! The phrase tables of bounce texts: the templates of known MTAs, the
//! generic wording of other systems' bounces, delay-warning and
//! permanent-failure wording, and the phrases after which a recipient or
//! the reporting host is written.
//!
//! In: lowercase human text of a report. Out: the template name, or
//! whether a phrase set matches. Pure constant data and substring tests.
//! Exposure: the text is hostile network input; only substring matching.

use super::scan::contains_any;

/// Known templates: name and the lowercase phrases that identify it.
const TEMPLATES: &[(&str, &[&str])] = &[
    ("qmail", &["this is the qmail-send program"]),
    (
        "postfix",
        &[
            "this is the mail system at host",
            "this is the postfix program at host",
        ],
    ),
    ("courier", &["running the courier mail server"]),
    (
        "yahoo",
        &[
            "sorry, we were unable to deliver your message to the following address",
            "unable to deliver message to the following address",
        ],
    ),
    (
        "gmail",
        &[
            "delivery to the following recipient failed permanently",
            "delivery to the following recipients failed permanently",
            "delivery to the following recipient has been delayed",
            "technical details of permanent failure",
            "technical details of temporary failure",
        ],
    ),
    (
        "exchange",
        &[
            "your message did not reach some or all of the intended recipients",
            "delivery has failed to these recipients or groups",
            "the following recipient(s) cannot be reached",
            "diagnostic information for administrators",
        ],
    ),
    (
        "domino",
        &["not listed in domino directory", "was not delivered to:"],
    ),
    (
        "sendmail",
        &[
            "the following addresses had permanent fatal errors",
            "----- transcript of session follows -----",
            "this is a warning message only",
        ],
    ),
    (
        "exim",
        &[
            "this message was created automatically by mail delivery software",
            "could not be delivered to one or more of its recipients",
            "the following address(es) failed",
            "has not yet been delivered to one or more of its",
        ],
    ),
];

/// Wording of other systems' bounces (lowercase).
const GENERIC: &[&str] = &[
    "could not be delivered",
    "couldn't be delivered",
    "undeliverable",
    "undelivered",
    "delivery failed",
    "delivery has failed",
    "delivery failure",
    "permanent error",
    "unable to deliver",
    "was not delivered",
    "wasn't delivered",
    "failed permanently",
    "message not delivered",
    "not be delivered",
    "message was not accepted",
    "returned mail",
    "mail delivery failed",
    "non-delivery",
    "has not yet been delivered",
    "delivery status notification",
    "не доставлено",
    "не удалось доставить",
    "nicht zugestellt",
    "no se pudo entregar",
    "impossible de remettre",
    "n'a pas pu être remis",
];

/// Phrases of delay warnings (lowercase).
pub(super) const DELAY: &[&str] = &[
    "has not yet been delivered",
    "not yet been delivered",
    "has been delayed",
    "delivery is delayed",
    "delivery delayed",
    "(delay)",
    "will be retried",
    "will continue to try",
    "still trying",
    "will keep trying",
    "this is a warning only",
    "warning message only",
    "delayed mail",
    "could not send message for past",
];

/// Phrases that make a report a definite failure even if it also speaks
/// of retrying (lowercase).
pub(super) const PERMANENT: &[&str] = &[
    "permanent error",
    "failed permanently",
    "permanent fatal error",
    "i've given up",
    "giving up",
    "this is a permanent",
];

/// Phrases after which the failed address is written inline (lowercase).
pub(super) const INLINE_RECIPIENT: &[&str] = &[
    "wasn't delivered to ",
    "was not delivered to ",
    "couldn't be delivered to ",
    "could not be delivered to ",
    "local mailbox ",
    "failed to deliver to ",
    "delivery to the following recipient failed permanently:",
];

/// Phrases after which a reporting host is named (lowercase).
pub(super) const REPORTING_HOST: &[&str] = &[
    "this is the mail system at host ",
    "this is the qmail-send program at ",
    "delivery status notification from ",
    "generating server: ",
];

/// The known template `lower` (lowercase human text) is written in.
pub(super) fn template(lower: &str) -> Option<&'static str> {
    TEMPLATES
        .iter()
        .find(|(_, phrases)| contains_any(lower, phrases))
        .map(|(name, _)| *name)
}

/// True when `lower` has the wording of a bounce.
pub(super) fn generic_wording(lower: &str) -> bool {
    contains_any(lower, GENERIC)
}
