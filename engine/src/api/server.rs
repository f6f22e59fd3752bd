//! The API's HTTP side: the listener (plain or TLS), and each request
//! read (bounded in size, time and memory), authenticated and handed to
//! its operation, its errors written in the protocol it speaks.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use super::error::ApiError;
use super::{Ctx, Query, SERVICE, capped, classic, ok, percent_decode, route, sigv4, tls_listener};
use crate::config::Config;

/// Most request bytes held in memory at once (KiB), all requests
/// together.
pub(super) const BODY_BUDGET_KIB: usize = 512 * 1024;
/// Longest a request body may take to arrive.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        "RequestEntityTooLargeException",
        format!("the request is larger than {limit} bytes (api.max_request_size)"),
    )
}

/// Reads, authenticates and runs one request; errors in the protocol the
/// request speaks (the classic query API at `/`: XML).
async fn handle(ctx: Arc<Ctx>, req: Request<Body>) -> Response {
    let classic = req.uri().path() == "/";
    match handle_inner(ctx, req, classic).await {
        Ok(r) => r,
        Err(e) if classic => classic::error(&e),
        Err(e) => e.into_response(),
    }
}

async fn handle_inner(
    ctx: Arc<Ctx>,
    req: Request<Body>,
    classic: bool,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let keys = ctx.keys();
    let now = (volley_spool::now_ms() / 1000) as i64;
    let skew = ctx.config.api.max_clock_skew.as_secs() as i64;
    let secret_of = |k: &str| -> Option<(String, String)> {
        keys.0.get(k).map(|(s, p)| (s.clone(), p.region.clone()))
    };
    {
        // refused before its body is read: no signature, unknown key,
        // another scope or an old date
        let headers: Vec<(&str, &str)> = parts
            .headers
            .iter()
            .filter_map(|(n, v)| v.to_str().ok().map(|v| (n.as_str(), v)))
            .collect();
        if let Err(e) = sigv4::precheck(&headers, SERVICE, now, skew, secret_of) {
            return Err(ApiError::from(e));
        }
    }
    let busy = || {
        ApiError::new(
            "TooManyRequestsException",
            "too many requests at once; retry shortly",
        )
    };
    let Ok(_place) = ctx.places.try_acquire() else {
        return Err(busy());
    };
    let limit = ctx.config.api.max_request_size as usize;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    // bodies in memory at once are bounded: a request holds four times
    // its length (the copies a raw message is decoded through), or the
    // limit's when it does not say, from the budget
    let kib = declared.unwrap_or(limit).div_ceil(1024).max(1) * 4;
    let budget = kib.min(BODY_BUDGET_KIB) as u32;
    let Ok(_bytes) = ctx.body_budget.try_acquire_many(budget) else {
        return Err(busy());
    };
    let read = http_body_util::Limited::new(body, limit).collect();
    let body = match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Err(_) => {
            return Err(ApiError::new(
                "RequestTimeoutException",
                format!("the request body did not arrive within {BODY_TIMEOUT:?}"),
            ));
        }
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) => {
            let too_big = e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            return Err(match too_big {
                true => too_large(limit),
                false => ApiError::bad(format!("the request body could not be read: {e}")),
            });
        }
    };
    let headers: Vec<(&str, &str)> = parts
        .headers
        .iter()
        .filter_map(|(n, v)| v.to_str().ok().map(|v| (n.as_str(), v)))
        .collect();
    let r = sigv4::Request {
        method: parts.method.as_str(),
        raw_path: parts.uri.path(),
        raw_query: parts.uri.query().unwrap_or(""),
        headers: &headers,
        body: &body,
    };
    let verified = sigv4::verify(&r, SERVICE, now, skew, secret_of);
    let principal = match verified {
        Ok(v) => match keys.0.get(v.access_key) {
            Some((_, p)) => p.clone(),
            None => {
                return Err(ApiError::from(sigv4::SigError::UnknownKey(String::new())));
            }
        },
        Err(e) => return Err(ApiError::from(e)),
    };
    let segs: Vec<String> = parts
        .uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let q = Query::parse(parts.uri.query().unwrap_or(""));
    if classic && parts.method == Method::POST {
        // the form is the body (or, when it is empty, the query)
        let form = match body.is_empty() {
            true => classic::Form::parse(parts.uri.query().unwrap_or("").as_bytes()),
            false => classic::Form::parse(&body),
        };
        return Ok(classic::handle(&ctx, &principal, &form).await);
    }
    route(&ctx, &principal, &parts.method, &segs, &q, &body)
        .await
        .map(ok)
}

/// Serves the API on `listener` (with TLS when `tls` is given) until
/// `shutdown` turns true.
pub fn serve(
    ctx: Arc<Ctx>,
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let app = Router::new().fallback(move |req: Request<Body>| handle(Arc::clone(&ctx), req));
    tokio::spawn(async move {
        let stop = async move {
            while !*shutdown.borrow() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
        };
        let places = Arc::new(tokio::sync::Semaphore::new(capped::MAX_CONNECTIONS));
        let served = match tls {
            None => {
                let listener = capped::CappedListener {
                    inner: listener,
                    places,
                };
                axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .await
            }
            Some(tls) => {
                axum::serve(tls_listener::TlsListener::new(listener, tls, places), app)
                    .with_graceful_shutdown(stop)
                    .await
            }
        };
        if let Err(e) = served {
            tracing::error!(error = %e, "the API listener failed");
        }
    })
}

/// Binds `[api] listen`.
pub async fn bind(
    config: &Config,
) -> Result<Option<(tokio::net::TcpListener, SocketAddr)>, String> {
    let Some(l) = &config.api.listen else {
        return Ok(None);
    };
    let addr: SocketAddr = l.parse().map_err(|e| format!("api.listen {l:?}: {e}"))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} (api.listen): {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    Ok(Some((listener, bound)))
}
