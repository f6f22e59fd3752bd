//! The service's HTTP endpoints: `GET /metrics` (Prometheus text 0.0.4 or
//! OpenMetrics, by the `Accept` header: see [`crate::metrics::negotiate`])
//! and `GET /healthz` (`200 ok`, or `503` with the reason once the spool
//! refuses writes after a failed fdatasync), and, when `sns` webhooks are
//! configured, SNS's links: the signing certificate
//! (`GET /sns/SimpleNotificationService-volley.pem`) and `GET /sns?Action=…`
//! (subscription confirmation and unsubscription, see
//! [`crate::events::sns::endpoints`]), and, with `[feedback.unsubscribe]`,
//! one-click unsubscribe (`GET`/`POST /unsubscribe/<token>`, see
//! [`crate::feedback::web`]). Exposure: listens on the configured
//! address; request input read: the `Accept` header, the `/sns` query and
//! the unsubscribe token.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use volley_spool::Spool;

use crate::delivery::Stats;
use crate::events::sns::{self, endpoints};
use crate::events::webhook::SnsState;
use crate::metrics::{Metrics, negotiate};

/// What the endpoints report on.
#[derive(Clone)]
pub struct Service {
    pub metrics: Arc<Metrics>,
    pub stats: Arc<Stats>,
    pub spool: Arc<Spool>,
    /// The SNS side of `sns` webhooks (none: the `/sns` paths are 404).
    pub sns: Option<SnsState>,
    /// One-click unsubscribe (none: `/unsubscribe/…` is 404).
    pub feedback: Option<Arc<crate::feedback::inbound::Handler>>,
    /// More routes served here (the admin API).
    pub more: Option<Router>,
}

/// `GET` or `POST /unsubscribe/<token>` ([`crate::feedback::web`]).
async fn unsubscribe(
    handler: Option<Arc<crate::feedback::inbound::Handler>>,
    uri: axum::http::Uri,
    post: Option<bytes::Bytes>,
) -> Response {
    use crate::feedback::web;
    let Some(h) = handler else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let token = uri.path().strip_prefix(web::PATH).unwrap_or("").to_string();
    let answered = tokio::task::spawn_blocking(move || match post {
        Some(body) => web::unsubscribe(&h, &token, &body),
        None => web::confirm(&h, &token),
    })
    .await;
    match answered {
        Ok((status, body)) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// `GET /healthz`: the status and body for a spool in this state.
pub fn health(spool: &Spool) -> (StatusCode, String) {
    match spool.failure() {
        None => (StatusCode::OK, "ok\n".to_string()),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {why}; delivery is halted: restart volley run\n"),
        ),
    }
}

async fn metrics(service: Service, headers: HeaderMap) -> Response {
    let format = negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    // reading the spool's counts and directory is blocking work
    let body = tokio::task::spawn_blocking(move || {
        service
            .metrics
            .render(service.stats.queues(), &service.spool, format)
    })
    .await;
    match body {
        Ok(body) => ([(header::CONTENT_TYPE, format.content_type())], body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering the metrics failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Binds `listen` and serves until `shutdown` turns true.
pub async fn serve(
    listen: SocketAddr,
    service: Service,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<SocketAddr> {
    let spool = Arc::clone(&service.spool);
    let more = service.more.clone();
    let (cert, actions) = (service.sns.clone(), service.sns.clone());
    let (unsub_get, unsub_post) = (service.feedback.clone(), service.feedback.clone());
    let app = Router::new()
        .route(
            "/unsubscribe/{token}",
            get(move |uri: axum::http::Uri| unsubscribe(unsub_get, uri, None)).post(
                move |uri: axum::http::Uri, body: bytes::Bytes| {
                    unsubscribe(unsub_post, uri, Some(body))
                },
            ),
        )
        .route(
            sns::CERT_PATH,
            get(move || async move {
                match cert {
                    Some(s) => (
                        [(header::CONTENT_TYPE, "application/x-pem-file")],
                        s.signer.cert_pem.clone(),
                    )
                        .into_response(),
                    None => StatusCode::NOT_FOUND.into_response(),
                }
            }),
        )
        .route(
            sns::ACTION_PATH,
            get(move |uri: axum::http::Uri| async move {
                let Some(s) = actions else {
                    return StatusCode::NOT_FOUND.into_response();
                };
                let query = uri.query().unwrap_or("").to_string();
                let answered = tokio::task::spawn_blocking(move || {
                    endpoints::answer(&s.subscriptions, &query)
                })
                .await;
                match answered {
                    Ok((status, body)) => (
                        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                        [(header::CONTENT_TYPE, "text/xml")],
                        body,
                    )
                        .into_response(),
                    Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                }
            }),
        )
        .route(
            "/metrics",
            get(move |headers: HeaderMap| metrics(service.clone(), headers)),
        )
        .route("/healthz", get(move || async move { health(&spool) }));
    let app = match more {
        Some(more) => app.merge(more),
        None => app,
    };
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let stop = async move {
            while !*shutdown.borrow() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
        };
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    Ok(addr)
}
