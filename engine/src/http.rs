//! The service's HTTP endpoints: `GET /metrics` (Prometheus text 0.0.4 or
//! OpenMetrics, by the `Accept` header: see [`crate::metrics::negotiate`])
//! and `GET /healthz` (`200 ok`, or `503` with the reason once the spool
//! refuses writes after a failed fdatasync). Exposure: listens on the
//! configured address; the only request input read is the `Accept` header.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use volley_spool::Spool;

use crate::delivery::Stats;
use crate::metrics::{Metrics, negotiate};

/// What the endpoints report on.
#[derive(Clone)]
pub struct Service {
    pub metrics: Arc<Metrics>,
    pub stats: Arc<Stats>,
    pub spool: Arc<Spool>,
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
    let app = Router::new()
        .route(
            "/metrics",
            get(move |headers: HeaderMap| metrics(service.clone(), headers)),
        )
        .route("/healthz", get(move || async move { health(&spool) }));
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
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    Ok(addr)
}
