//! `SendEmail` and `SendBulkEmail`: the request made a ready-made message
//! ([`super::content`]), checked as SMTP submission checks it
//! ([`crate::submission::message::prepare`]: size, recipients, header
//! block), the sender against the key's identities, the recipients against
//! its quotas, then handed to the acceptor; the `MessageId` is returned
//! only once the message and its recipients are durable (group commit
//! with every other producer). Templates are rendered at acceptance: a
//! template that cannot be rendered with the data given is refused with
//! the attribute named (`BadRequestException`, or the entry's status in a
//! bulk send) instead of being accepted and reported later.
//!
//! Exposure: authenticated callers over the network.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::content::{
    self, Addressing, Destination, EmailContent, Header, ListManagementOptions, Tag,
};
use super::error::ApiError;
use super::{Ctx, Principal};
use crate::campaign::{ListManagement, MessageMeta};
use crate::submission::message::{self, Limits, Prepared, Rejected};
use crate::submission::quota::Verdict;
use crate::template::Templates;

pub use super::shapes::*;

/// Most entries of one `SendBulkEmail` (SES).
pub const MAX_BULK_ENTRIES: usize = 50;

/// Tags as SES allows them: names and values of letters, digits, `_` and
/// `-`, 1–256 characters; `ses:` names are SES's own.
pub(super) fn tags(list: &[Tag], field: &str) -> Result<BTreeMap<String, String>, ApiError> {
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 256
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    let mut out = BTreeMap::new();
    for (i, t) in list.iter().enumerate() {
        if !ok(&t.name) || !ok(&t.value) {
            return Err(ApiError::bad(format!(
                "{field}[{i}]: tag names and values are 1-256 letters, digits, underscores and hyphens"
            )));
        }
        out.insert(t.name.clone(), t.value.clone());
    }
    if out.len() > 50 {
        return Err(ApiError::bad(format!("{field}: more than 50 tags")));
    }
    Ok(out)
}

/// The template a request names (by name, ARN or inline content).
pub(super) fn template_of(ctx: &Ctx, t: &content::Template) -> Result<Arc<Templates>, ApiError> {
    let name = t.template_name.clone().or_else(|| {
        t.template_arn
            .as_deref()
            .and_then(|a| a.rsplit_once("template/"))
            .map(|(_, n)| n.to_string())
    });
    match (name, &t.template_content) {
        (Some(n), _) => ctx
            .templates
            .get(&n)
            .ok_or_else(|| ApiError::not_found(format!("Template {n} does not exist.")))?
            .compiled()
            .map_err(ApiError::bad),
        (None, Some(c)) => {
            c.check().map_err(ApiError::bad)?;
            c.compile().map(Arc::new).map_err(ApiError::bad)
        }
        (None, None) => Err(ApiError::bad(
            "Content.Template needs TemplateName, TemplateArn or TemplateContent",
        )),
    }
}

/// Everything about one message but its content.
pub(super) struct Envelope<'a> {
    pub(super) from: &'a str,
    pub(super) dest: &'a Destination,
    pub(super) reply_to: &'a [String],
    pub(super) tags: BTreeMap<String, String>,
    pub(super) set: Option<&'a str>,
    pub(super) list: Option<&'a ListManagementOptions>,
}

/// Checks each destination address, naming the one that fails.
fn check_destination(dest: &Destination) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::new();
    for (field, list) in [
        ("ToAddresses", &dest.to_addresses),
        ("CcAddresses", &dest.cc_addresses),
        ("BccAddresses", &dest.bcc_addresses),
    ] {
        for (i, a) in list.iter().enumerate() {
            let m = crate::address::parse_mailbox(a)
                .map_err(|e| ApiError::bad(format!("Destination.{field}[{i}] {a:?}: {e}")))?;
            out.push(m.address.email);
        }
    }
    Ok(out)
}

fn refusal(e: Rejected) -> ApiError {
    match e {
        Rejected::UnknownSet(s) => {
            ApiError::not_found(format!("Configuration set <{s}> does not exist."))
        }
        Rejected::TooLarge { .. } | Rejected::HeaderTooLarge | Rejected::TooManyFields => {
            ApiError::rejected(format!("Message too long: {e}"))
        }
        other => ApiError::bad(other.to_string()),
    }
}

