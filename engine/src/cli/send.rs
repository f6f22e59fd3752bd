//! `volley send` and `volley enqueue`: the campaign batch job.
//!
//! `send` spools the campaign in durable batches while delivering them (and
//! anything else the spool holds), and returns once every recipient is final
//! or waits for a retry, after every outcome is published as an event.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use volley_engine::campaign::{self, LoadedCampaign};
use volley_engine::config::Config;
use volley_engine::delivery::Stats;
use volley_engine::engine::Options;
use volley_engine::ingest::{self, IngestError};
use volley_spool::Spool;

use super::progress::Progress;
use super::{
    CliError, CliResult, EXIT_DEFERRED, EXIT_OK, bad, fail, load_config, open_spool, start_engine,
};

/// What a delivery job did.
pub struct Job {
    pub campaign: String,
    /// Recipients of the campaign in the spool.
    pub spooled: u64,
    pub rejected: u64,
    pub stats: Arc<Stats>,
    pub elapsed: Duration,
    pub deferred_left: u64,
    /// The spool refused part of the list (what it accepted was delivered).
    pub failure: Option<CliError>,
}

fn ingest_error(e: IngestError) -> CliError {
    match e {
        IngestError::List(e) => bad(e),
        IngestError::StoredCampaign { .. } => bad(e),
        IngestError::Spool(e) => fail(anyhow::anyhow!("spool: {e}")),
        e @ IngestError::Append { .. } => fail(e),
    }
}

fn report_rejection(list: &Path, shown: &AtomicU64, r: &ingest::list::Rejection) {
    let n = shown.fetch_add(1, Ordering::Relaxed);
    if n < 100 {
        eprintln!(
            "{}: line {}: rejected: {}",
            list.display(),
            r.line,
            r.reason
        );
    } else if n == 100 {
        eprintln!("{}: more rejected rows (see the summary)", list.display());
    }
}

fn count_deferred(spool: &Spool) -> u64 {
    spool.summary().totals().deferred
}

