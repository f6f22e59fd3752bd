//! The feedback side of `volley run`: the handler that turns reports and
//! unsubscribes into events and suppressions, and the inbound SMTP
//! listeners of the bounce and feedback domains (`[feedback] listeners`).
//! Off when `[feedback]` has no bounce domain. STARTTLS is offered with
//! the `[submission]` certificate when one is configured.

use std::sync::Arc;
use std::time::Duration;

use volley_engine::config::Config;
use volley_engine::engine::Engine;
use volley_engine::feedback::inbound::{self, Counts, Handler, Shared};

use super::{CliError, bad, fail};

/// What runs for feedback.
pub struct Inbound {
    pub handler: Option<Arc<Handler>>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Inbound {
    /// Stops accepting connections.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

pub async fn start(config: &Arc<Config>, engine: &Engine) -> Result<Inbound, CliError> {
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let mut out = Inbound {
        handler: None,
        stop,
        tasks: Vec::new(),
    };
    let Some(marks) = &engine.marks else {
        return Ok(out);
    };
    let f = &config.feedback;
    let handler = Arc::new(Handler {
        spool: Arc::clone(&engine.spool),
        keys: marks.keys.clone(),
        bounce_domain: marks.bounce_domain.clone(),
        suppression: Some(Arc::clone(&engine.suppression)),
        config: f.clone(),
        counts: Arc::new(Counts::default()),
    });
    engine
        .metrics
        .feedback
        .watch_counts(Arc::clone(&handler.counts));
    out.handler = Some(Arc::clone(&handler));
    if f.listeners.is_empty() {
        return Ok(out);
    }
    let s = &config.submission;
    let tls = match (&s.cert, &s.key) {
        (Some(c), Some(k)) => Some(
            volley_engine::submission::smtp::load_tls(c, k)
                .map_err(|e| bad(anyhow::anyhow!("feedback listener TLS: {e}")))?,
        ),
        _ => None,
    };
    let shared = Arc::new(Shared {
        hostname: s.hostname.clone(),
        domains: f.domains(),
        max_size: usize::try_from(f.max_message_size).unwrap_or(usize::MAX),
        tls,
        rate: inbound::Rate::new(f.max_messages_per_minute, Duration::from_secs(60)),
        handler,
        connections: Arc::new(tokio::sync::Semaphore::new(f.max_connections as usize)),
        open: inbound::PerAddress::default(),
    });
    for listener in inbound::bind(&f.listeners)
        .await
        .map_err(|e| fail(anyhow::anyhow!(e)))?
    {
        let addr = listener.local_addr().map_err(fail)?;
        tracing::info!(%addr, domains = ?shared.domains, "inbound listener for bounces and complaints");
        out.tasks.push(tokio::spawn(inbound::serve(
            listener,
            Arc::clone(&shared),
            stop_rx.clone(),
        )));
    }
    Ok(out)
}
