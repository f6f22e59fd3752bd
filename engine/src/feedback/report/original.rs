//! The header fields of the original message a report is about: read from
//! an attached message/rfc822 or message/global, a text/rfc822-headers
//! part, or a copy quoted inline after a marker line ("------ This is a
//! copy of the message, including all the headers. ------", "--- Below
//! this line is a copy of the message.", "Original message headers:").
//!
//! In: raw header bytes or decoded text. Out: `Original`, the fields in
//! order, unfolded (folding line breaks removed, whitespace kept), RFC 2047
//! encoded words decoded, invalid UTF-8 replaced.
//! Invariants: at most `MAX_FIELDS` fields and `MAX_BYTES` bytes of names
//! and values; `truncated` says when fields were left off. The caller looks
//! for a signed VERP token in these values, so they are kept faithfully.
//! Exposure: hostile network input.

use mail_parser::HeaderValue;
use mail_parser::parsers::MessageStream;

use super::scan::{field_name, lines, prefix};

/// Most header fields kept of an original message.
pub const MAX_FIELDS: usize = 200;
/// Most bytes (names and values) kept of an original message's header.
pub const MAX_BYTES: usize = 10 * 1024;

/// What the report says of the message that bounced or was complained of.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Original {
    /// Header fields of the original message, in order, unfolded, values
    /// decoded to text; at most `MAX_FIELDS` fields / `MAX_BYTES` bytes.
    pub headers: Vec<(String, String)>,
    /// Fields were left off because of the caps (SES `headersTruncated`).
    pub truncated: bool,
}

impl Original {
    /// The first value of field `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The original Message-ID, without angle brackets.
    pub fn message_id(&self) -> Option<&str> {
        let v = self.get("Message-ID")?.trim();
        let v = v.strip_prefix('<').unwrap_or(v);
        let v = v.split('>').next().unwrap_or(v).trim();
        (!v.is_empty()).then_some(v)
    }

    /// True when no header field of the original is known.
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
    }
}

/// Reads a header block from `bytes` (up to the first blank line, or the
/// first line that is neither a field nor a continuation). A leading mbox
/// "From " line is skipped.
pub(super) fn read_header_block(bytes: &[u8]) -> Original {
    let text = String::from_utf8_lossy(
        bytes
            .get(..bytes.len().min(4 * MAX_BYTES))
            .unwrap_or_default(),
    );
    read_header_text(&text)
}

/// `read_header_block` over decoded text.
pub(super) fn read_header_text(text: &str) -> Original {
    let text = prefix(text, 4 * MAX_BYTES);
    let mut out = Original::default();
    let mut used = 0usize;
    let mut current: Option<(String, String)> = None;
    let mut first = true;
    for line in lines(text) {
        if first {
            first = false;
            if line.starts_with("From ") {
                continue;
            }
        }
        if line.trim().is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = current.as_mut() {
                value.push_str(line);
                if used + value.len() > MAX_BYTES {
                    out.truncated = true;
                    current = None;
                    break;
                }
            }
            continue;
        }
        if let Some(field) = current.take()
            && !push(&mut out, &mut used, field)
        {
            return out;
        }
        match field_name(line) {
            Some((name, value)) if !name.contains(' ') => {
                current = Some((name.to_string(), value.to_string()));
            }
            _ => break,
        }
    }
    if let Some(field) = current.take() {
        push(&mut out, &mut used, field);
    }
    out
}

/// Adds one field (value decoded); false when the caps are reached.
fn push(out: &mut Original, used: &mut usize, (name, value): (String, String)) -> bool {
    if out.headers.len() >= MAX_FIELDS {
        out.truncated = true;
        return false;
    }
    let value = decode(&value);
    let size = name.len() + value.len();
    if *used + size > MAX_BYTES {
        out.truncated = true;
        return false;
    }
    *used += size;
    out.headers.push((name, value));
    true
}

/// Decodes RFC 2047 encoded words in an unfolded value; other values are
/// only trimmed.
fn decode(value: &str) -> String {
    let trimmed = value.trim();
    if !trimmed.contains("=?") {
        return trimmed.to_string();
    }
    let mut line = String::with_capacity(trimmed.len() + 2);
    line.push_str(trimmed);
    line.push_str("\r\n");
    match MessageStream::new(line.as_bytes()).parse_unstructured() {
        HeaderValue::Text(t) => t.trim().to_string(),
        _ => trimmed.to_string(),
    }
}

/// Lines that introduce an inline copy of the original message (lowercase,
/// matched at the start of a trimmed line).
const INLINE_MARKERS: &[&str] = &[
    "------ this is a copy of the message, including all the headers.",
    "------ this is a copy of your message, including all the headers.",
    "------ this is a copy of the message's headers.",
    "--- below this line is a copy of the message.",
    "--- enclosed are the original headers of the message.",
    "original message headers:",
    "----- original message follows -----",
    "------ original message follows ------",
    "----- message header follows -----",
    "----- the header of the original message is following. -----",
    "----- original message -----",
    "----- original message headers -----",
    "---------- original message ----------",
    "original message follows:",
    "the original message headers follow:",
    "headers of the original message:",
    "content-type: message/rfc822",
    "content-type: text/rfc822-headers",
];

/// Byte offset where an inline original starts in `text` (the line after
/// its marker), if `text` has one.
pub(super) fn inline_start(text: &str) -> Option<usize> {
    let mut offset = 0usize;
    for line in text.split_inclusive('\n') {
        let next = offset + line.len();
        let lower = line.trim().to_ascii_lowercase();
        if INLINE_MARKERS.iter().any(|m| lower.starts_with(m)) {
            return Some(next);
        }
        offset = next;
    }
    None
}

/// The inline original quoted in `text` after a marker line: blank lines
/// and MIME part headers after the marker are skipped; the block must start
/// with a header field.
pub(super) fn inline(text: &str) -> Option<Original> {
    let start = inline_start(text)?;
    let mut rest = text.get(start..)?;
    // Skip blank lines, and one MIME part header block if the copy is an
    // attached part whose boundary the MIME parser did not see.
    for _ in 0..3 {
        let trimmed = rest.trim_start_matches(['\r', '\n', ' ', '\t']);
        let head = trimmed
            .get(..trimmed.len().min(64))
            .unwrap_or_default()
            .to_ascii_lowercase();
        if head.starts_with("content-") {
            let after = trimmed.find("\n\n").or_else(|| trimmed.find("\r\n\r\n"))?;
            rest = trimmed.get(after..).unwrap_or_default();
            continue;
        }
        rest = trimmed;
        break;
    }
    let original = read_header_text(rest);
    (!original.is_empty()).then_some(original)
}
