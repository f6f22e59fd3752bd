//! A ready-made message made fit for the spool (pure): line ends made CRLF,
//! the header block checked (size, field count), `Bcc`, `Return-Path`,
//! the drop directory's `X-Envelope-From` / `X-Envelope-To` and the SES
//! headers `X-SES-CONFIGURATION-SET` / `X-SES-MESSAGE-TAGS` and Volley's
//! `X-Volley-Pool` taken out (they give the configuration set, event tags
//! and egress pool), a `Date`
//! added when missing (a missing `Message-ID` is added at production, the
//! same on every attempt), and the definition the spool stores with it
//! ([`CampaignDef`] with [`MessageMeta`]).
//!
//! Exposure: everything here comes from SMTP clients, the drop directory or
//! `sendmail` callers: hostile. Every problem is a [`Rejected`] that says
//! what is wrong; nothing panics on any input.

use std::collections::BTreeMap;

use crate::campaign::{CampaignDef, MessageMeta};

/// Largest header block accepted (a header bomb stops here).
pub const MAX_HEADER_BYTES: usize = 1 << 20;
/// Most header fields accepted.
pub const MAX_HEADER_FIELDS: usize = 2000;

/// Why a message is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("message is {size} bytes; the limit is {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("header block is larger than {MAX_HEADER_BYTES} bytes")]
    HeaderTooLarge,
    #[error("more than {MAX_HEADER_FIELDS} header fields")]
    TooManyFields,
    #[error("no From header and no envelope sender to make one from")]
    NoFrom,
    #[error("From header: {0}")]
    BadFrom(String),
    #[error("no recipients")]
    NoRecipients,
    #[error("{count} recipients; the limit is {limit}")]
    TooManyRecipients { count: usize, limit: usize },
    #[error("recipient {address:?}: {reason}")]
    BadRecipient { address: String, reason: String },
    #[error("configuration set {0:?} does not exist")]
    UnknownSet(String),
    #[error("X-Volley-Pool: egress pool {0:?} does not exist")]
    UnknownPool(String),
    #[error("X-SES-MESSAGE-TAGS: {0}")]
    BadTags(String),
}

/// What the message is checked against.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_size: usize,
    pub max_recipients: usize,
}

/// A message ready to be stored: its definition, recipients and bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub def: CampaignDef,
    pub rcpts: Vec<String>,
    pub message: Vec<u8>,
}

impl Prepared {
    /// What the spool stores for it.
    pub fn stored(&self) -> Vec<u8> {
        self.def.to_bytes_with_message(&self.message)
    }

    /// The From domain (identity checks, DKIM keys).
    pub fn from_addr(&self) -> &str {
        &self.def.from_addr
    }
}

/// One header field: its name and the whole field (name, value, folded
/// lines and the final CRLF).
pub(crate) struct Field<'a> {
    pub(crate) name: &'a str,
    pub(crate) raw: &'a [u8],
}

impl Field<'_> {
    pub(crate) fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// The unfolded value, trimmed (lossy UTF-8).
    pub(crate) fn value(&self) -> String {
        let raw = String::from_utf8_lossy(self.raw);
        let v = raw.split_once(':').map_or("", |(_, v)| v);
        v.replace("\r\n", "").trim().to_string()
    }
}

