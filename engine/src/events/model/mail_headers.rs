//! `mail.headers` of an event: the headers sent, kept as the compact text
//! the journal carries and split into SES's `{name, value}` list only while
//! written, or, when no message was produced, the headers it would have
//! started with; and the Date among them (`commonHeaders.date`).
//!
//! Entries written by this version carry the headers sent already as
//! SES's JSON list, with their Date ([`Detail::headers_json`]): spliced
//! as they are. Entries of earlier versions carry the compact text: the
//! recipients of one shared message (a non-personalized transaction)
//! carry the same headers sent, so [`HeadersCache`] keeps the last headers
//! and, once they repeat, their JSON, and a run of such entries splits and
//! escapes them once. The cache also keeps the last timestamps written
//! (the entries of one commit share theirs) and the last detail decoded:
//! the entries of a shared message's recipients often carry the same
//! detail bytes, which are then decoded once.
//! Pure.

use std::sync::Arc;

use serde::Serialize;
use serde::ser::{SerializeSeq, Serializer};
use serde_json::value::RawValue;

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
///
/// `Json` is the headers sent already written as that list (from
/// [`HeadersCache`]).
#[derive(Debug, Clone)]
pub enum MailHeaders {
    Sent(String),
    Built(Vec<Header>),
    Json(Arc<Box<RawValue>>),
}

impl PartialEq for MailHeaders {
    fn eq(&self, other: &MailHeaders) -> bool {
        match (self, other) {
            (MailHeaders::Sent(a), MailHeaders::Sent(b)) => a == b,
            (MailHeaders::Built(a), MailHeaders::Built(b)) => a == b,
            (MailHeaders::Json(a), MailHeaders::Json(b)) => a.get() == b.get(),
            // the same list written two ways
            (a, b) => serde_json::to_string(a).ok() == serde_json::to_string(b).ok(),
        }
    }
}

impl Serialize for MailHeaders {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MailHeaders::Built(list) => list.serialize(s),
            MailHeaders::Json(raw) => raw.serialize(s),
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

/// The last headers sent, with their Date and, once a second entry
/// carried them too, their JSON.
#[derive(Default)]
pub struct HeadersCache {
    text: String,
    date: String,
    json: Option<Arc<Box<RawValue>>>,
    /// The last two timestamps written, and which to replace next.
    times: [(u64, String); 2],
    next: usize,
    /// The last entry detail's bytes and, once a second entry carried the
    /// same, their decoding.
    detail: (Vec<u8>, Option<Detail>),
}

impl HeadersCache {
    /// [`Detail::decode`] of `bytes`, decoded once for a run of entries
    /// that carry the same.
    pub fn detail(&mut self, bytes: &[u8]) -> Detail {
        let (last, decoded) = &mut self.detail;
        if last.as_slice() != bytes {
            last.clear();
            last.extend_from_slice(bytes);
            *decoded = None;
            return Detail::decode(bytes);
        }
        decoded.get_or_insert_with(|| Detail::decode(bytes)).clone()
    }

    /// [`super::timestamp`] of `ms`, remembered.
    pub fn timestamp(&mut self, ms: u64) -> String {
        if let Some((_, t)) = self.times.iter().find(|(at, t)| *at == ms && !t.is_empty()) {
            return t.clone();
        }
        let t = super::timestamp(ms);
        self.times[self.next] = (ms, t.clone());
        self.next = 1 - self.next;
        t
    }

    /// `mail.headers` and the Date of the headers sent `text` (`None`
    /// when they have no Date). Headers seen once (a personalized
    /// message's) are written straight from their text; when the next
    /// entry carries the same ones (a shared message's recipients), they
    /// are written as JSON once and spliced from then on.
    fn sent(&mut self, text: &mut String) -> Option<(MailHeaders, String)> {
        if !self.text.is_empty() && self.text == *text {
            if self.json.is_none() {
                let sent = MailHeaders::Sent(std::mem::take(text));
                self.json = serde_json::value::to_raw_value(&sent).ok().map(Arc::new);
            }
            if let Some(json) = &self.json {
                return Some((MailHeaders::Json(Arc::clone(json)), self.date.clone()));
            }
            return Some((MailHeaders::Sent(self.text.clone()), self.date.clone()));
        }
        let date = headers::fields(text)
            .find(|(n, _)| n.eq_ignore_ascii_case("Date"))
            .map(|(_, v)| v.to_string())?;
        self.text.clone_from(text);
        self.date.clone_from(&date);
        self.json = None;
        Some((MailHeaders::Sent(std::mem::take(text)), date))
    }
}

/// `mail.headers` and the Date value: the headers sent, or those the
/// message would have started with when none was produced.
pub(super) fn of(
    c: &Context<'_>,
    d: &mut Detail,
    to: &str,
    at_ms: u64,
    cache: &mut HeadersCache,
) -> (MailHeaders, String) {
    if let (Some(json), Some(date)) = (d.headers_json.take(), d.headers_date.take()) {
        return (MailHeaders::Json(Arc::new(json.0)), date);
    }
    if !d.headers.is_empty()
        && let Some(sent) = cache.sent(&mut d.headers)
    {
        return sent;
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
