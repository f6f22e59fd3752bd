//! The service's HTTP endpoints: `GET /metrics` (Prometheus text) and
//! `GET /healthz`. Exposure: listens on the configured address; requests
//! carry no input the handlers read.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::routing::get;

use crate::delivery::Stats;
use crate::metrics::Metrics;

/// Binds `listen` and serves until `shutdown` turns true.
pub async fn serve(
    listen: SocketAddr,
    metrics: Arc<Metrics>,
    stats: Arc<Stats>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<SocketAddr> {
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let body = metrics.render(&stats);
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        body,
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }));
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