/// `raw` with every line ending in CRLF (bare LF and bare CR become CRLF),
/// ending in CRLF.
pub fn crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 50 + 2);
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if raw.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Splits a CRLF message into header fields and the body (the bytes after
/// the blank line). A line that is neither a field nor a continuation ends
/// the header block (it starts the body, as Postfix treats it).
pub(crate) fn split_fields(m: &[u8]) -> Result<(Vec<Field<'_>>, &[u8]), Rejected> {
    let mut fields: Vec<Field<'_>> = Vec::new();
    let mut pos = 0;
    while pos < m.len() {
        if pos > MAX_HEADER_BYTES {
            return Err(Rejected::HeaderTooLarge);
        }
        let end = memchr::memmem::find(&m[pos..], b"\r\n").map_or(m.len(), |e| pos + e + 2);
        let line = &m[pos..end];
        if line == b"\r\n" {
            return Ok((fields, &m[end..]));
        }
        if matches!(line[0], b' ' | b'\t') {
            if let Some(last) = fields.last_mut() {
                // a continuation: the field grows (the slices are adjacent)
                let start = last.raw.as_ptr() as usize - m.as_ptr() as usize;
                last.raw = &m[start..end];
                pos = end;
                continue;
            }
            return Ok((fields, &m[pos..]));
        }
        let colon = line.iter().position(|&b| b == b':');
        let name_ok = |n: &[u8]| !n.is_empty() && n.iter().all(|&b| (33..=126).contains(&b));
        match colon {
            Some(c) if name_ok(&line[..c]) => {
                if fields.len() >= MAX_HEADER_FIELDS {
                    return Err(Rejected::TooManyFields);
                }
                let name = std::str::from_utf8(&line[..c]).unwrap_or("");
                fields.push(Field { name, raw: line });
            }
            _ => return Ok((fields, &m[pos..])),
        }
        pos = end;
    }
    Ok((fields, &m[m.len()..]))
}

/// Parses `X-SES-MESSAGE-TAGS` (`name=value, name2=value2`): names and
/// values of letters, digits, `_`, `-`, `.`, `@` (SES's rule), at most 256
/// characters each, at most 50 tags.
pub fn parse_tags(v: &str) -> Result<BTreeMap<String, String>, String> {
    let mut tags = BTreeMap::new();
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 256
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.@".contains(&b))
    };
    for pair in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, val) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?} is not name=value"))?;
        let (k, val) = (k.trim(), val.trim());
        if !ok(k) || !ok(val) {
            return Err(format!(
                "{pair:?}: names and values are 1-256 letters, digits, _ - . @"
            ));
        }
        if k.starts_with("ses:") || k.starts_with("volley:") {
            return Err(format!("{k:?} is reserved"));
        }
        tags.insert(k.to_string(), val.to_string());
    }
    if tags.len() > 50 {
        return Err("more than 50 tags".into());
    }
    Ok(tags)
}

/// The configuration sets a message may name, and the default.
pub trait Sets {
    fn exists(&self, name: &str) -> bool;
    fn default_set(&self) -> Option<String>;
    /// Whether the egress pool `name` exists.
    fn pool_exists(&self, name: &str) -> bool;
}

impl Sets for crate::config::Config {
    fn exists(&self, name: &str) -> bool {
        self.configuration_sets.contains_key(name)
    }
    fn pool_exists(&self, name: &str) -> bool {
        self.egress.has_pool(name)
    }
    fn default_set(&self) -> Option<String> {
        self.events.default_configuration_set.clone()
    }
}

/// Checks the envelope recipients: each a valid address, at least one, at
/// most the limit; duplicates (same address) are dropped.
pub fn check_rcpts(rcpts: &[String], limits: &Limits) -> Result<Vec<String>, Rejected> {
    if rcpts.is_empty() {
        return Err(Rejected::NoRecipients);
    }
    let mut out: Vec<String> = Vec::with_capacity(rcpts.len());
    for r in rcpts {
        let a = crate::address::parse(r).map_err(|reason| Rejected::BadRecipient {
            address: r.clone(),
            reason,
        })?;
        if !out.contains(&a.email) {
            out.push(a.email);
        }
    }
    if out.len() > limits.max_recipients {
        return Err(Rejected::TooManyRecipients {
            count: out.len(),
            limit: limits.max_recipients,
        });
    }
    Ok(out)
}

