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

use serde::Deserialize;

use super::content::{
    self, Addressing, Destination, EmailContent, Header, ListManagementOptions, Tag,
};
use super::error::ApiError;
use super::{Ctx, Principal};
use crate::campaign::{ListManagement, MessageMeta};
use crate::submission::message::{self, Limits, Prepared, Rejected};
use crate::submission::quota::Verdict;
use crate::template::Templates;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SendEmailRequest {
    pub from_email_address: Option<String>,
    pub destination: Option<Destination>,
    #[serde(default)]
    pub reply_to_addresses: Vec<String>,
    pub content: EmailContent,
    #[serde(default)]
    pub email_tags: Vec<Tag>,
    pub configuration_set_name: Option<String>,
    pub list_management_options: Option<ListManagementOptions>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReplacementTemplate {
    pub replacement_template_data: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReplacementContent {
    pub replacement_template: Option<ReplacementTemplate>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BulkEntry {
    pub destination: Destination,
    #[serde(default)]
    pub replacement_tags: Vec<Tag>,
    pub replacement_email_content: Option<ReplacementContent>,
    #[serde(default)]
    pub replacement_headers: Vec<Header>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BulkContent {
    pub template: Option<content::Template>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SendBulkRequest {
    pub from_email_address: Option<String>,
    #[serde(default)]
    pub reply_to_addresses: Vec<String>,
    #[serde(default)]
    pub default_email_tags: Vec<Tag>,
    pub default_content: BulkContent,
    pub bulk_email_entries: Vec<BulkEntry>,
    pub configuration_set_name: Option<String>,
}

/// Most entries of one `SendBulkEmail` (SES).
pub const MAX_BULK_ENTRIES: usize = 50;

/// Tags as SES allows them: names and values of letters, digits, `_` and
/// `-`, 1–256 characters; `ses:` names are SES's own.
fn tags(list: &[Tag], field: &str) -> Result<BTreeMap<String, String>, ApiError> {
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
fn template_of(ctx: &Ctx, t: &content::Template) -> Result<Arc<Templates>, ApiError> {
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
struct Envelope<'a> {
    from: &'a str,
    dest: &'a Destination,
    reply_to: &'a [String],
    tags: BTreeMap<String, String>,
    set: Option<&'a str>,
    list: Option<&'a ListManagementOptions>,
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
    let from_addr = crate::address::parse_mailbox(env.from)
        .map_err(|e| ApiError::bad(format!("FromEmailAddress {:?}: {e}", env.from)))?
        .address
        .email;
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
    if !p.may_send_as(prepared.from_addr()) {
        return Err(ApiError::rejected(format!(
            "Email address is not verified. The following identities failed the check in region {}: {}",
            p.region.to_ascii_uppercase(),
            prepared.from_addr()
        )));
    }
    Ok(prepared)
}

/// Takes the message's recipients from the key's quotas.
fn take_quota(ctx: &Ctx, p: &Principal, n: usize) -> Result<(), ApiError> {
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
        AcceptError::Spool(why) => ApiError::new("InternalFailure", why),
    })
}

/// The message of one send: its bytes and recipients.
fn make(
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

/// `POST /v2/email/outbound-emails`.
pub async fn send_email(
    ctx: &Ctx,
    p: &Principal,
    body: &[u8],
) -> Result<serde_json::Value, ApiError> {
    let req: SendEmailRequest = super::parse_json(body)?;
    let from = req
        .from_email_address
        .as_deref()
        .ok_or_else(|| ApiError::bad("FromEmailAddress is required"))?;
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
    let id = accept(ctx, prepared).await?;
    Ok(serde_json::json!({ "MessageId": id }))
}

/// An entry's failure as SES's `BulkEmailStatus`.
fn status_of(e: &ApiError) -> &'static str {
    match e.kind {
        "MessageRejected" => "MESSAGE_REJECTED",
        "TooManyRequestsException" if e.message.starts_with("Daily") => {
            "ACCOUNT_DAILY_QUOTA_EXCEEDED"
        }
        "TooManyRequestsException" => "ACCOUNT_THROTTLED",
        "NotFoundException" if e.message.starts_with("Template") => "TEMPLATE_NOT_FOUND",
        "NotFoundException" => "CONFIGURATION_SET_NOT_FOUND",
        "BadRequestException" => "INVALID_PARAMETER",
        "ServiceUnavailable" => "TRANSIENT_FAILURE",
        _ => "FAILED",
    }
}

/// `POST /v2/email/outbound-bulk-emails`.
pub async fn send_bulk(
    ctx: &Ctx,
    p: &Principal,
    body: &[u8],
) -> Result<serde_json::Value, ApiError> {
    let req: SendBulkRequest = super::parse_json(body)?;
    let from = req
        .from_email_address
        .as_deref()
        .ok_or_else(|| ApiError::bad("FromEmailAddress is required"))?;
    let n = req.bulk_email_entries.len();
    if n == 0 || n > MAX_BULK_ENTRIES {
        return Err(ApiError::bad(format!(
            "BulkEmailEntries: {n} entries; 1 to {MAX_BULK_ENTRIES} are allowed"
        )));
    }
    let Some(template) = req.default_content.template.clone() else {
        return Err(ApiError::bad("DefaultContent.Template is required"));
    };
    // the template is looked up once: a missing one fails the call
    template_of(ctx, &template)?;
    let defaults = tags(&req.default_email_tags, "DefaultEmailTags")?;
    let content = EmailContent {
        template: Some(template),
        ..EmailContent::default()
    };
    let mut waiting = Vec::with_capacity(n);
    for (i, entry) in req.bulk_email_entries.iter().enumerate() {
        let made = (|| {
            let mut t = defaults.clone();
            t.extend(tags(
                &entry.replacement_tags,
                &format!("BulkEmailEntries[{i}].ReplacementTags"),
            )?);
            let env = Envelope {
                from,
                dest: &entry.destination,
                reply_to: &req.reply_to_addresses,
                tags: t,
                set: req.configuration_set_name.as_deref(),
                list: None,
            };
            let data = entry
                .replacement_email_content
                .as_ref()
                .and_then(|c| c.replacement_template.as_ref())
                .and_then(|t| t.replacement_template_data.as_deref());
            let prepared =
                make(ctx, p, &env, &content, data, &entry.replacement_headers).map_err(|e| {
                    ApiError::new(e.kind, format!("BulkEmailEntries[{i}]: {}", e.message))
                })?;
            take_quota(ctx, p, prepared.rcpts.len())?;
            Ok::<_, ApiError>(ctx.acceptor.submit_async(prepared))
        })();
        waiting.push(made);
    }
    let mut results = Vec::with_capacity(n);
    for w in waiting {
        let r = match w {
            Ok(rx) => match rx.await {
                Ok(Ok(id)) => serde_json::json!({ "Status": "SUCCESS", "MessageId": id }),
                Ok(Err(e)) => {
                    serde_json::json!({ "Status": "TRANSIENT_FAILURE", "Error": e.to_string() })
                }
                Err(_) => {
                    serde_json::json!({ "Status": "TRANSIENT_FAILURE", "Error": "the service is stopping" })
                }
            },
            Err(e) => serde_json::json!({ "Status": status_of(&e), "Error": e.message }),
        };
        results.push(r);
    }
    Ok(serde_json::json!({ "BulkEmailEntryResults": results }))
}