/// Makes the message ready: checked, its definition completed with the
/// request's set, tags and list.
fn prepare(
    ctx: &Ctx,
    p: &Principal,
    raw: &[u8],
    env: &Envelope<'_>,
    rcpts: Vec<String>,
) -> Result<Prepared, ApiError> {
    // a raw message without FromEmailAddress is sent from its From
    let from_addr = match env.from {
        "" => String::new(),
        f => {
            crate::address::parse_mailbox(f)
                .map_err(|e| ApiError::bad(format!("FromEmailAddress {f:?}: {e}")))?
                .address
                .email
        }
    };
    let s = &ctx.config.submission;
    let limits = Limits {
        max_size: s.max_message_size as usize,
        max_recipients: s.max_recipients as usize,
    };
    let meta = MessageMeta {
        mail_from: from_addr,
        source: "api".into(),
        user: Some(p.name.clone()),
        add_message_id: false,
    };
    let now = (volley_spool::now_ms() / 1000) as i64;
    let id = crate::submission::smtp::session::unique_id("api");
    let mut prepared = message::prepare(raw, meta, &rcpts, &limits, ctx.config.as_ref(), id, now)
        .map_err(refusal)?;
    if let Some(set) = env.set {
        if !ctx.config.configuration_sets.contains_key(set) {
            return Err(ApiError::not_found(format!(
                "Configuration set <{set}> does not exist."
            )));
        }
        prepared.def.configuration_set = Some(set.to_string());
    }
    if !env.tags.is_empty() {
        // API tags win over X-SES-MESSAGE-TAGS (SES)
        prepared.def.tags = env.tags.clone();
    }
    if let Some(l) = env.list {
        prepared.def.list_management = Some(ListManagement {
            contact_list: l.contact_list_name.clone(),
            topic: l.topic_name.clone(),
        });
    }
    if let Some(m) = prepared.def.message.as_mut()
        && m.mail_from.is_empty()
    {
        m.mail_from = prepared.def.from_addr.clone();
    }
    // every From and Sender mailbox and the envelope sender are the
    // key's to use
    let envelope = prepared.def.message.as_ref().map(|m| m.mail_from.clone());
    let mut senders = header_senders(&prepared.message)?;
    senders.extend(envelope);
    senders.push(prepared.from_addr().to_string());
    for addr in senders {
        if !p.may_send_as(&addr) {
            return Err(ApiError::rejected(format!(
                "Email address is not verified. The following identities failed the check in region {}: {addr}",
                p.region.to_ascii_uppercase(),
            )));
        }
    }
    Ok(prepared)
}

/// The addresses of every `From` and `Sender` field of a message; more
/// than one `From` field is refused.
fn header_senders(message: &[u8]) -> Result<Vec<String>, ApiError> {
    let (fields, _) = message::split_fields(message).map_err(|e| ApiError::bad(e.to_string()))?;
    let from_fields = fields.iter().filter(|f| f.is("From")).count();
    if from_fields > 1 {
        return Err(ApiError::rejected(format!(
            "the message has {from_fields} From fields; one is allowed"
        )));
    }
    let mut out = Vec::new();
    for f in fields.iter().filter(|f| f.is("From") || f.is("Sender")) {
        let block = [f.raw, b"\r\n"].concat();
        let parsed = mail_parser::MessageParser::new().parse_headers(&block);
        let addrs: Vec<String> = parsed
            .as_ref()
            .and_then(|m| m.from().or_else(|| m.sender()))
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.address().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if addrs.is_empty() {
            return Err(ApiError::rejected(format!(
                "{} field without an address",
                f.name
            )));
        }
        out.extend(addrs);
    }
    Ok(out)
}

/// Takes the message's recipients from the key's quotas.
pub(super) fn take_quota(ctx: &Ctx, p: &Principal, n: usize) -> Result<(), ApiError> {
    match ctx
        .quotas
        .take(&p.principal, n as u64, std::time::Instant::now())
    {
        Verdict::Ok => Ok(()),
        Verdict::Rate => Err(ApiError::new(
            "TooManyRequestsException",
            "Maximum sending rate exceeded.",
        )),
        Verdict::Daily(_) => Err(ApiError::new(
            "TooManyRequestsException",
            "Daily message quota exceeded.",
        )),
    }
}

async fn accept(ctx: &Ctx, prepared: Prepared) -> Result<String, ApiError> {
    use crate::submission::accept::AcceptError;
    ctx.acceptor.accept(prepared).await.map_err(|e| match e {
        AcceptError::Stopping => ApiError::new("ServiceUnavailable", "the service is stopping"),
        // the spool refuses writes until a restart: sending is paused
        AcceptError::Spool(why) => ApiError::new(
            "SendingPausedException",
            format!("sending is paused: {why}"),
        ),
    })
}

