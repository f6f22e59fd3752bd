//! The SES v2 API inside `volley run`: bound when `[api] listen` is set,
//! sharing the submission acceptor and the keys' quotas with SMTP.

use std::sync::Arc;

use volley_engine::config::Config;

use super::{bad, fail};

/// Starts the SES v2 API when `[api] listen` is set.
pub(super) async fn start(
    config: &Arc<Config>,
    engine: &volley_engine::engine::Engine,
    acceptor: volley_engine::submission::accept::Acceptor,
    quotas: Arc<volley_engine::submission::quota::Quotas>,
    stop_rx: &tokio::sync::watch::Receiver<bool>,
    out: &mut super::run::Submission,
) -> Result<(), super::CliError> {
    use volley_engine::api;
    let Some((listener, addr)) = api::bind(config)
        .await
        .map_err(|e| fail(anyhow::anyhow!(e)))?
    else {
        return Ok(());
    };
    let tls = match (&config.api.cert, &config.api.key) {
        (Some(c), Some(k)) => Some(
            volley_engine::submission::smtp::load_tls(c, k)
                .map_err(|e| bad(anyhow::anyhow!("api TLS: {e}")))?,
        ),
        _ => None,
    };
    if config.submission.ses_credentials.is_empty() {
        tracing::warn!("api: no [[submission.ses_credentials]]: every request will be refused");
    }
    let ctx = Arc::new(
        api::Ctx::new(
            Arc::clone(config),
            quotas,
            acceptor,
            Arc::clone(&engine.suppression),
        )
        .map_err(|e| fail(anyhow::anyhow!("api templates: {e}")))?,
    );
    tracing::info!(%addr, https = tls.is_some(), "SES v2 API listening");
    out.tasks
        .push(api::serve(Arc::clone(&ctx), listener, tls, stop_rx.clone()));
    out.api = Some(ctx);
    Ok(())
}
