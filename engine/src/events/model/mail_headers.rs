//! `mail.headers` of an event: the headers sent, kept as the compact text
//! the journal carries and split into SES's `{name, value}` list only while
//! written, or, when no message was produced, the headers it would have
//! started with; and the Date among them (`commonHeaders.date`). Pure.

use serde::Serialize;
use serde::ser::{SerializeSeq, Serializer};

use super::Context;
use crate::events::detail::Detail;
use crate::message::headers;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// `mail.headers`, written as SES's list of `{name, value}`: the headers
/// sent, kept as their compact text (one `Name: value` per line, see
/// [`headers::fields`]) and split only while written, or the headers a
/// message would have started with.
#[derive(Debug, Clone, PartialEq)]
pub enum MailHeaders {
    Sent(String),
    Built(Vec<Header>),
}

impl Serialize for MailHeaders {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MailHeaders::Built(list) => list.serialize(s),
            MailHeaders::Sent(text) => {
                let mut seq = s.serialize_seq(None)?;
                for (name, value) in headers::fields(text) {
                    seq.serialize_element(&HeaderRef { name, value })?;
                }
                seq.end()
            }
        }
    }
}

#[derive(Serialize)]
struct HeaderRef<'a> {
    name: &'a str,
    value: &'a str,
}

fn header(name: &str, value: &str) -> Header {
    Header {
        name: name.to_string(),
        value: value.to_string(),
    }
}

/// `mail.headers` and the Date value: the headers sent, or those the
/// message would have started with when none was produced.
pub(super) fn of(c: &Context<'_>, d: &mut Detail, to: &str, at_ms: u64) -> (MailHeaders, String) {
    if !d.headers.is_empty() {
        let date = headers::fields(&d.headers)
            .find(|(n, _)| n.eq_ignore_ascii_case("Date"))
            .map(|(_, v)| v.to_string());
        if let Some(date) = date {
            return (MailHeaders::Sent(std::mem::take(&mut d.headers)), date);
        }
    }
    let def = c.campaign;
    let date = mail_builder::headers::date::Date::new((at_ms / 1000) as i64).to_rfc822();
    let mut h = vec![
        header("From", &def.from),
        header("To", to),
        header("Subject", &d.subject),
        header("Date", &date),
        header(
            "Message-ID",
            &format!("<{}@{}>", c.message_id, def.from_domain()),
        ),
    ];
    if let Some(r) = &def.reply_to {
        h.push(header("Reply-To", r));
    }
    (MailHeaders::Built(h), date)
}
