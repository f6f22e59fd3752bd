//! The SES v2 HTTP API (`[api]`): the same paths, JSON field names and
//! errors as Amazon SES's `sesv2`, so that AWS SDKs and the AWS CLI work
//! with only the endpoint URL and the keys changed.
//!
//! ```text
//! request ─► body (≤ max_request_size) ─► SigV4 (sigv4) ─► route
//!   send ─► content ─► submission::message::prepare ─► identities, quota
//!        ─► submission::accept::Acceptor (durable) ─► {"MessageId"}
//!   templates ─► store (spool/templates) · suppression ─► the list
//!   account, configuration sets ─► the config
//! ```
//!
//! Every request must be signed (AWS Signature Version 4, service `ses`,
//! the key's region) by a `[[submission.ses_credentials]]` key; the key's
//! identities and quotas apply as they do to its SMTP logins. Exposure:
//! listens on the network; every byte of a request is hostile until its
//! signature is checked, and checked again field by field after.

pub mod account;
pub mod bulk;
mod capped;
pub mod classic;
pub mod content;
pub mod error;
pub mod send;
pub mod shapes;
pub mod sigv4;
pub mod store;
pub mod templates;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::config::Config;
use crate::feedback::suppression::SuppressionList;
use crate::submission::accept::Acceptor;
use crate::submission::auth;
use crate::submission::quota::Quotas;
use error::ApiError;

/// The signing name of SES (the service in a signature's scope).
pub const SERVICE: &str = "ses";

/// A key that signed a request: who it is and what it may do.
#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    /// The region its signatures are scoped to.
    pub region: String,
    pub principal: Arc<auth::Principal>,
}

impl Principal {
    pub fn may_send_as(&self, address: &str) -> bool {
        self.principal.may_send_as(address)
    }
}

/// The access keys, by id: secret and principal.
#[derive(Default)]
pub struct Keys(pub(super) HashMap<String, (String, Principal)>);

impl Keys {
    /// From `[[submission.ses_credentials]]`.
    pub fn from_config(config: &Config) -> Keys {
        Keys(
            config
                .submission
                .ses_credentials
                .iter()
                .map(|c| {
                    let p = Principal {
                        name: c.access_key_id.clone(),
                        region: c.region.clone(),
                        principal: Arc::new(auth::Principal {
                            name: c.access_key_id.clone(),
                            identities: c
                                .identities
                                .iter()
                                .map(|i| i.trim().to_ascii_lowercase())
                                .collect(),
                            max_send_rate: c.max_send_rate,
                            max_24_hour_send: c.max_24_hour_send,
                        }),
                    };
                    (c.access_key_id.clone(), (c.secret_access_key.clone(), p))
                })
                .collect(),
        )
    }
}

/// What the API works with.
pub struct Ctx {
    pub config: Arc<Config>,
    keys: RwLock<Arc<Keys>>,
    /// Shared with SMTP submission: one key, one quota.
    pub quotas: Arc<Quotas>,
    pub acceptor: Acceptor,
    pub templates: store::TemplateStore,
    pub suppression: Arc<SuppressionList>,
    pub(super) places: tokio::sync::Semaphore,
    /// Request bodies in memory, KiB (`server::BODY_BUDGET_KIB`).
    pub(super) body_budget: tokio::sync::Semaphore,
}

impl Ctx {
    pub fn new(
        config: Arc<Config>,
        quotas: Arc<Quotas>,
        acceptor: Acceptor,
        suppression: Arc<SuppressionList>,
    ) -> Result<Ctx, store::StoreError> {
        let templates = store::TemplateStore::open(&config.spool.dir.join("templates"))?;
        Ok(Ctx {
            keys: RwLock::new(Arc::new(Keys::from_config(&config))),
            places: tokio::sync::Semaphore::new(config.api.max_concurrent_requests as usize),
            body_budget: tokio::sync::Semaphore::new(server::BODY_BUDGET_KIB),
            config,
            quotas,
            acceptor,
            templates,
            suppression,
        })
    }

    /// SIGHUP: the keys of a new config.
    pub fn set_keys(&self, config: &Config) {
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Keys::from_config(config));
    }

    pub(super) fn keys(&self) -> Arc<Keys> {
        Arc::clone(&self.keys.read().unwrap_or_else(|e| e.into_inner()))
    }
}

/// A request's query, decoded.
pub struct Query(Vec<(String, String)>);

impl Query {
    pub(super) fn parse(raw: &str) -> Query {
        let dec = percent_decode;
        Query(
            raw.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (dec(k), dec(v))
                })
                .collect(),
        )
    }

    /// The first value of `key`.
    pub fn one(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `PageSize`: `default` when absent, 1..=`max`.
    pub fn page_size(&self, default: usize, max: usize) -> Result<usize, ApiError> {
        match self.one("PageSize") {
            None => Ok(default),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(ApiError::bad(format!("PageSize {v:?}: 1 to {max}"))),
            },
        }
    }
}

/// `%XX`-decoded text (lossy UTF-8; `+` stays `+`).
pub(super) fn percent_decode(s: &str) -> String {
    String::from_utf8_lossy(&sigv4::percent_decode(s)).into_owned()
}

/// A request body as `T`, or `BadRequestException` saying what is wrong.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body = if body.is_empty() {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("invalid request: {e}")))
}

pub(super) fn ok(v: Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// Runs one signed request.
pub(super) async fn route(
    ctx: &Arc<Ctx>,
    p: &Principal,
    method: &Method,
    segs: &[String],
    q: &Query,
    body: &[u8],
) -> Result<Value, ApiError> {
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = method.as_str();
    match (m, &s[..]) {
        ("POST", ["v2", "email", "outbound-emails"]) => send::send_email(ctx, p, body).await,
        ("POST", ["v2", "email", "outbound-bulk-emails"]) => bulk::send_bulk(ctx, p, body).await,
        ("POST", ["v2", "email", "templates"]) => templates::create(ctx, body).await,
        ("GET", ["v2", "email", "templates"]) => templates::list(ctx, q),
        ("GET", ["v2", "email", "templates", name]) => templates::get(ctx, name),
        ("PUT", ["v2", "email", "templates", name]) => templates::update(ctx, name, body).await,
        ("DELETE", ["v2", "email", "templates", name]) => templates::delete(ctx, name).await,
        ("POST", ["v2", "email", "templates", name, "render"]) => {
            templates::render(ctx, name, body)
        }
        ("PUT", ["v2", "email", "suppression", "addresses"]) => account::put(ctx, body).await,
        ("GET", ["v2", "email", "suppression", "addresses"]) => account::list(ctx, q).await,
        ("GET", ["v2", "email", "suppression", "addresses", email]) => {
            account::get(ctx, email).await
        }
        ("DELETE", ["v2", "email", "suppression", "addresses", email]) => {
            account::delete(ctx, email).await
        }
        ("GET", ["v2", "email", "account"]) => Ok(account::get_account(ctx, p)),
        ("GET", ["v2", "email", "configuration-sets"]) => account::list_sets(ctx, q),
        ("GET", ["v2", "email", "configuration-sets", name]) => account::get_set(ctx, name),
        _ => Err(ApiError::new(
            "UnknownOperationException",
            format!("{m} {} is not an operation of this API", segs.join("/")),
        )),
    }
}

mod server;
mod tls_listener;

pub use server::{bind, serve};