/// Makes a submitted message ready for the spool. `now_s` stamps a missing
/// `Date`; `id` becomes the stored campaign id (unique).
pub fn prepare(
    raw: &[u8],
    meta: MessageMeta,
    rcpts: &[String],
    limits: &Limits,
    sets: &dyn Sets,
    id: String,
    now_s: i64,
) -> Result<Prepared, Rejected> {
    if raw.len() > limits.max_size {
        return Err(Rejected::TooLarge {
            size: raw.len(),
            limit: limits.max_size,
        });
    }
    let rcpts = check_rcpts(rcpts, limits)?;
    let m = crlf(raw);
    let (fields, body) = split_fields(&m)?;
    let mut set = None;
    let mut pool = None;
    let mut tags = BTreeMap::new();
    let mut kept: Vec<&Field<'_>> = Vec::with_capacity(fields.len());
    for f in &fields {
        if f.is("X-SES-CONFIGURATION-SET") {
            set = Some(f.value());
        } else if f.is("X-Volley-Pool") {
            pool = Some(f.value());
        } else if f.is("X-SES-MESSAGE-TAGS") {
            tags.extend(parse_tags(&f.value()).map_err(Rejected::BadTags)?);
        } else if !(f.is("Bcc")
            || f.is("Return-Path")
            || f.is("X-Envelope-From")
            || f.is("X-Envelope-To"))
        {
            kept.push(f);
        }
    }
    let configuration_set = match set.filter(|s| !s.is_empty()) {
        Some(s) if sets.exists(&s) => Some(s),
        Some(s) => return Err(Rejected::UnknownSet(s)),
        None => sets.default_set(),
    };
    let pool = match pool.filter(|p| !p.is_empty()) {
        Some(p) if sets.pool_exists(&p) => Some(p),
        Some(p) => return Err(Rejected::UnknownPool(p)),
        None => None,
    };
    let find = |name: &str| kept.iter().find(|f| f.is(name)).map(|f| f.value());
    let (from, from_addr, from_name) = match find("From") {
        Some(v) => {
            let mb = first_mailbox(&v).map_err(Rejected::BadFrom)?;
            (v, mb.address.email, mb.name)
        }
        None if !meta.mail_from.is_empty() => {
            (meta.mail_from.clone(), meta.mail_from.clone(), None)
        }
        None => return Err(Rejected::NoFrom),
    };
    let mut out = Vec::with_capacity(m.len() + 64);
    if find("From").is_none() {
        out.extend_from_slice(format!("From: {from}\r\n").as_bytes());
    }
    if find("Date").is_none() {
        let date = mail_builder::headers::date::Date::new(now_s).to_rfc822();
        out.extend_from_slice(format!("Date: {date}\r\n").as_bytes());
    }
    for f in &kept {
        out.extend_from_slice(f.raw);
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    let subject = subject_of(&out).unwrap_or_default();
    let add_message_id = find("Message-ID").is_none();
    let def = CampaignDef {
        id,
        from,
        from_name,
        from_addr,
        reply_to: find("Reply-To"),
        subject,
        html: None,
        text: None,
        list_unsubscribe: None,
        tags,
        columns: Vec::new(),
        personalized: false,
        to: Some(find("To").unwrap_or_else(|| crate::campaign::UNDISCLOSED.to_string())),
        configuration_set,
        message: Some(MessageMeta {
            add_message_id,
            ..meta
        }),
        list_management: None,
        pool,
    };
    Ok(Prepared {
        def,
        rcpts,
        message: out,
    })
}

/// The first mailbox of an address-list header value.
fn first_mailbox(v: &str) -> Result<crate::address::Mailbox, String> {
    let header = format!("From: {v}\r\n\r\n");
    let parsed = mail_parser::MessageParser::new().parse_headers(header.as_bytes());
    let addr = parsed
        .as_ref()
        .and_then(|m| m.from())
        .and_then(|a| a.first())
        .and_then(|a| {
            a.address()
                .map(|e| (e.to_string(), a.name().map(str::to_string)))
        });
    match addr {
        Some((email, name)) => Ok(crate::address::Mailbox {
            name,
            address: crate::address::parse(&email)?,
        }),
        None => crate::address::parse_mailbox(v),
    }
}

/// The decoded subject (control characters made spaces).
fn subject_of(message: &[u8]) -> Option<String> {
    let end = memchr::memmem::find(message, b"\r\n\r\n").map_or(message.len(), |e| e + 4);
    let parsed = mail_parser::MessageParser::new().parse_headers(&message[..end])?;
    parsed
        .subject()
        .map(|s| crate::message::mime::header_text(s).into_owned())
}

#[cfg(test)]
mod tests;
