//! An event's `mail` object: what every mail of a campaign shares
//! ([`Sender`]: source, identity, From, Reply-To, tags), written as JSON
//! once per campaign, and what is the recipient's own. [`Mail::write_json`]
//! writes the same bytes as serde from those parts, copying the
//! campaign's JSON and the headers sent as they are. Pure.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use serde::ser::{SerializeStruct, Serializer};

use super::MailHeaders;
use crate::campaign::CampaignDef;
use crate::events::json::{field, string, strings};

/// The fields every event of a campaign's mail shares.
#[derive(Debug, Clone, PartialEq)]
pub struct Sender {
    pub source: String,
    pub source_arn: String,
    pub sending_account_id: String,
    /// `commonHeaders.from`'s one entry.
    pub from: String,
    pub reply_to: Option<String>,
    pub tags: BTreeMap<String, Vec<String>>,
    /// `"source":…,"sourceArn":…,"sendingAccountId":…`
    ids_json: Vec<u8>,
    /// `"from":[…]`, and `,"replyTo":[…]` when there is one.
    from_json: Vec<u8>,
    /// The tags object.
    tags_json: Vec<u8>,
}

impl Sender {
    /// A campaign's sender, named by `source_arn` in account `account_id`.
    pub fn new(def: &CampaignDef, source_arn: &str, account_id: &str) -> Sender {
        let mut s = Sender {
            source: def.from_addr.clone(),
            source_arn: source_arn.to_string(),
            sending_account_id: account_id.to_string(),
            from: def.from.clone(),
            reply_to: def.reply_to.clone(),
            tags: super::tags(def),
            ids_json: Vec::new(),
            from_json: Vec::new(),
            tags_json: Vec::new(),
        };
        let out = &mut s.ids_json;
        field(out, b"\"source\":", &s.source);
        field(out, b",\"sourceArn\":", &s.source_arn);
        field(out, b",\"sendingAccountId\":", &s.sending_account_id);
        let out = &mut s.from_json;
        out.extend_from_slice(b"\"from\":[");
        string(out, &s.from);
        out.push(b']');
        if let Some(r) = &s.reply_to {
            out.extend_from_slice(b",\"replyTo\":[");
            string(out, r);
            out.push(b']');
        }
        // writing to a Vec cannot fail
        let _ = serde_json::to_writer(&mut s.tags_json, &s.tags);
        s
    }
}

/// `mail.commonHeaders`, less what the [`Sender`] and the mail hold (From,
/// Reply-To, the message id).
#[derive(Debug, Clone, PartialEq)]
pub struct CommonHeaders {
    pub date: String,
    pub to: Vec<String>,
    pub subject: String,
}

/// An event's `mail` object.
#[derive(Debug, Clone, PartialEq)]
pub struct Mail {
    pub timestamp: String,
    pub message_id: String,
    pub sender: Arc<Sender>,
    pub destination: Vec<String>,
    pub headers_truncated: bool,
    pub headers: MailHeaders,
    pub common_headers: CommonHeaders,
}

impl Mail {
    /// Appends the JSON object: the bytes serde writes for it.
    pub fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        let s = &*self.sender;
        field(out, b"{\"timestamp\":", &self.timestamp);
        field(out, b",\"messageId\":", &self.message_id);
        out.push(b',');
        out.extend_from_slice(&s.ids_json);
        out.extend_from_slice(b",\"destination\":");
        strings(out, &self.destination);
        out.extend_from_slice(if self.headers_truncated {
            b",\"headersTruncated\":true,\"headers\":"
        } else {
            b",\"headersTruncated\":false,\"headers\":"
        });
        match &self.headers {
            MailHeaders::Json(raw) => out.extend_from_slice(raw.get().as_bytes()),
            h => serde_json::to_writer(&mut *out, h)?,
        }
        out.extend_from_slice(b",\"commonHeaders\":{");
        out.extend_from_slice(&s.from_json);
        let c = &self.common_headers;
        field(out, b",\"date\":", &c.date);
        out.extend_from_slice(b",\"to\":");
        strings(out, &c.to);
        field(out, b",\"messageId\":", &self.message_id);
        field(out, b",\"subject\":", &c.subject);
        out.extend_from_slice(b"},\"tags\":");
        out.extend_from_slice(&s.tags_json);
        out.push(b'}');
        Ok(())
    }
}

impl Serialize for Mail {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let s = &*self.sender;
        let mut m = ser.serialize_struct("Mail", 10)?;
        m.serialize_field("timestamp", &self.timestamp)?;
        m.serialize_field("messageId", &self.message_id)?;
        m.serialize_field("source", &s.source)?;
        m.serialize_field("sourceArn", &s.source_arn)?;
        m.serialize_field("sendingAccountId", &s.sending_account_id)?;
        m.serialize_field("destination", &self.destination)?;
        m.serialize_field("headersTruncated", &self.headers_truncated)?;
        m.serialize_field("headers", &self.headers)?;
        m.serialize_field("commonHeaders", &Common { mail: self })?;
        m.serialize_field("tags", &s.tags)?;
        m.end()
    }
}

/// `mail.commonHeaders` as serde writes it.
struct Common<'a> {
    mail: &'a Mail,
}

impl Serialize for Common<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let (s, c) = (&*self.mail.sender, &self.mail.common_headers);
        let mut m = ser.serialize_struct("CommonHeaders", 6)?;
        m.serialize_field("from", &[&s.from])?;
        if let Some(r) = &s.reply_to {
            m.serialize_field("replyTo", &[r])?;
        }
        m.serialize_field("date", &c.date)?;
        m.serialize_field("to", &c.to)?;
        m.serialize_field("messageId", &self.mail.message_id)?;
        m.serialize_field("subject", &c.subject)?;
        m.end()
    }
}
