//! `volley queue drain` and `volley queue resume` in the service's main
//! loop, which owns the listeners.
//!
//! Drain: the SMTP submission listeners, the SES API and the drop directory
//! stop (as at shutdown: sessions in a transaction get a moment to finish
//! and what they were given is spooled), campaign jobs are refused, and
//! delivery starts no attempt; the answer comes once every attempt in
//! flight has its outcome journaled (or the wait ran out), with what
//! remains in the spool. Feedback (bounces, complaints) is still taken
//! and events are still published. Resume starts the listeners again and
//! delivery takes its queues. A drain lasts until resumed or the service
//! stops (a restart takes work again). Exposure: asked through the control
//! socket (local clients of the service's own user).

use std::sync::Arc;
use std::time::Duration;

use volley_engine::config::Config;
use volley_engine::engine::Engine;

use super::queue::DrainReq;
use super::run::Submission;

/// Most domains named in a drain's report.
const TOP: usize = 10;

/// Carries out `req`; an error when new work cannot be taken again (the
/// listeners did not start: the drain stays).
pub(super) async fn apply(
    req: DrainReq,
    engine: &Engine,
    submission: &mut Option<Submission>,
    config: &Arc<Config>,
    quotas: &Arc<volley_engine::submission::quota::Quotas>,
) -> Result<(), String> {
    let handle = engine.handle();
    if !req.on {
        if submission.is_none() {
            match super::run::start_submission(config, engine, quotas).await {
                Ok(s) => *submission = Some(s),
                Err(e) => {
                    let why = format!("the listeners did not start again: {}", e.error);
                    let _ = req.reply.send(Err(why.clone()));
                    return Err(why);
                }
            }
        }
        handle.drain(false, Duration::from_secs(5)).await;
        tracing::info!("drain ended: taking new work and delivering again");
        let _ = req
            .reply
            .send(Ok("resumed: taking new work and delivering".into()));
        return Ok(());
    }
    tracing::info!("draining: new work refused, no attempt starts");
    if let Some(s) = submission.take() {
        s.stop().await;
    }
    let spool = Arc::clone(&engine.spool);
    tokio::spawn(async move {
        let quiet = handle.drain(true, req.wait).await;
        let report = tokio::task::spawn_blocking(move || remains(&spool.summary()))
            .await
            .unwrap_or_default();
        let text = if quiet {
            format!("drained: nothing in flight; {report}")
        } else {
            format!(
                "draining: attempts still in flight after {} s (they finish; no new one starts); {report}",
                req.wait.as_secs()
            )
        };
        tracing::info!(report = %text, "drain");
        let _ = req.reply.send(Ok(text));
    });
    Ok(())
}

/// What remains in the spool: totals, then the domains with the most.
fn remains(summary: &volley_spool::Summary) -> String {
    let mut domains: Vec<(&String, u64, u64)> = summary
        .domains
        .iter()
        .map(|(d, c)| (d, c.queued, c.deferred))
        .filter(|(_, q, d)| q + d > 0)
        .collect();
    let queued: u64 = domains.iter().map(|d| d.1).sum();
    let deferred: u64 = domains.iter().map(|d| d.2).sum();
    domains.sort_by(|a, b| (b.1 + b.2).cmp(&(a.1 + a.2)).then(a.0.cmp(b.0)));
    let mut text = format!("remaining in the spool: {queued} queued, {deferred} deferred");
    if !domains.is_empty() {
        let top: Vec<String> = domains
            .iter()
            .take(TOP)
            .map(|(d, q, f)| format!("{d} {q} queued {f} deferred"))
            .collect();
        text.push_str(&format!(
            " ({} domains; most: {})",
            domains.len(),
            top.join(", ")
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_names_totals_and_the_largest_domains() {
        let mut s = volley_spool::Summary::default();
        s.add(1, "a.test", volley_spool::State::Queued, 5);
        s.add(1, "b.test", volley_spool::State::Deferred, 7);
        s.add(1, "c.test", volley_spool::State::Delivered, 9);
        let r = remains(&s);
        assert!(
            r.starts_with("remaining in the spool: 5 queued, 7 deferred"),
            "{r}"
        );
        assert!(
            r.contains("2 domains; most: b.test 0 queued 7 deferred, a.test 5 queued 0 deferred"),
            "{r}"
        );
        assert_eq!(
            remains(&volley_spool::Summary::default()),
            "remaining in the spool: 0 queued, 0 deferred"
        );
    }
}
