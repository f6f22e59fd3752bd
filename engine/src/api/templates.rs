//! The template operations: `CreateEmailTemplate`, `GetEmailTemplate`,
//! `UpdateEmailTemplate`, `DeleteEmailTemplate`, `ListEmailTemplates`
//! (by name, `PageSize` up to 100, `NextToken`) and
//! `TestRenderEmailTemplate` (the whole MIME message, as SES returns it).
//! Writes are durable before the answer (see [`super::store`]).

use serde::Deserialize;
use serde_json::{Value, json};

use super::content::{self, Addressing};
use super::error::ApiError;
use super::store::{Content, StoreError};
use super::{Ctx, Query};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateRequest {
    template_name: String,
    template_content: Content,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateRequest {
    template_content: Content,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RenderRequest {
    template_data: String,
}

fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Exists(_) => ApiError::new("AlreadyExistsException", e.to_string()),
        StoreError::Missing(_) => ApiError::not_found(e.to_string()),
        StoreError::Invalid(why) => ApiError::bad(why),
        StoreError::Full => ApiError::new("LimitExceededException", e.to_string()),
        StoreError::Io(_) => ApiError::new("InternalFailure", e.to_string()),
    }
}

fn now_s() -> f64 {
    volley_spool::now_ms() as f64 / 1000.0
}

/// Runs a store write off the runtime's threads (it syncs files).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new("InternalFailure", e.to_string()))?
        .map_err(store_error)
}

/// `POST /v2/email/templates`.
pub async fn create(ctx: &std::sync::Arc<Ctx>, body: &[u8]) -> Result<Value, ApiError> {
    let req: CreateRequest = super::parse_json(body)?;
    let c = std::sync::Arc::clone(ctx);
    blocking(move || {
        c.templates
            .put(&req.template_name, req.template_content, false, now_s())
    })
    .await?;
    Ok(json!({}))
}

/// `PUT /v2/email/templates/{name}`.
pub async fn update(ctx: &std::sync::Arc<Ctx>, name: &str, body: &[u8]) -> Result<Value, ApiError> {
    let req: UpdateRequest = super::parse_json(body)?;
    let (c, name) = (std::sync::Arc::clone(ctx), name.to_string());
    blocking(move || c.templates.put(&name, req.template_content, true, now_s())).await?;
    Ok(json!({}))
}

/// `DELETE /v2/email/templates/{name}`.
pub async fn delete(ctx: &std::sync::Arc<Ctx>, name: &str) -> Result<Value, ApiError> {
    let (c, name) = (std::sync::Arc::clone(ctx), name.to_string());
    blocking(move || c.templates.delete(&name)).await?;
    Ok(json!({}))
}

/// `GET /v2/email/templates/{name}`.
pub fn get(ctx: &Ctx, name: &str) -> Result<Value, ApiError> {
    let t = ctx
        .templates
        .get(name)
        .ok_or_else(|| ApiError::not_found(format!("Template {name} does not exist.")))?;
    Ok(json!({ "TemplateName": t.name, "TemplateContent": t.content }))
}

/// `GET /v2/email/templates`.
pub fn list(ctx: &Ctx, q: &Query) -> Result<Value, ApiError> {
    let size = q.page_size(10, 100)?;
    let after = q.one("NextToken");
    let (page, more) = ctx.templates.page(after, size);
    let items: Vec<Value> = page
        .iter()
        .map(|t| json!({ "TemplateName": t.name, "CreatedTimestamp": t.created_s }))
        .collect();
    let mut out = json!({ "TemplatesMetadata": items });
    if more && let Some(last) = page.last() {
        out["NextToken"] = json!(last.name);
    }
    Ok(out)
}

/// `POST /v2/email/templates/{name}/render`.
pub fn render(ctx: &Ctx, name: &str, body: &[u8]) -> Result<Value, ApiError> {
    let req: RenderRequest = super::parse_json(body)?;
    let t = ctx
        .templates
        .get(name)
        .ok_or_else(|| ApiError::not_found(format!("Template {name} does not exist.")))?;
    let vars = content::template_data(Some(&req.template_data), "TemplateData")?;
    let rendered = t
        .compiled()
        .map_err(ApiError::bad)?
        .render(vars)
        .map_err(|f| ApiError::bad(format!("Rendering failure: {}", f.message)))?;
    let a = Addressing {
        from: "render@render.invalid",
        to: &[],
        cc: &[],
        reply_to: &[],
    };
    let now = (volley_spool::now_ms() / 1000) as i64;
    let m = content::build(&a, &rendered, &[], &[], now)?;
    // SES's rendering has no From: the message starts at its Subject
    let text = String::from_utf8_lossy(&m);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let head: String = head
        .split_inclusive("\r\n")
        .filter(|l| !l.starts_with("From: "))
        .collect();
    let text = format!("{}\r\n\r\n{body}", head.trim_end_matches("\r\n"));
    Ok(json!({ "RenderedTemplate": text }))
}