/// The message of one send: its bytes and recipients.
pub(super) fn make(
    ctx: &Ctx,
    p: &Principal,
    env: &Envelope<'_>,
    content: &EmailContent,
    data_override: Option<&str>,
    extra_headers: &[Header],
) -> Result<Prepared, ApiError> {
    let n = [
        content.simple.is_some(),
        content.raw.is_some(),
        content.template.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if n != 1 {
        return Err(ApiError::bad(
            "Content must have exactly one of Simple, Raw and Template",
        ));
    }
    let mut rcpts = check_destination(env.dest)?;
    let addressing = Addressing {
        from: env.from,
        to: &env.dest.to_addresses,
        cc: &env.dest.cc_addresses,
        reply_to: env.reply_to,
    };
    let now = (volley_spool::now_ms() / 1000) as i64;
    let needs_from = content.raw.is_none();
    if needs_from && env.from.is_empty() {
        return Err(ApiError::bad("FromEmailAddress is required"));
    }
    let raw = if let Some(s) = &content.simple {
        content::check_headers(&s.headers, "Content.Simple.Headers")?;
        content::build(
            &addressing,
            &content::simple_parts(s),
            &s.headers,
            &s.attachments,
            now,
        )?
    } else if let Some(t) = &content.template {
        let mut headers = t.headers.clone();
        // an entry's header replaces the template's of the same name
        headers.retain(|h| {
            !extra_headers
                .iter()
                .any(|e| e.name.eq_ignore_ascii_case(&h.name))
        });
        headers.extend(extra_headers.iter().cloned());
        content::check_headers(&headers, "Content.Template.Headers")?;
        let templates = template_of(ctx, t)?;
        let mut vars = content::template_data(t.template_data.as_deref(), "TemplateData")?;
        if let Some(d) = data_override {
            let more = content::template_data(Some(d), "ReplacementTemplateData")?;
            if let (Some(base), serde_json::Value::Object(m)) = (vars.as_object_mut(), more) {
                base.extend(m);
            }
        }
        let rendered = templates
            .render(vars)
            .map_err(|f| ApiError::bad(format!("Rendering failure: {}", f.message)))?;
        content::build(&addressing, &rendered, &headers, &t.attachments, now)?
    } else {
        let raw = content
            .raw
            .as_ref()
            .map(content::raw_bytes)
            .transpose()?
            .unwrap_or_default();
        if rcpts.is_empty() {
            rcpts = raw_recipients(&raw);
        }
        raw
    };
    if rcpts.is_empty() {
        return Err(ApiError::bad(
            "Destination: at least one recipient is required",
        ));
    }
    prepare(ctx, p, &raw, env, rcpts)
}

/// The To, Cc and Bcc addresses of a raw message (SES sends a raw message
/// without `Destination` to them).
fn raw_recipients(raw: &[u8]) -> Vec<String> {
    let Some(m) = mail_parser::MessageParser::new().parse_headers(raw) else {
        return Vec::new();
    };
    [m.to(), m.cc(), m.bcc()]
        .into_iter()
        .flatten()
        .flat_map(|a| a.iter())
        .filter_map(|a| a.address().map(str::to_string))
        .collect()
}

/// Sends one message; its `MessageId` once durable.
pub async fn send_one(ctx: &Ctx, p: &Principal, req: SendEmailRequest) -> Result<String, ApiError> {
    let from = req.from_email_address.as_deref().unwrap_or("");
    let dest = req.destination.clone().unwrap_or_default();
    let env = Envelope {
        from,
        dest: &dest,
        reply_to: &req.reply_to_addresses,
        tags: tags(&req.email_tags, "EmailTags")?,
        set: req.configuration_set_name.as_deref(),
        list: req.list_management_options.as_ref(),
    };
    let prepared = make(ctx, p, &env, &req.content, None, &[])?;
    take_quota(ctx, p, prepared.rcpts.len())?;
    accept(ctx, prepared).await
}

/// `POST /v2/email/outbound-emails`.
pub async fn send_email(
    ctx: &Ctx,
    p: &Principal,
    body: &[u8],
) -> Result<serde_json::Value, ApiError> {
    let id = send_one(ctx, p, super::parse_json(body)?).await?;
    Ok(serde_json::json!({ "MessageId": id }))
}
