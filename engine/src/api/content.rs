//! The request shapes of `SendEmail` and `SendBulkEmail` (SES v2 field
//! names) and the message they make: `Simple` and `Template` content built
//! with mail-builder (text and/or HTML in the transfer encoding their
//! content needs, attachments, up to 15 extra headers), `Raw` taken as
//! given (base64). The `Message-ID` is left to production
//! (`<message id@From domain>`, the id the API returns), as for every
//! ready-made message. Pure. Exposure: everything comes from
//! authenticated callers over the network; errors name the field.

use base64::Engine as _;
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address as MbAddress;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::{BodyPart, MimePart};
use serde::Deserialize;

use super::error::ApiError;
use super::store::Content as TemplateContent;
use crate::message::mime::{header_text, mailbox, text_part};
use crate::template::Rendered;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Destination {
    #[serde(default)]
    pub to_addresses: Vec<String>,
    #[serde(default)]
    pub cc_addresses: Vec<String>,
    #[serde(default)]
    pub bcc_addresses: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Text {
    pub data: String,
    #[serde(default)]
    pub charset: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Body {
    pub text: Option<Text>,
    pub html: Option<Text>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Header {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Attachment {
    pub raw_content: String,
    pub file_name: String,
    pub content_disposition: Option<String>,
    pub content_id: Option<String>,
    pub content_type: Option<String>,
    pub content_description: Option<String>,
    pub content_transfer_encoding: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Simple {
    pub subject: Text,
    pub body: Body,
    #[serde(default)]
    pub headers: Vec<Header>,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RawMessage {
    pub data: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Template {
    pub template_name: Option<String>,
    pub template_arn: Option<String>,
    pub template_content: Option<TemplateContent>,
    pub template_data: Option<String>,
    #[serde(default)]
    pub headers: Vec<Header>,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EmailContent {
    pub simple: Option<Simple>,
    pub raw: Option<RawMessage>,
    pub template: Option<Template>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListManagementOptions {
    pub contact_list_name: String,
    pub topic_name: Option<String>,
}

/// Headers the request's own fields (or the engine) set, and those that
/// speak for the sender or the path: not accepted in `Headers`.
const OWN_HEADERS: [&str; 16] = [
    "from",
    "sender",
    "to",
    "cc",
    "bcc",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "return-path",
    "dkim-signature",
    "received",
    "authentication-results",
];

/// Checks extra headers (SES: at most 15; names 1–126 printable ASCII
/// without `:`; values at most 995 characters; no line breaks).
pub fn check_headers(headers: &[Header], field: &str) -> Result<(), ApiError> {
    if headers.len() > 15 {
        return Err(ApiError::bad(format!(
            "{field}: {} headers; at most 15",
            headers.len()
        )));
    }
    for (i, h) in headers.iter().enumerate() {
        let name_ok = !h.name.is_empty()
            && h.name.len() <= 126
            && h.name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
        if !name_ok {
            return Err(ApiError::bad(format!(
                "{field}[{i}].Name {:?}: 1-126 printable ASCII characters without ':'",
                h.name
            )));
        }
        if h.value.chars().count() > 995 || h.value.chars().any(|c| c == '\r' || c == '\n') {
            return Err(ApiError::bad(format!(
                "{field}[{i}].Value: at most 995 characters, no line breaks"
            )));
        }
        let lower = h.name.to_ascii_lowercase();
        if OWN_HEADERS.contains(&lower.as_str()) || lower.starts_with("resent-") {
            return Err(ApiError::bad(format!(
                "{field}[{i}].Name {:?}: set by the request's own fields",
                h.name
            )));
        }
    }
    Ok(())
}

/// The message's addressing: From, To, Cc, Reply-To.
pub struct Addressing<'a> {
    pub from: &'a str,
    pub to: &'a [String],
    pub cc: &'a [String],
    pub reply_to: &'a [String],
}

fn list(addrs: &[String], field: &str) -> Result<Option<MbAddress<'static>>, ApiError> {
    let mut out = Vec::with_capacity(addrs.len());
    for (i, a) in addrs.iter().enumerate() {
        out.push(mailbox(a).map_err(|e| ApiError::bad(format!("{field}[{i}] {a:?}: {e}")))?);
    }
    Ok(match out.len() {
        0 => None,
        1 => out.pop(),
        _ => Some(MbAddress::new_list(out)),
    })
}

fn attachment(a: &Attachment, field: &str) -> Result<MimePart<'static>, ApiError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(a.raw_content.trim())
        .map_err(|e| ApiError::bad(format!("{field}.RawContent: not base64: {e}")))?;
    let name = header_text(&a.file_name).into_owned();
    if name.is_empty() {
        return Err(ApiError::bad(format!("{field}.FileName is empty")));
    }
    let ctype = a
        .content_type
        .clone()
        .unwrap_or_else(|| "application/octet-stream".into());
    if !ctype.contains('/') || ctype.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(ApiError::bad(format!(
            "{field}.ContentType {ctype:?} is not a media type"
        )));
    }
    let mut part = MimePart::new(ctype, BodyPart::Binary(bytes.into())).attachment(name);
    if a.content_disposition.as_deref() == Some("INLINE") {
        part = part.inline();
    }
    if let Some(id) = &a.content_id {
        part = part.cid(header_text(id.trim_matches(['<', '>'])).into_owned());
    }
    Ok(part)
}

/// Builds the message for rendered (or simple) parts.
pub fn build(
    a: &Addressing<'_>,
    r: &Rendered,
    headers: &[Header],
    attachments: &[Attachment],
    date_s: i64,
) -> Result<Vec<u8>, ApiError> {
    let from = mailbox(a.from).map_err(|e| ApiError::bad(format!("FromEmailAddress: {e}")))?;
    let mut b = MessageBuilder::new()
        .from(from)
        .subject(header_text(&r.subject).into_owned())
        .date(date_s);
    if let Some(to) = list(a.to, "Destination.ToAddresses")? {
        b = b.to(to);
    }
    if let Some(cc) = list(a.cc, "Destination.CcAddresses")? {
        b = b.cc(cc);
    }
    if let Some(rt) = list(a.reply_to, "ReplyToAddresses")? {
        b = b.reply_to(rt);
    }
    for h in headers {
        b = b.header(h.name.clone(), Raw::new(header_text(&h.value).into_owned()));
    }
    let text = r.text.as_deref().map(|t| text_part("text/plain", t));
    let html = r.html.as_deref().map(|h| text_part("text/html", h));
    let body = match (text, html) {
        (Some(t), Some(h)) => MimePart::new("multipart/alternative", vec![t, h]),
        (Some(p), None) | (None, Some(p)) => p,
        (None, None) => text_part("text/plain", ""),
    };
    let body = match attachments.is_empty() {
        true => body,
        false => {
            let mut parts = vec![body];
            for (i, at) in attachments.iter().enumerate() {
                parts.push(attachment(at, &format!("Attachments[{i}]"))?);
            }
            MimePart::new("multipart/mixed", parts)
        }
    };
    let mut out = Vec::new();
    b.body(body)
        .write_to(&mut out)
        .map_err(|e| ApiError::bad(format!("the message could not be built: {e}")))?;
    Ok(without_message_id(out))
}

/// `m` without its `Message-ID` field (mail-builder makes one; production
/// adds the API's own).
fn without_message_id(m: Vec<u8>) -> Vec<u8> {
    let mut pos = 0;
    while pos < m.len() {
        let end = memchr::memmem::find(&m[pos..], b"\r\n").map_or(m.len(), |e| pos + e + 2);
        if end - pos <= 2 {
            break; // end of the header block
        }
        if m[pos..].len() >= 11 && m[pos..pos + 11].eq_ignore_ascii_case(b"Message-ID:") {
            // the field and its continuation lines
            let mut stop = end;
            while stop < m.len() && matches!(m[stop], b' ' | b'\t') {
                stop = memchr::memmem::find(&m[stop..], b"\r\n").map_or(m.len(), |e| stop + e + 2);
            }
            let mut out = Vec::with_capacity(m.len());
            out.extend_from_slice(&m[..pos]);
            out.extend_from_slice(&m[stop..]);
            return out;
        }
        pos = end;
    }
    m
}

/// Simple content as rendered parts.
pub fn simple_parts(s: &Simple) -> Rendered {
    Rendered {
        subject: s.subject.data.clone(),
        html: s.body.html.as_ref().map(|t| t.data.clone()),
        text: s.body.text.as_ref().map(|t| t.data.clone()),
        list_unsubscribe: None,
        list_unsubscribe_mailto: None,
    }
}

/// Decodes `Raw.Data`.
pub fn raw_bytes(r: &RawMessage) -> Result<Vec<u8>, ApiError> {
    let clean: String = r
        .data
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(clean)
        .map_err(|e| ApiError::bad(format!("Content.Raw.Data: not base64: {e}")))
}

/// `TemplateData` as the variables to render with (a JSON object; none:
/// an empty one).
pub fn template_data(data: Option<&str>, field: &str) -> Result<serde_json::Value, ApiError> {
    let Some(d) = data.filter(|d| !d.trim().is_empty()) else {
        return Ok(serde_json::Value::Object(Default::default()));
    };
    if d.len() > 262_144 {
        return Err(ApiError::bad(format!(
            "{field}: longer than 262144 characters"
        )));
    }
    match serde_json::from_str::<serde_json::Value>(d) {
        Ok(v @ serde_json::Value::Object(_)) => Ok(v),
        Ok(_) => Err(ApiError::bad(format!("{field}: not a JSON object"))),
        Err(e) => Err(ApiError::bad(format!("{field}: not valid JSON: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_without_message_id_and_with_lists() {
        let r = Rendered {
            subject: "Hi\r\nBcc: x@y".into(),
            html: Some("<p>é</p>".into()),
            text: Some("plain".into()),
            list_unsubscribe: None,
            list_unsubscribe_mailto: None,
        };
        let to = vec!["A <a@x.test>".to_string(), "b@x.test".to_string()];
        let a = Addressing {
            from: "Shop <shop@s.test>",
            to: &to,
            cc: &[],
            reply_to: &[],
        };
        let h = vec![Header {
            name: "X-Kind".into(),
            value: "reset".into(),
        }];
        let m = String::from_utf8(build(&a, &r, &h, &[], 1_700_000_000).unwrap()).unwrap();
        assert!(!m.to_ascii_lowercase().contains("message-id"), "{m}");
        assert!(m.contains("X-Kind: reset\r\n"));
        assert!(m.contains("b@x.test"));
        assert!(m.contains("multipart/alternative"));
        // the subject's line break became a space: no header was added
        assert!(!m.contains("\r\nBcc:"));
        let bad = vec![Header {
            name: "From".into(),
            value: "x".into(),
        }];
        assert!(check_headers(&bad, "Headers").is_err());
        assert!(check_headers(&h, "Headers").is_ok());
    }

    #[test]
    fn template_data_must_be_an_object() {
        assert!(template_data(Some("{\"a\":1}"), "TemplateData").is_ok());
        assert!(template_data(None, "TemplateData").is_ok());
        assert!(template_data(Some("[1]"), "TemplateData").is_err());
        assert!(template_data(Some("{"), "TemplateData").is_err());
    }
}
