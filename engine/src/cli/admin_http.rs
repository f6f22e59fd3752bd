//! The admin HTTP API: `volley queue`'s actions and inspections on the
//! running service's `[http] listen`, for callers with a bearer token
//! (`[[http.admin]]`: a name and the token's SHA-256).
//!
//! - `POST /admin/queue/{retry,hold,release,reroute,cancel,bounce,drain,resume,warmup}`
//!   with a JSON object naming the target as the command's options do
//!   (`{"domain": "example.com"}`, `{"all": true}`, `{"campaign": "spring",
//!   "reason": "..."}`, `{"domain": "d", "to": "host:25"}` or `{"domain":
//!   "d", "clear": true}`, `{"wait": 60}`): answered `{"result": "..."}`
//!   with the text the command prints, after the action is logged (with
//!   the token's name and the caller's address).
//! - `GET /admin/queue/{holds,reroutes,endings,warmups,log}`,
//!   `GET /admin/queue/inspect?email=...`, `GET /admin/queue/deferred?limit=N`:
//!   JSON arrays.
//!
//! Errors are JSON `{"error": "..."}`: 401 without a known token (with
//! `WWW-Authenticate: Bearer`), 400 for a bad request naming what is
//! wrong, 404 for an unknown path (and every path when no token is
//! configured), 503 when the action could not be carried out. Tokens are
//! read again on SIGHUP. Exposure: requests come from the network:
//! authenticated before anything is read, bodies bounded, every field
//! checked as the command's options are.

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};

use axum::Router;
use axum::extract::{ConnectInfo, Path as UrlPath, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use volley_engine::admin_log;
use volley_engine::config::Config;
use volley_engine::delivery::endings::End;
use volley_engine::delivery::holds::Hold;
use volley_engine::delivery::scheduler::Deferred;
use volley_engine::engine::Handle;
use volley_spool::Spool;

use super::queue::{DrainReq, Op, Peer};

/// Largest request body.
const MAX_BODY: usize = 16 * 1024;

/// What the API needs.
pub struct AdminCtx {
    pub handle: Handle,
    pub spool: Arc<Spool>,
    pub drain: tokio::sync::mpsc::UnboundedSender<DrainReq>,
    tokens: RwLock<Arc<Tokens>>,
}

/// The tokens: name and SHA-256.
type Tokens = Vec<(String, [u8; 32])>;

impl AdminCtx {
    pub fn new(
        config: &Config,
        handle: Handle,
        spool: Arc<Spool>,
        drain: tokio::sync::mpsc::UnboundedSender<DrainReq>,
    ) -> AdminCtx {
        let ctx = AdminCtx {
            handle,
            spool,
            drain,
            tokens: RwLock::default(),
        };
        ctx.set_tokens(config);
        ctx
    }

    /// Takes the tokens of `config` (start and SIGHUP).
    pub fn set_tokens(&self, config: &Config) {
        let tokens: Tokens = config
            .http
            .admin
            .iter()
            .filter_map(|t| Some((t.name.clone(), t.digest()?)))
            .collect();
        *self.tokens.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(tokens);
    }

    /// The name of the token `headers` carry, if it is one of ours.
    fn caller(&self, headers: &HeaderMap) -> Option<String> {
        let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, token) = auth.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.trim().as_bytes());
        let tokens = Arc::clone(&self.tokens.read().unwrap_or_else(PoisonError::into_inner));
        let mut found = None;
        // every token compared, in constant time
        for (name, want) in tokens.iter() {
            if aws_lc_rs::constant_time::verify_slices_are_equal(digest.as_ref(), want).is_ok() {
                found = Some(name.clone());
            }
        }
        found
    }
}

/// The API's routes.
pub fn router(ctx: Arc<AdminCtx>) -> Router {
    Router::new().route(
        "/admin/queue/{what}",
        axum::routing::any(handle).with_state(ctx),
    )
}

fn reply(status: StatusCode, v: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    reply(status, &json!({ "error": message.into() }))
}

