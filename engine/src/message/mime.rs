//! MIME assembly of a message with mail-builder: one recipient's, or the
//! one message of a non-personalized campaign.
//!
//! Headers: From, To, Reply-To, Subject, Date, Message-ID, and for campaigns
//! with an unsubscribe URL the RFC 8058 pair `List-Unsubscribe` +
//! `List-Unsubscribe-Post: List-Unsubscribe=One-Click`. Bodies: text and/or
//! HTML (multipart/alternative when both). Pure. Exposure: rendered values
//! derive from recipient data; the unsubscribe URL is checked so that it
//! cannot break out of its header.

use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address as MbAddress;
use mail_builder::headers::raw::Raw;
use mail_builder::headers::url::URL;

use crate::campaign::CampaignDef;
use crate::message::template::Rendered;

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

fn mailbox(s: &str) -> Result<MbAddress<'static>, String> {
    let m = crate::address::parse_mailbox(s)?;
    Ok(match m.name {
        Some(n) => (n, m.address.email).into(),
        None => m.address.email.into(),
    })
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
    let from: MbAddress = match &def.from_name {
        Some(n) => (n.as_str(), def.from_addr.as_str()).into(),
        None => def.from_addr.as_str().into(),
    };
    let to: MbAddress = match (&def.to, def.personalized) {
        (_, true) => rcpt.into(),
        (Some(t), false) => mailbox(t)?,
        (None, false) => MbAddress::new_group(Some("undisclosed-recipients"), vec![]),
    };
    let mut b = MessageBuilder::new()
        .from(from)
        .to(to)
        .subject(r.subject.as_str())
        .date(date_secs)
        .message_id(message_id);
    if let Some(reply_to) = &def.reply_to {
        b = b.reply_to(mailbox(reply_to)?);
    }
    if let Some(url) = &r.list_unsubscribe {
        check_unsubscribe(url)?;
        b = b.header("List-Unsubscribe", URL::new(url.as_str())).header(
            "List-Unsubscribe-Post",
            Raw::new("List-Unsubscribe=One-Click"),
        );
    }
    if let Some(t) = &r.text {
        b = b.text_body(t.as_str());
    }
    if let Some(h) = &r.html {
        b = b.html_body(h.as_str());
    }
    b.write_to_vec()
        .map_err(|e| format!("building the message failed: {e}"))
}
