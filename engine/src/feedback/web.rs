//! One-click unsubscribe over HTTP (RFC 8058) on the service's listener:
//! `POST /unsubscribe/<token>` (what mailbox providers send, body
//! `List-Unsubscribe=One-Click`, required) unsubscribes the recipient the signed
//! token names, for its list topic, and answers `200` with a short page
//! (never a redirect); `GET` shows a confirmation page whose button POSTs.
//! A token that does not verify does nothing and answers `404`. A repeat
//! is answered as the first was, without a second event. Blocking (the
//! unsubscribe is made durable): run off the async threads.
//! Exposure: the token and request come from anyone on the network.

use super::inbound::Handler;
use super::token::UnsubRef;

/// The path prefix of unsubscribe links.
pub const PATH: &str = "/unsubscribe/";

/// An answer: status and HTML body.
pub type Answer = (u16, String);

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{title}</title></head>\n<body style=\"font-family:sans-serif;max-width:32em;margin:3em auto\"><h1>{title}</h1>{body}</body></html>\n"
    )
}

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn verify(handler: &Handler, token: &str) -> Option<UnsubRef> {
    handler.keys.verify_url_token(token)
}

fn not_valid() -> Answer {
    (
        404,
        page(
            "Link not valid",
            "<p>This unsubscribe link is not valid.</p>",
        ),
    )
}

/// `GET`: the confirmation page.
pub fn confirm(handler: &Handler, token: &str) -> Answer {
    let Some(u) = verify(handler, token) else {
        return not_valid();
    };
    let what = match &u.topic {
        Some(t) => format!(" from <b>{}</b>", esc(t)),
        None => String::new(),
    };
    let body = format!(
        "<p>Unsubscribe <b>{}</b>{what}?</p>\n<form method=\"post\"><input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\"><button type=\"submit\">Unsubscribe</button></form>",
        esc(&u.email)
    );
    (200, page("Unsubscribe", &body))
}

/// `POST` with `body`: unsubscribes.
pub fn unsubscribe(handler: &Handler, token: &str, body: &[u8]) -> Answer {
    let Some(u) = verify(handler, token) else {
        return not_valid();
    };
    // RFC 8058: the form field says it is a one-click request
    let one_click = body
        .split(|&b| b == b'&')
        .any(|f| f.trim_ascii() == b"List-Unsubscribe=One-Click");
    if !one_click {
        return (
            400,
            page(
                "Not an unsubscribe request",
                "<p>The request does not say <code>List-Unsubscribe=One-Click</code>.</p>",
            ),
        );
    }
    let already = handler
        .suppression
        .as_ref()
        .is_some_and(|l| l.contains(&u.email, u.topic.as_deref()));
    if !already && let Err(e) = handler.unsubscribe(&u) {
        tracing::error!(error = %e, "an unsubscribe could not be recorded");
        return (
            503,
            page(
                "Try again",
                "<p>Your request could not be recorded just now. Please try again later.</p>",
            ),
        );
    }
    (
        200,
        page(
            "Unsubscribed",
            &format!(
                "<p><b>{}</b> will get no more of this mail.</p>",
                esc(&u.email)
            ),
        ),
    )
}