async fn handle(
    State(ctx): State<Arc<AdminCtx>>,
    UrlPath(what): UrlPath<String>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let tokens = Arc::clone(&ctx.tokens.read().unwrap_or_else(PoisonError::into_inner));
    if tokens.is_empty() {
        return error(
            StatusCode::NOT_FOUND,
            "the admin API is off (no [[http.admin]] token)",
        );
    }
    let Some(name) = ctx.caller(&headers) else {
        let mut r = error(StatusCode::UNAUTHORIZED, "a known bearer token is needed");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return r;
    };
    if method == Method::GET {
        return look(&ctx, &what, uri.query().unwrap_or("")).await;
    }
    if method != Method::POST {
        return error(StatusCode::METHOD_NOT_ALLOWED, "GET or POST");
    }
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("a body of at most {MAX_BODY} bytes"),
            );
        }
    };
    let fields: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => return error(StatusCode::BAD_REQUEST, "the body must be a JSON object"),
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("the body is not JSON: {e}"),
                );
            }
        }
    };
    let op = match op(&what, &fields) {
        Ok(op) => op,
        Err((status, m)) => return error(status, m),
    };
    let peer = Peer::Http {
        name,
        remote: remote.to_string(),
    };
    // on a task of its own: an action is carried out and logged even if
    // the caller goes away meanwhile
    let ctx2 = Arc::clone(&ctx);
    let done = tokio::spawn(async move {
        let dir = ctx2.spool.dir().to_path_buf();
        super::queue::act(&ctx2.handle, &dir, Some(&ctx2.drain), peer, op).await
    })
    .await;
    match done {
        Ok(Ok(text)) => reply(StatusCode::OK, &json!({ "result": text })),
        Ok(Err(m)) => error(StatusCode::SERVICE_UNAVAILABLE, m),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

type Bad = (StatusCode, String);

fn text_field(f: &Value, key: &str) -> Result<Option<String>, Bad> {
    match &f[key] {
        Value::Null => Ok(None),
        Value::String(s) if !s.is_empty() && !s.chars().any(char::is_control) => {
            Ok(Some(s.clone()))
        }
        _ => Err((
            StatusCode::BAD_REQUEST,
            format!("{key} must be a non-empty string"),
        )),
    }
}

/// Exactly one of `keys` in `f`: which, and its value.
fn one_of<'a>(f: &Value, keys: &[&'a str]) -> Result<(&'a str, String), Bad> {
    let given: Vec<&str> = keys.iter().copied().filter(|k| !f[*k].is_null()).collect();
    let [k] = given[..] else {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("exactly one of {} is needed", keys.join(", ")),
        ));
    };
    let v = text_field(f, k)?.unwrap_or_default();
    Ok((k, v))
}

/// The action a POST asks for.
fn op(what: &str, f: &Value) -> Result<Op, Bad> {
    let unknown = || (StatusCode::NOT_FOUND, format!("no action {what:?}"));
    Ok(match what {
        "retry" => {
            if f["all"] == json!(true) && f["domain"].is_null() && f["site"].is_null() {
                Op::Retry {
                    which: Deferred::All,
                }
            } else {
                match one_of(f, &["domain", "site"]).map_err(|_| {
                    (
                        StatusCode::BAD_REQUEST,
                        "exactly one of domain, site, all: true is needed".to_string(),
                    )
                })? {
                    ("domain", d) => Op::Retry {
                        which: Deferred::Domain(d),
                    },
                    (_, s) => Op::Retry {
                        which: Deferred::Site(s),
                    },
                }
            }
        }
        "hold" | "release" => {
            let hold = match one_of(f, &["domain", "site", "campaign"])? {
                ("domain", d) => Hold::Domain(d),
                ("site", s) => Hold::Site(s),
                (_, c) => Hold::Campaign(c),
            };
            Op::Hold {
                hold,
                on: what == "hold",
            }
        }
        "reroute" => {
            let domain = text_field(f, "domain")?
                .ok_or((StatusCode::BAD_REQUEST, "domain is needed".to_string()))?;
            let to = text_field(f, "to")?;
            let clear = f["clear"] == json!(true);
            if to.is_some() == clear {
                return Err((
                    StatusCode::BAD_REQUEST,
                    "exactly one of to, clear: true is needed".into(),
                ));
            }
            if let Some(t) = &to {
                volley_engine::config::Route::parse(t)
                    .map_err(|e| (StatusCode::BAD_REQUEST, format!("to: {e}")))?;
            }
            Op::Reroute { domain, to }
        }
        "cancel" => Op::End {
            end: End::Campaign(
                text_field(f, "campaign")?
                    .ok_or((StatusCode::BAD_REQUEST, "campaign is needed".to_string()))?,
            ),
            reason: text_field(f, "reason")?,
        },
        "bounce" => Op::End {
            end: End::Domain(
                text_field(f, "domain")?
                    .ok_or((StatusCode::BAD_REQUEST, "domain is needed".to_string()))?,
            ),
            reason: text_field(f, "reason")?,
        },
        "drain" => {
            let wait = match &f["wait"] {
                Value::Null => 120,
                v => v.as_u64().filter(|w| (1..=86_400).contains(w)).ok_or((
                    StatusCode::BAD_REQUEST,
                    "wait must be 1 to 86400 seconds".to_string(),
                ))?,
            };
            Op::Drain {
                on: true,
                wait_secs: wait,
            }
        }
        "warmup" => {
            let source = text_field(f, "source")?
                .ok_or((StatusCode::BAD_REQUEST, "source is needed".to_string()))?;
            let act = serde_json::from_value(f["action"].clone()).map_err(|_| {
                (
                    StatusCode::BAD_REQUEST,
                    "action must be pause, resume, reset or complete".to_string(),
                )
            })?;
            Op::Warmup { source, act }
        }
        "resume" => Op::Drain {
            on: false,
            wait_secs: 0,
        },
        _ => return Err(unknown()),
    })
}

