//! Auto-replies: out-of-office, vacation and challenge-response messages,
//! which are not bounces. Recognized by RFC 3834 `Auto-Submitted:
//! auto-replied`, the de-facto `X-Autoreply` / `X-Autorespond` family,
//! `Precedence: auto_reply`, Exchange's `X-MS-Exchange-Inbox-Rules-Loop`,
//! and subjects in common languages. `X-Auto-Response-Suppress` alone is
//! not a sign (Exchange puts it on many messages).
//!
//! In: the top-level header fields (lowercase names). Out: why the message
//! is an auto-reply, or None. The caller decides precedence (a report with
//! status fields or a known bounce template wins).
//! Exposure: hostile network input; only lowercase substring matching.

use super::mime::Mail;
use super::scan::{cap, contains_any, prefix};

/// Headers whose presence marks an auto-reply (lowercase names).
const HEADERS: &[&str] = &[
    "x-autoreply",
    "x-autorespond",
    "x-autoresponder",
    "x-autoreply-from",
    "x-mail-autoreply",
    "x-ms-exchange-inbox-rules-loop",
    "x-vacation",
    "x-cr-hashedpuzzle",
    "x-challenge",
];

/// Subject starts of auto-replies (lowercase).
const SUBJECT_PREFIXES: &[&str] = &[
    "auto:",
    "auto reply",
    "autoreply",
    "auto-reply",
    "auto response",
    "vacation",
    "away:",
    "ooo:",
    "ooo ",
];

/// Subject phrases of auto-replies anywhere in the subject (lowercase).
const SUBJECT_PHRASES: &[&str] = &[
    "out of office",
    "out of the office",
    "automatic reply",
    "autoreply",
    "auto-reply",
    "auto reply",
    "autoresponse",
    "auto response",
    "abwesenheitsnotiz",
    "automatische antwort",
    "réponse automatique",
    "reponse automatique",
    "absence du bureau",
    "respuesta automática",
    "respuesta automatica",
    "fuera de la oficina",
    "risposta automatica",
    "fuori ufficio",
    "automatisch antwoord",
    "afwezig",
    "autosvar",
    "automatické odpověď",
    "automatyczna odpowiedź",
    "resposta automática",
    "vacation reply",
    "on vacation",
    "away from the office",
    "please confirm your message",
    "please verify your email",
    "verify your email to me",
    "confirm your email to me",
    "challenge-response",
    "is using a spam filter",
    "sender verification",
];

/// Why `mail` is an auto-reply, if it is one.
pub(super) fn detect(mail: &Mail<'_>) -> Option<String> {
    for (name, value) in &mail.headers {
        let v = prefix(value, 64).trim().to_ascii_lowercase();
        let hit = match name.as_str() {
            "auto-submitted" => v.starts_with("auto-replied"),
            "precedence" => v == "auto_reply" || v == "auto-reply",
            "x-autoreply" | "x-autorespond" | "x-autoresponder" | "x-mail-autoreply"
            | "x-vacation" => !matches!(v.as_str(), "no" | "false" | "0"),
            n => HEADERS.contains(&n),
        };
        if hit {
            return Some(cap(&format!("{name}: {value}"), 200));
        }
    }
    let subject = mail.header("subject").unwrap_or_default();
    let lower = prefix(subject, 512).trim().to_lowercase();
    if SUBJECT_PREFIXES.iter().any(|p| lower.starts_with(p))
        || contains_any(&lower, SUBJECT_PHRASES)
    {
        return Some(cap(&format!("subject: {subject}"), 200));
    }
    None
}
