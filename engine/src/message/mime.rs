//! MIME assembly of a message with mail-builder: one recipient's, or the
//! one message of a non-personalized campaign.
//!
//! Headers: From, To, Reply-To, Subject, Date, Message-ID, and for campaigns
//! with an unsubscribe URL the RFC 8058 pair `List-Unsubscribe` +
//! `List-Unsubscribe-Post: List-Unsubscribe=One-Click`. Bodies: text and/or
//! HTML (multipart/alternative when both), each in the transfer encoding
//! [`transfer::encode`] picks (mail-builder's own choice would send NUL,
//! bare CR and other control characters as `7bit`). Pure.
//!
//! Exposure: rendered values derive from recipient data. Whatever they hold,
//! the message is 7-bit with CRLF line ends only: bodies go through
//! [`transfer::encode`], every text header value through [`header_text`]
//! (control characters become spaces, so no value can end its header line or
//! add one), addresses are checked, and the unsubscribe URL is checked so
//! that it cannot break out of its header.

use std::borrow::Cow;

use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address as MbAddress;
use mail_builder::headers::raw::Raw;
use mail_builder::headers::url::URL;
use mail_builder::mime::{BodyPart, MimePart};

use crate::campaign::CampaignDef;
use crate::message::transfer;
use crate::template::Rendered;

/// Checks a rendered unsubscribe URL (RFC 8058 wants one HTTPS URI).
pub fn check_unsubscribe(url: &str) -> Result<(), String> {
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) {
        return Err(format!("list_unsubscribe {url:?} is not an http(s) URL"));
    }
    if url.len() > 900
        || url
            .bytes()
            .any(|b| !b.is_ascii_graphic() || b == b'<' || b == b'>')
    {
        return Err("list_unsubscribe URL contains spaces, angle brackets, control or non-ASCII characters, or is too long".into());
    }
    Ok(())
}

/// A text header value as it may be written: ASCII control characters (CR,
/// LF, NUL, TAB, ...) replaced by spaces. Borrowed when there are none.
pub fn header_text(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_control()) {
        Cow::Owned(
            s.chars()
                .map(|c| if c.is_ascii_control() { ' ' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(s)
    }
}

/// An address as it may be written into a header or an SMTP command.
fn wire_address(a: &str) -> Result<&str, String> {
    if a.is_empty()
        || !a
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>')
    {
        return Err(format!("address {a:?} cannot be written into a message"));
    }
    Ok(a)
}

fn named<'a>(name: Option<&'a str>, addr: &'a str) -> Result<MbAddress<'a>, String> {
    let addr = wire_address(addr)?;
    Ok(MbAddress::new_address(name.map(header_text), addr))
}

pub(crate) fn mailbox(s: &str) -> Result<MbAddress<'static>, String> {
    let m = crate::address::parse_mailbox(s)?;
    let email = wire_address(&m.address.email)?.to_string();
    Ok(match m.name {
        Some(n) => (header_text(&n).into_owned(), email).into(),
        None => email.into(),
    })
}

/// A text body part in the transfer encoding its content needs.
pub(crate) fn text_part<'a>(content_type: &'static str, text: &'a str) -> MimePart<'a> {
    let e = transfer::encode(text);
    MimePart::new(content_type, BodyPart::Text(e.text)).transfer_encoding(e.cte.name())
}

/// Builds the message (CRLF line ends, without DKIM signatures). `To` is
/// `rcpt` for a personalized campaign, else the campaign's `to` (or the
/// empty group `undisclosed-recipients:;`).
pub fn build(
    def: &CampaignDef,
    rcpt: &str,
    r: &Rendered,
    message_id: &str,
    date_secs: i64,
) -> Result<Vec<u8>, String> {
    let from = named(def.from_name.as_deref(), &def.from_addr)?;
    let to: MbAddress = match (&def.to, def.personalized) {
        (_, true) => wire_address(rcpt)?.into(),
        (Some(t), false) => mailbox(t)?,
        (None, false) => MbAddress::new_group(Some("undisclosed-recipients"), vec![]),
    };
    let mut b = MessageBuilder::new()
        .from(from)
        .to(to)
        .subject(header_text(&r.subject))
        .date(date_secs)
        .message_id(wire_address(message_id)?);
    if let Some(reply_to) = &def.reply_to {
        b = b.reply_to(mailbox(reply_to)?);
    }
    if let Some(url) = &r.list_unsubscribe {
        check_unsubscribe(url)?;
    }
    let targets: Vec<&str> = [&r.list_unsubscribe, &r.list_unsubscribe_mailto]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    if !targets.is_empty() {
        b = b.header("List-Unsubscribe", URL::new_list(targets.into_iter()));
    }
    if r.list_unsubscribe.is_some() {
        b = b.header(
            "List-Unsubscribe-Post",
            Raw::new("List-Unsubscribe=One-Click"),
        );
    }
    let text = r.text.as_deref().map(|t| text_part("text/plain", t));
    let html = r.html.as_deref().map(|h| text_part("text/html", h));
    let body = match (text, html) {
        (Some(t), Some(h)) => MimePart::new("multipart/alternative", vec![t, h]),
        (Some(part), None) | (None, Some(part)) => part,
        (None, None) => text_part("text/plain", ""),
    };
    // sized once: the bodies, their line ends made CRLF, and the headers
    let parts = r.html.as_ref().map_or(0, String::len) + r.text.as_ref().map_or(0, String::len);
    let mut out = Vec::with_capacity(parts + parts / 16 + 2048);
    b.body(body)
        .write_to(&mut out)
        .map_err(|e| format!("building the message failed: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests;
