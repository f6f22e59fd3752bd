//! The MIME view of a received report: its top-level header fields, root
//! content type and `report-type`, and its leaf parts in order, each as
//! decoded text or, for an attached message, that message's header fields.
//! Built on `mail-parser`.
//!
//! In: the raw bytes of the received message. Out: `Mail`, borrowing from
//! the parsed message where it can.
//! Invariants: at most `MAX_PARTS` parts and `MAX_TOP_FIELDS` top-level
//! fields are kept; binary parts that are not `message/*` or `text/*` are
//! skipped; the parser is run behind `catch_unwind` so that a defect in it
//! turns into "unrecognized" rather than a crash. The parts of an attached
//! original are not descended into. Exposure: hostile network input.

use std::borrow::Cow;

use mail_parser::decoders::html::html_to_text;
use mail_parser::{HeaderName, Message, MessageParser, MessagePart, PartType};

use super::original::{Original, read_header_block};
use super::scan::{TEXT_CAP, cap, prefix};

/// Most leaf parts looked at.
const MAX_PARTS: usize = 200;
/// Most top-level header fields kept.
const MAX_TOP_FIELDS: usize = 500;
/// Most bytes of an HTML part converted to text.
const MAX_HTML: usize = 256 * 1024;

/// A leaf part's content.
pub(super) enum Body<'m> {
    /// Decoded text (text/* parts and message/*-status or report parts).
    Text(Cow<'m, str>),
    /// An attached message (message/rfc822, message/global): its header.
    Message(Original),
}

/// One leaf part.
pub(super) struct Part<'m> {
    /// Lowercase "type/subtype" ("" when the part has no Content-Type).
    pub ctype: String,
    pub body: Body<'m>,
}

/// The parsed report.
pub(super) struct Mail<'m> {
    /// Top-level header fields: lowercase names, unfolded values (capped).
    pub headers: Vec<(String, String)>,
    /// Lowercase `report-type` of a multipart/report root ("" if none).
    pub report_type: String,
    /// Leaf parts in order.
    pub parts: Vec<Part<'m>>,
}

impl<'m> Mail<'m> {
    /// The first top-level value of `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Texts of the parts whose content type is `ctype` or any of `ctypes`.
    pub fn texts_of<'s>(&'s self, ctypes: &'s [&str]) -> impl Iterator<Item = &'s str> + 's {
        self.parts.iter().filter_map(move |p| match &p.body {
            Body::Text(t) if ctypes.contains(&p.ctype.as_str()) => Some(t.as_ref()),
            _ => None,
        })
    }

    /// Texts of every text-bearing part (including report parts).
    pub fn all_texts(&self) -> impl Iterator<Item = (&str, &str)> {
        self.parts.iter().filter_map(|p| match &p.body {
            Body::Text(t) => Some((p.ctype.as_str(), t.as_ref())),
            Body::Message(_) => None,
        })
    }
}

/// Runs the MIME parser over `raw`; None when it finds no header field.
pub(super) fn parse_message(raw: &[u8]) -> Option<Message<'_>> {
    let parser = MessageParser::new();
    std::panic::catch_unwind(|| parser.parse(raw))
        .ok()
        .flatten()
}

/// The report view of a parsed message.
pub(super) fn view<'m>(msg: &'m Message<'m>) -> Mail<'m> {
    let root = msg.parts.first();
    let (_, report_type) = root.map(content_type).unwrap_or_default();
    let mut mail = Mail {
        headers: root.map(|r| top_headers(msg, r)).unwrap_or_default(),
        report_type,
        parts: Vec::new(),
    };
    for part in msg.parts.iter() {
        if mail.parts.len() >= MAX_PARTS {
            break;
        }
        let (ctype, _) = content_type(part);
        let body = match &part.body {
            PartType::Multipart(_) => continue,
            PartType::Text(t) => Body::Text(Cow::Borrowed(t.as_ref())),
            PartType::Html(h) => Body::Text(Cow::Owned(html_to_text(prefix(h, MAX_HTML)))),
            PartType::Message(m) => Body::Message(attached_header(m)),
            PartType::Binary(b) | PartType::InlineBinary(b) => {
                if ctype == "message/rfc822" || ctype == "message/global" {
                    Body::Message(read_header_block(b))
                } else if is_textual(&ctype) {
                    Body::Text(String::from_utf8_lossy(b))
                } else {
                    continue;
                }
            }
        };
        mail.parts.push(Part { ctype, body });
    }
    mail
}

/// True for content types read as text: text/*, message/* (status and
/// report parts), none, and multipart/* that the parser could not split
/// (no boundary), whose raw body still holds the parts.
pub(super) fn is_textual(ctype: &str) -> bool {
    ctype.is_empty()
        || ctype.starts_with("text/")
        || ctype.starts_with("message/")
        || ctype.starts_with("multipart/")
}

/// Lowercase "type/subtype" and `report-type` of a part.
fn content_type(part: &MessagePart<'_>) -> (String, String) {
    let ct = part
        .headers
        .iter()
        .find(|h| h.name == HeaderName::ContentType)
        .and_then(|h| h.value.as_content_type());
    match ct {
        Some(ct) => {
            let mut s = cap(ct.ctype(), 64).to_ascii_lowercase();
            if let Some(sub) = ct.subtype() {
                s.push('/');
                s.push_str(&cap(sub, 64).to_ascii_lowercase());
            }
            let rt = ct
                .attribute("report-type")
                .map(|r| cap(r, 64).to_ascii_lowercase());
            (s, rt.unwrap_or_default())
        }
        None => (String::new(), String::new()),
    }
}

/// The header of an attached message, from the bytes it was parsed from.
fn attached_header(m: &Message<'_>) -> Original {
    let Some(root) = m.parts.first() else {
        return Original::default();
    };
    let start = root.offset_header as usize;
    let end = root.offset_body as usize;
    match m.raw_message.get(start..end.max(start)) {
        Some(bytes) if !bytes.is_empty() => read_header_block(bytes),
        _ => read_header_block(m.raw_message.get(start..).unwrap_or_default()),
    }
}

/// Top-level header fields: lowercase names, unfolded raw values (encoded
/// words decoded for Subject and From through the parsed value).
fn top_headers(msg: &Message<'_>, root: &MessagePart<'_>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for h in root.headers.iter().take(MAX_TOP_FIELDS) {
        let name = cap(h.name.as_str(), 80).to_ascii_lowercase();
        let value = match h.value.as_text() {
            Some(t) => cap(t, TEXT_CAP),
            None => {
                let raw = msg
                    .raw_message
                    .get(h.offset_start as usize..h.offset_end as usize)
                    .unwrap_or_default();
                let raw = raw.get(..raw.len().min(4 * TEXT_CAP)).unwrap_or_default();
                let text = String::from_utf8_lossy(raw);
                let unfolded: String = text.chars().filter(|c| *c != '\r' && *c != '\n').collect();
                cap(&unfolded, TEXT_CAP)
            }
        };
        out.push((name, value));
    }
    out
}
