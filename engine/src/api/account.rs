//! `GetAccount` (the calling key's quotas and what it sent in the last 24
//! hours), `ListConfigurationSets` and `GetConfigurationSet` (from the
//! config), and the suppression list operations
//! (`PutSuppressedDestination`, `GetSuppressedDestination`,
//! `DeleteSuppressedDestination`, `ListSuppressedDestinations`) on the
//! list that bounces and complaints feed. Timestamps are seconds since
//! the epoch (REST-JSON's default).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::{Ctx, Principal, Query};
use crate::feedback::suppression::{Entry, ListFilter, Reason};

/// `GET /v2/email/account`.
pub fn get_account(ctx: &Ctx, p: &Principal) -> Value {
    let q = &p.principal;
    let unlimited = |v: f64| if v <= 0.0 { -1.0 } else { v };
    let sent = ctx.quotas.used(q, std::time::Instant::now());
    json!({
        "SendQuota": {
            "Max24HourSend": unlimited(q.max_24_hour_send as f64),
            "MaxSendRate": unlimited(q.max_send_rate),
            "SentLast24Hours": sent as f64,
        },
        "SendingEnabled": true,
        "ProductionAccessEnabled": true,
        "DedicatedIpAutoWarmupEnabled": false,
        "EnforcementStatus": "HEALTHY",
        "SuppressionAttributes": {
            "SuppressedReasons": ctx.config.feedback.suppressed_reasons,
        },
    })
}

/// `GET /v2/email/configuration-sets`.
pub fn list_sets(ctx: &Ctx, q: &Query) -> Result<Value, ApiError> {
    let size = q.page_size(100, 1000)?;
    let after = q.one("NextToken");
    let names: Vec<&String> = ctx
        .config
        .configuration_sets
        .keys()
        .filter(|n| after.is_none_or(|a| n.as_str() > a))
        .collect();
    let page: Vec<&String> = names.iter().take(size).copied().collect();
    let mut out = json!({ "ConfigurationSets": page });
    if names.len() > size
        && let Some(last) = page.last()
    {
        out["NextToken"] = json!(last);
    }
    Ok(out)
}

