//! `SendBulkEmail`: each entry its own message (the default template
//! data with the entry's replacement data over it, its tags and headers),
//! all queued to the acceptor before any is awaited (they share its group
//! commit), a status per entry.

use super::content::EmailContent;
use super::error::ApiError;
use super::send::{
    Envelope, MAX_BULK_ENTRIES, SendBulkRequest, make, tags, take_quota, template_of,
};
use super::{Ctx, Principal};

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

/// Sends each entry of a bulk request as its own message: an error for
/// the whole request, or each entry's `MessageId` or error.
pub async fn send_many(
    ctx: &Ctx,
    p: &Principal,
    req: SendBulkRequest,
) -> Result<Vec<Result<String, ApiError>>, ApiError> {
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
        results.push(match w {
            Ok(rx) => match rx.await {
                Ok(Ok(id)) => Ok(id),
                Ok(Err(e)) => Err(ApiError::new("ServiceUnavailable", e.to_string())),
                Err(_) => Err(ApiError::new(
                    "ServiceUnavailable",
                    "the service is stopping",
                )),
            },
            Err(e) => Err(e),
        });
    }
    Ok(results)
}

/// `POST /v2/email/outbound-bulk-emails`.
pub async fn send_bulk(
    ctx: &Ctx,
    p: &Principal,
    body: &[u8],
) -> Result<serde_json::Value, ApiError> {
    let results: Vec<serde_json::Value> = send_many(ctx, p, super::parse_json(body)?)
        .await?
        .into_iter()
        .map(|r| match r {
            Ok(id) => serde_json::json!({ "Status": "SUCCESS", "MessageId": id }),
            Err(e) => serde_json::json!({ "Status": status_of(&e), "Error": e.message }),
        })
        .collect();
    Ok(serde_json::json!({ "BulkEmailEntryResults": results }))
}