/// Spools and delivers a campaign with `opts`.
pub async fn deliver(
    config: Arc<Config>,
    loaded: LoadedCampaign,
    opts: Options,
) -> Result<Job, CliError> {
    let from_domain = loaded.def.from_domain().to_string();
    if !config.dkim.iter().any(|k| k.domain == from_domain) {
        tracing::warn!(domain = %from_domain, "no [[dkim]] key for the From domain: messages go out unsigned");
    }
    let (engine, metrics) = start_engine(&config, opts)?;
    let spool = Arc::clone(&engine.spool);
    let (queued, deferred) = engine.resume_spooled();
    if queued + deferred > 0 {
        tracing::info!(queued, deferred, "resuming recipients already in the spool");
    }
    let total = Arc::new(AtomicU64::new(queued + deferred));
    let handle = engine.handle();
    let ingest_spool = Arc::clone(&spool);
    let ingest_total = Arc::clone(&total);
    let list = loaded.recipients.clone();
    let loaded_id = loaded.def.id.clone();
    let mut ingest = tokio::task::spawn_blocking(move || {
        let shown = AtomicU64::new(0);
        let mut domains = ingest::Domains::default();
        ingest::run(
            &ingest_spool,
            &loaded,
            |ids, recs| {
                ingest_total.fetch_add(ids.len() as u64, Ordering::Relaxed);
                metrics.ingested.inc_by(ids.len() as u64);
                handle.enqueue(ingest::works(&mut domains, ids, recs));
            },
            |r| {
                metrics.rejected.inc();
                report_rejection(&list, &shown, r);
            },
        )
    });
    let mut progress = Progress::new();
    let campaign = loaded_id;
    let mut ingest_done = false;
    let (mut spooled, mut rejected) = (0u64, 0u64);
    let mut failure = None;
    loop {
        tokio::select! {
            r = &mut ingest, if !ingest_done => {
                ingest_done = true;
                match r.map_err(|e| fail(anyhow::anyhow!("ingest task failed: {e}")))? {
                    Ok(s) => {
                        if s.already_complete {
                            eprintln!("campaign {} is already spooled ({} recipients); delivering what remains", s.def.id, s.earlier);
                        }
                        spooled = s.accepted + s.earlier;
                        rejected = s.rejected;
                    }
                    Err(IngestError::Append { campaign, accepted, error }) => {
                        // what was accepted is delivered; the job then fails
                        let e = IngestError::Append { campaign, accepted, error };
                        eprintln!("error: {e}");
                        spooled = accepted;
                        failure = Some(ingest_error(e));
                    }
                    Err(e) => {
                        progress.finish();
                        engine.shutdown(Duration::from_secs(30)).await;
                        return Err(ingest_error(e));
                    }
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        progress.update(total.load(Ordering::Relaxed), &engine.stats);
        if !engine.spool.healthy() {
            progress.finish();
            engine.shutdown(Duration::from_secs(30)).await;
            return Err(fail(anyhow::anyhow!(
                "the spool's storage failed (an fdatasync error), so outcomes can no longer be recorded; \
                 restart volley to reopen the spool (nothing acknowledged is lost)"
            )));
        }
        if ingest_done && engine.in_flight() == 0 && engine.events_caught_up() {
            break;
        }
    }
    progress.finish();
    let elapsed = progress.elapsed();
    let stats = Arc::clone(&engine.stats);
    engine.shutdown(Duration::from_secs(30)).await;
    Ok(Job {
        campaign,
        spooled,
        rejected,
        stats,
        elapsed,
        deferred_left: count_deferred(&spool),
        failure,
    })
}

/// Prints the one-line summary of a job.
pub fn print_summary(job: &Job) {
    let s = &job.stats;
    let finals = s.finals();
    let secs = job.elapsed.as_secs_f64().max(0.001);
    let rejected = if job.rejected > 0 {
        format!(", {} rows rejected", job.rejected)
    } else {
        String::new()
    };
    println!(
        "campaign {}: {} recipients spooled{rejected}; delivered {}, bounced {}, render-failed {}, deferred {} in {:.1}s ({:.0} messages/s)",
        job.campaign,
        job.spooled,
        s.delivered.load(Ordering::Relaxed),
        s.bounced.load(Ordering::Relaxed),
        s.failed.load(Ordering::Relaxed),
        job.deferred_left,
        secs,
        finals as f64 / secs,
    );
}

/// `volley send`.
pub async fn send(campaign_path: &Path, config_path: &Path) -> CliResult {
    let config = load_config(config_path)?;
    let loaded = campaign::load(campaign_path).map_err(bad)?;
    let mut job = deliver(config, loaded, Options::default()).await?;
    print_summary(&job);
    if let Some(f) = job.failure.take() {
        return Err(f);
    }
    if job.deferred_left > 0 {
        eprintln!(
            "{} recipients are deferred and stay spooled; `volley run` retries them",
            job.deferred_left
        );
        return Ok(EXIT_DEFERRED);
    }
    Ok(EXIT_OK)
}

/// `volley enqueue`.
pub async fn enqueue(campaign_path: &Path, config_path: &Path) -> CliResult {
    let config = load_config(config_path)?;
    let loaded = campaign::load(campaign_path).map_err(bad)?;
    let (spool, _) = open_spool(&config)?;
    let list = loaded.recipients.clone();
    let summary = tokio::task::spawn_blocking(move || {
        let shown = AtomicU64::new(0);
        ingest::run(
            &spool,
            &loaded,
            |_, _| {},
            |r| report_rejection(&list, &shown, r),
        )
    })
    .await
    .map_err(|e| fail(anyhow::anyhow!("ingest task failed: {e}")))?
    .map_err(ingest_error)?;
    let rejected = if summary.rejected > 0 {
        format!(" ({} rows rejected)", summary.rejected)
    } else {
        String::new()
    };
    if summary.already_complete {
        println!(
            "campaign {} was already spooled: {} recipients",
            summary.def.id, summary.earlier
        );
    } else {
        println!(
            "campaign {}: {} recipients spooled{rejected}",
            summary.def.id,
            summary.accepted + summary.earlier
        );
    }
    Ok(EXIT_OK)
}