/// `GET /v2/email/configuration-sets/{name}`.
pub fn get_set(ctx: &Ctx, name: &str) -> Result<Value, ApiError> {
    if !ctx.config.configuration_sets.contains_key(name) {
        return Err(ApiError::not_found(format!(
            "Configuration set <{name}> does not exist."
        )));
    }
    Ok(json!({
        "ConfigurationSetName": name,
        "DeliveryOptions": { "TlsPolicy": "OPTIONAL" },
        "ReputationOptions": { "ReputationMetricsEnabled": false },
        "SendingOptions": { "SendingEnabled": true },
        "SuppressionOptions": {
            "SuppressedReasons": ctx.config.feedback.suppressed_reasons,
        },
        "Tags": [],
    }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRequest {
    email_address: String,
    reason: String,
}

fn reason(s: &str, field: &str) -> Result<Reason, ApiError> {
    match s {
        "BOUNCE" => Ok(Reason::Bounce),
        "COMPLAINT" => Ok(Reason::Complaint),
        _ => Err(ApiError::bad(format!("{field} {s:?}: BOUNCE or COMPLAINT"))),
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new("InternalFailure", e.to_string())
}

fn summary(e: &Entry) -> Value {
    json!({
        "EmailAddress": e.email,
        "Reason": e.reason.as_str(),
        "LastUpdateTime": e.at_ms as f64 / 1000.0,
    })
}

/// `PUT /v2/email/suppression/addresses`.
pub async fn put(ctx: &std::sync::Arc<Ctx>, body: &[u8]) -> Result<Value, ApiError> {
    let req: PutRequest = super::parse_json(body)?;
    let r = reason(&req.reason, "Reason")?;
    let entry = Entry::new(req.email_address.clone(), r, volley_spool::now_ms());
    let list = std::sync::Arc::clone(&ctx.suppression);
    // an unsubscribe stays: the API's reasons never replace the
    // recipient's own choice
    let added = tokio::task::spawn_blocking(move || match list.get(&entry.email) {
        Ok(Some(e)) if e.reason == Reason::Unsubscribe => Ok(0),
        _ => list.add(vec![entry]),
    })
    .await
    .map_err(internal)?;
    match added {
        Ok(_) => Ok(json!({})),
        Err(crate::feedback::suppression::SuppressionError::InvalidAddress { value, why }) => {
            Err(ApiError::bad(format!("EmailAddress {value}: {why}")))
        }
        Err(e) => Err(internal(e)),
    }
}

/// `GET /v2/email/suppression/addresses/{email}`.
pub async fn get(ctx: &std::sync::Arc<Ctx>, email: &str) -> Result<Value, ApiError> {
    let (list, email) = (std::sync::Arc::clone(&ctx.suppression), email.to_string());
    let e2 = email.clone();
    let found = tokio::task::spawn_blocking(move || list.get(&e2))
        .await
        .map_err(internal)?
        .map_err(|e| ApiError::bad(format!("EmailAddress: {e}")))?;
    // the API shows (and changes) BOUNCE and COMPLAINT entries only
    let found = found.filter(|e| e.reason != Reason::Unsubscribe);
    let Some(e) = found else {
        return Err(ApiError::not_found(format!(
            "Email address {email} does not exist on your suppression list."
        )));
    };
    let mut attrs = json!({});
    if let Some(m) = &e.message_id {
        attrs["MessageId"] = json!(m);
    }
    if let Some(f) = &e.feedback_id {
        attrs["FeedbackId"] = json!(f);
    }
    let mut d = summary(&e);
    d["Attributes"] = attrs;
    Ok(json!({ "SuppressedDestination": d }))
}

/// `DELETE /v2/email/suppression/addresses/{email}`.
pub async fn delete(ctx: &std::sync::Arc<Ctx>, email: &str) -> Result<Value, ApiError> {
    let (list, e2) = (std::sync::Arc::clone(&ctx.suppression), email.to_string());
    let gone = tokio::task::spawn_blocking(move || match list.get(&e2) {
        Ok(Some(e)) if e.reason == Reason::Unsubscribe => Ok(0),
        _ => list.remove(&[e2.as_str()]),
    })
    .await
    .map_err(internal)?
    .map_err(|e| ApiError::bad(format!("EmailAddress: {e}")))?;
    match gone {
        0 => Err(ApiError::not_found(format!(
            "Email address {email} does not exist on your suppression list."
        ))),
        _ => Ok(json!({})),
    }
}

/// A time in a query: ISO 8601 / RFC 3339 or seconds since the epoch.
fn time_ms(v: &str, field: &str) -> Result<u64, ApiError> {
    if let Ok(s) = v.parse::<f64>() {
        return Ok((s.max(0.0) * 1000.0) as u64);
    }
    humantime::parse_rfc3339_weak(v.trim_end_matches('Z'))
        .or_else(|_| humantime::parse_rfc3339(v))
        .map(|t| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        })
        .map_err(|_| ApiError::bad(format!("{field} {v:?} is not a time")))
}

/// `GET /v2/email/suppression/addresses`: BOUNCE and COMPLAINT entries
/// (those SES lists), by address; `NextToken` is the last address of the
/// page. Each page reads the whole list (it is unordered on disk).
pub async fn list(ctx: &std::sync::Arc<Ctx>, q: &Query) -> Result<Value, ApiError> {
    let size = q.page_size(100, 1000)?;
    let reasons: Vec<Reason> = q
        .all("Reason")
        .map(|r| reason(r, "Reason"))
        .collect::<Result<_, _>>()?;
    let filter = ListFilter {
        reason: None,
        since_ms: q
            .one("StartDate")
            .map(|v| time_ms(v, "StartDate"))
            .transpose()?,
        until_ms: q
            .one("EndDate")
            .map(|v| time_ms(v, "EndDate"))
            .transpose()?,
    };
    let after = match q.one("NextToken") {
        Some(t) => Some(
            B64.decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| ApiError::bad("NextToken is not one this service gave"))?,
        ),
        None => None,
    };
    let list = std::sync::Arc::clone(&ctx.suppression);
    let found = tokio::task::spawn_blocking(move || {
        let mut out: Vec<Entry> = Vec::new();
        list.list(&filter, |e| {
            let listed = e.topic.is_none()
                && matches!(e.reason, Reason::Bounce | Reason::Complaint)
                && (reasons.is_empty() || reasons.contains(&e.reason))
                && after.as_deref().is_none_or(|a| e.email.as_str() > a);
            if listed {
                out.push(e.clone());
            }
        })
        .map(|_| out)
    })
    .await
    .map_err(internal)?
    .map_err(internal)?;
    let mut found = found;
    found.sort_by(|a, b| a.email.cmp(&b.email));
    let more = found.len() > size;
    found.truncate(size);
    let mut out =
        json!({ "SuppressedDestinationSummaries": found.iter().map(summary).collect::<Vec<_>>() });
    if more && let Some(last) = found.last() {
        out["NextToken"] = json!(B64.encode(last.email.as_bytes()));
    }
    Ok(out)
}