/// The value of `key` in a query string.
fn query_value(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| {
            let v = v.replace('+', " ");
            String::from_utf8_lossy(&volley_engine::api::sigv4::percent_decode(&v)).into_owned()
        })
    })
}

/// A GET: a listing or an inspection.
async fn look(ctx: &Arc<AdminCtx>, what: &str, query: &str) -> Response {
    let handle = &ctx.handle;
    let value = match what {
        "holds" => {
            let list: Vec<Value> = handle
                .holds()
                .iter()
                .map(|(kind, name)| json!({ "kind": kind, "name": name }))
                .collect();
            Value::Array(list)
        }
        "reroutes" => {
            let list: Vec<Value> = handle
                .reroutes()
                .iter()
                .map(|(d, to)| json!({ "domain": d, "to": to }))
                .collect();
            Value::Array(list)
        }
        "warmups" => Value::Array(
            handle
                .warmups()
                .iter()
                .filter_map(|s| serde_json::to_value(s).ok())
                .collect(),
        ),
        "endings" => {
            let list: Vec<Value> = handle
                .endings()
                .iter()
                .map(|(kind, name, m)| {
                    json!({ "kind": kind, "name": name, "at": volley_engine::events::model::timestamp(m.at_ms), "reason": m.reason })
                })
                .collect();
            Value::Array(list)
        }
        "log" | "inspect" | "deferred" => {
            let op = match what {
                "inspect" => match query_value(query, "email") {
                    Some(email) if !email.is_empty() => Some(Op::Inspect { email }),
                    _ => return error(StatusCode::BAD_REQUEST, "email is needed (?email=...)"),
                },
                "deferred" => {
                    let limit = match query_value(query, "limit") {
                        None => 20,
                        Some(l) => match l.parse::<usize>() {
                            Ok(n) if (1..=10_000).contains(&n) => n,
                            _ => return error(StatusCode::BAD_REQUEST, "limit must be 1 to 10000"),
                        },
                    };
                    Some(Op::Deferred { limit })
                }
                _ => None,
            };
            let spool = Arc::clone(&ctx.spool);
            let found = tokio::task::spawn_blocking(move || match op {
                Some(op) => super::queue::found(&spool, &op),
                None => admin_log::read(spool.dir())
                    .map(|a| {
                        a.iter()
                            .filter_map(|a| serde_json::to_value(a).ok())
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .await;
            match found {
                Ok(v) => Value::Array(v),
                Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            }
        }
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                format!("nothing to show as {what:?}"),
            );
        }
    };
    reply(StatusCode::OK, &value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_become_the_commands_actions() {
        let ok = |what: &str, f: Value| op(what, &f).map(|o| serde_json::to_value(&o).unwrap());
        assert_eq!(ok("retry", json!({"all": true})).unwrap()["which"], "all");
        assert_eq!(
            ok("retry", json!({"domain": "a.test"})).unwrap()["which"]["domain"],
            "a.test"
        );
        assert!(ok("retry", json!({"domain": "a.test", "site": "s"})).is_err());
        assert!(ok("retry", json!({})).is_err());
        assert_eq!(ok("hold", json!({"campaign": "c"})).unwrap()["on"], true);
        assert_eq!(ok("release", json!({"site": "s"})).unwrap()["on"], false);
        assert!(ok("hold", json!({"domain": 3})).is_err());
        assert!(ok("hold", json!({"domain": "a\nb"})).is_err());
        assert!(ok("reroute", json!({"domain": "d", "to": "not a host"})).is_err());
        assert!(
            ok(
                "reroute",
                json!({"domain": "d", "to": "h:25", "clear": true})
            )
            .is_err()
        );
        assert_eq!(
            ok("reroute", json!({"domain": "d", "clear": true})).unwrap()["to"],
            Value::Null
        );
        assert_eq!(
            ok("cancel", json!({"campaign": "c", "reason": "r"})).unwrap()["reason"],
            "r"
        );
        assert!(ok("bounce", json!({})).is_err());
        assert_eq!(ok("drain", json!({})).unwrap()["wait_secs"], 120);
        assert!(ok("drain", json!({"wait": 0})).is_err());
        let e = op("explode", &json!({})).err().unwrap();
        assert_eq!(e.0, StatusCode::NOT_FOUND);
        assert_eq!(
            query_value("a=1&email=j%40x.test", "email").as_deref(),
            Some("j@x.test")
        );
        assert_eq!(query_value("email=", "limit"), None);
    }
}
