//! `volley send` and `volley enqueue`: the campaign batch job.
//!
//! `send` spools the campaign in durable batches while delivering them (and
//! anything else the spool holds), and returns once every recipient is final
//! or waits for a retry, after every outcome is published as an event.
//! SIGINT and SIGTERM stop it as they stop `volley run`: the list is read no
//! further (what was read is made durable), open transactions finish and
//! are journaled, their events are published; then it prints the summary
//! and how to resume. The summary and the exit code are about the job's own
//! campaign (its counts in the spool); what the spool held of other
//! campaigns is reported apart. Exit codes: see `super::job_exit_code`.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use volley_engine::campaign::{self, LoadedCampaign};
use volley_engine::config::Config;
use volley_engine::engine::{Engine, Options};
use volley_engine::ingest::{self, IngestError, Skipped};
use volley_engine::metrics::Metrics;
use volley_spool::Counts;

use super::progress::Progress;
use super::run::Stop;
pub use super::summary::{Job, print_summary};
use super::summary::{Others, SkipReport, not_spooled};
use super::{CliError, CliResult, bad, fail, job_exit_code, load_config, open_spool, start_engine};

/// How long open transactions get to finish when the job stops.
const GRACE: Duration = Duration::from_secs(30);
/// How long a finished job waits for event destinations to take the
/// last events (the `[events] jsonl` file always has them all).
const DESTINATIONS_WAIT: Duration = Duration::from_secs(10);

fn ingest_error(e: IngestError) -> CliError {
    match e {
        IngestError::List(e) => bad(e),
        IngestError::StoredCampaign { .. } => bad(e),
        IngestError::Spool(e) => fail(anyhow::anyhow!("spool: {e}")),
        e @ (IngestError::Append { .. } | IngestError::Thread(_)) => fail(e),
    }
}

/// Starts spooling the campaign's list; each durable batch is handed to
/// delivery. `halt` stops it.
fn spawn_ingest(
    engine: &Engine,
    metrics: Arc<Metrics>,
    loaded: LoadedCampaign,
    total: Arc<AtomicU64>,
    halt: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Result<ingest::Summary, IngestError>> {
    let handle = engine.handle();
    let spool = Arc::clone(&engine.spool);
    tokio::task::spawn_blocking(move || {
        let mut report = SkipReport::new(&loaded.recipients);
        let topic = loaded
            .def
            .list_management
            .as_ref()
            .and_then(|l| l.topic.clone());
        let mut domains = ingest::Domains::default();
        let opts = ingest::Options {
            stop: Some(&halt),
            ..Default::default()
        };
        ingest::run(
            &spool,
            &loaded,
            opts,
            |ids, recs| {
                total.fetch_add(ids.len() as u64, Ordering::Relaxed);
                metrics.ingested.inc_by(ids.len() as u64);
                handle.enqueue_records(&mut domains, ids, recs, topic.as_deref());
            },
            |s| {
                if let Skipped::Rejected(_) = s {
                    metrics.rejected.inc();
                }
                report.report(s);
            },
        )
    })
}

/// What the job learned from its ingest.
#[derive(Default)]
struct Ingested {
    rejected: u64,
    duplicates: u64,
    unfinished: bool,
    /// The spool refused part of the list.
    failure: Option<CliError>,
}

impl Ingested {
    /// Takes the ingest's result; an error that ends the job is returned.
    fn take(
        &mut self,
        r: Result<Result<ingest::Summary, IngestError>, tokio::task::JoinError>,
    ) -> Result<(), CliError> {
        match r.map_err(|e| fail(anyhow::anyhow!("ingest task failed: {e}")))? {
            Ok(s) => {
                if s.already_complete {
                    eprintln!(
                        "campaign {} is already spooled ({} recipients); delivering what remains",
                        s.def.id, s.earlier
                    );
                }
                self.rejected = s.rejected;
                self.duplicates = s.duplicates;
                self.unfinished = s.interrupted;
                Ok(())
            }
            Err(e @ IngestError::Append { .. }) => {
                // what was accepted is delivered; the job then fails
                eprintln!("error: {e}");
                self.unfinished = true;
                self.failure = Some(ingest_error(e));
                Ok(())
            }
            Err(e) => Err(ingest_error(e)),
        }
    }
}

/// The first SIGINT/SIGTERM, if signals are caught; never otherwise.
async fn signalled(stop: &mut Option<&mut Stop>) -> &'static str {
    match stop {
        Some(s) => s.wait().await,
        None => std::future::pending().await,
    }
}

/// Spools and delivers a campaign with `opts`.
pub async fn deliver(
    config: Arc<Config>,
    loaded: LoadedCampaign,
    opts: Options,
) -> Result<Job, CliError> {
    deliver_until(config, loaded, opts, None).await
}

/// Spools and delivers a campaign with `opts`, until done or `stop` (when
/// given) catches a signal.
async fn deliver_until(
    config: Arc<Config>,
    loaded: LoadedCampaign,
    opts: Options,
    mut stop: Option<&mut Stop>,
) -> Result<Job, CliError> {
    let from_domain = loaded.def.from_domain().to_string();
    if !config.dkim.iter().any(|k| k.domain == from_domain) {
        tracing::warn!(domain = %from_domain, "no [[dkim]] key for the From domain: messages go out unsigned");
    }
    let (engine, metrics) = start_engine(&config, opts)?;
    // a job working alone serves other jobs' campaigns too (see `control`)
    let (control_stop, control_stop_rx) = tokio::sync::watch::channel(false);
    let control = Arc::new(super::control::ControlCtx {
        drain: None,
        draining: Arc::default(),
        config: Arc::clone(&config),
        spool: Arc::clone(&engine.spool),
        handle: engine.handle(),
        events_file: engine.events_file_position(),
        clients: Arc::default(),
        suppression: Arc::clone(&engine.suppression),
    });
    if stop.is_some()
        && let Err(e) = super::control::serve(Arc::clone(&control), control_stop_rx)
    {
        tracing::debug!(error = %e, "no control socket for other jobs");
    }
    let spool = Arc::clone(&engine.spool);
    // a job working alone takes its feedback (bounces, unsubscribes) too
    let inbound = match stop.is_some() {
        true => Some(super::inbound::start(&config, &engine).await?),
        false => None,
    };
    let feedback = inbound.as_ref().and_then(|i| i.handler.clone());
    // `sns` webhooks need the SNS links (certificate, confirmation) served,
    // one-click unsubscribe its pages
    let (http_stop, http_stop_rx) = tokio::sync::watch::channel(false);
    if engine.sns.is_some() || feedback.is_some() {
        let service = volley_engine::http::Service {
            metrics: Arc::clone(&metrics),
            stats: Arc::clone(&engine.stats),
            spool: Arc::clone(&spool),
            sns: engine.sns.clone(),
            feedback,
            more: None,
        };
        let listen = config
            .http
            .listen
            .parse()
            .map_err(|e| bad(anyhow::anyhow!("http.listen: {e}")))?;
        volley_engine::http::serve(listen, service, http_stop_rx)
            .await
            .map_err(|e| {
                fail(anyhow::anyhow!(
                    "cannot listen on {listen} (http.listen; sns webhooks and unsubscribe links need it): {e}"
                ))
            })?;
    }
    let before = spool.summary();
    let (queued, deferred) = engine.resume_spooled();
    if queued + deferred > 0 {
        tracing::info!(queued, deferred, "resuming recipients already in the spool");
    }
    let campaign = loaded.def.id.clone();
    let total = Arc::new(AtomicU64::new(queued + deferred));
    let halt = Arc::new(AtomicBool::new(false));
    let mut ingest = spawn_ingest(
        &engine,
        metrics,
        loaded,
        Arc::clone(&total),
        Arc::clone(&halt),
    );
    let mut progress = Progress::new();
    let mut ingested = Ingested::default();
    let mut ingest_done = false;
    let mut interrupted = None;
    let mut ended = Ok(());
    let mut finished = None;
    loop {
        tokio::select! {
            r = &mut ingest, if !ingest_done => {
                ingest_done = true;
                ended = ingested.take(r);
            }
            sig = signalled(&mut stop) => {
                interrupted = Some(sig);
                break;
            }
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        progress.update(total.load(Ordering::Relaxed), &engine.stats);
        if !engine.spool.healthy() {
            ended = Err(fail(anyhow::anyhow!(
                "the spool's storage failed (an fdatasync error), so outcomes can no longer be recorded; \
                 restart volley to reopen the spool (nothing acknowledged is lost)"
            )));
        }
        if ended.is_err() {
            break;
        }
        if ingest_done && engine.in_flight() == 0 && engine.events_file_caught_up() {
            // event destinations get a while to catch up; what they have
            // not taken then is published from their cursors next time
            let since = *finished.get_or_insert_with(std::time::Instant::now);
            if engine.events_caught_up() {
                break;
            }
            if since.elapsed() >= DESTINATIONS_WAIT {
                tracing::warn!(
                    "event destinations are still behind; they go on from their cursors at the next start (volley run or send)"
                );
                break;
            }
        }
    }
    progress.finish();
    // other jobs handed their campaigns here: no new ones (they find no
    // socket, and this job's lock), and those connected finish first
    // (unless a signal stops this one)
    let _ = control_stop.send(true);
    if interrupted.is_none() && ended.is_ok() {
        let mut waiting = false;
        while control.clients.load(Ordering::Acquire) > 0 {
            if !waiting {
                eprintln!("waiting for the campaign jobs handed to this one to finish");
                waiting = true;
            }
            tokio::select! {
                sig = signalled(&mut stop) => {
                    interrupted = Some(sig);
                    break;
                }
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }
    if let Some(sig) = interrupted {
        tracing::info!(
            signal = sig,
            "stopping: reading no more of the list; finishing open transactions"
        );
        halt.store(true, Ordering::Release);
        if !ingest_done {
            ended = ingested.take(ingest.await);
        }
    }
    let elapsed = progress.elapsed();
    if let Some(i) = inbound {
        i.stop().await;
    }
    engine.shutdown(GRACE).await;
    let _ = http_stop.send(true);
    ended?;
    let after = spool.summary();
    let no = spool.campaign_by_id(&campaign).map(|c| c.no);
    let counts_of = |s: &volley_spool::Summary| {
        no.and_then(|n| s.campaigns.get(&n))
            .map(|c| c.counts)
            .unwrap_or_default()
    };
    let (c_before, counts) = (counts_of(&before), counts_of(&after));
    let finals = |c: &Counts| c.delivered + c.bounced + c.failed;
    Ok(Job {
        campaign,
        counts,
        finals: finals(&counts).saturating_sub(finals(&c_before)),
        rejected: ingested.rejected,
        duplicates: ingested.duplicates,
        others: Others::between(&before, &after, no.unwrap_or(u32::MAX)),
        elapsed,
        interrupted,
        list_unfinished: ingested.unfinished,
        failure: ingested.failure,
    })
}

/// `volley send`.
pub async fn send(campaign_path: &Path, config_path: &Path) -> CliResult {
    let mut stop = Stop::catch().map_err(fail)?;
    let config = load_config(config_path)?;
    let loaded = campaign::load(campaign_path)
        .and_then(|l| l.with_configuration_set(&config))
        .map_err(bad)?;
    if let Some(service) = super::control::connect(&config).await {
        return super::control::remote(service, campaign_path, true, &mut stop).await;
    }
    let mut job = deliver_until(config, loaded, Options::default(), Some(&mut stop)).await?;
    print_summary(&job);
    if let Some(f) = job.failure.take() {
        return Err(f);
    }
    let pending = job.counts.pending();
    if let Some(sig) = job.interrupted {
        let list = if job.list_unfinished {
            "; the list was spooled only in part"
        } else {
            ""
        };
        eprintln!(
            "stopped by {sig}: {pending} recipients of campaign {} are not final and stay spooled{list}; \
             `volley send {}` again resumes (after the last spooled row), or `volley run` delivers them",
            job.campaign,
            campaign_path.display()
        );
    } else if job.counts.deferred > 0 {
        eprintln!(
            "{} recipients are deferred and stay spooled; `volley run` retries them",
            job.counts.deferred
        );
    }
    Ok(job_exit_code(
        job.interrupted,
        job.counts.deferred,
        job.rejected,
    ))
}

/// `volley enqueue`.
pub async fn enqueue(campaign_path: &Path, config_path: &Path) -> CliResult {
    let mut stop = Stop::catch().map_err(fail)?;
    let config = load_config(config_path)?;
    let loaded = campaign::load(campaign_path)
        .and_then(|l| l.with_configuration_set(&config))
        .map_err(bad)?;
    if let Some(service) = super::control::connect(&config).await {
        return super::control::remote(service, campaign_path, false, &mut stop).await;
    }
    let (spool, _) = open_spool(&config)?;
    let halt = Arc::new(AtomicBool::new(false));
    let stop_ingest = Arc::clone(&halt);
    let mut task = tokio::task::spawn_blocking(move || {
        let mut report = SkipReport::new(&loaded.recipients);
        let opts = ingest::Options {
            stop: Some(&stop_ingest),
            ..Default::default()
        };
        ingest::run(&spool, &loaded, opts, |_, _| {}, |s| report.report(s))
    });
    let (result, signal) = tokio::select! {
        r = &mut task => (r, None),
        sig = stop.wait() => {
            halt.store(true, Ordering::Release);
            (task.await, Some(sig))
        }
    };
    let summary = result
        .map_err(|e| fail(anyhow::anyhow!("ingest task failed: {e}")))?
        .map_err(ingest_error)?;
    let skipped = not_spooled(summary.rejected, summary.duplicates);
    let id = &summary.def.id;
    let spooled = summary.accepted + summary.earlier;
    if summary.already_complete {
        println!("campaign {id} was already spooled: {spooled} recipients");
    } else if summary.interrupted {
        println!(
            "campaign {id} (stopped by {}): {spooled} recipients spooled{skipped}; the list was spooled only in part",
            signal.unwrap_or("a signal")
        );
        eprintln!(
            "`volley enqueue {}` (or `send`) again resumes after the last spooled row",
            campaign_path.display()
        );
    } else {
        println!("campaign {id}: {spooled} recipients spooled{skipped}");
    }
    let interrupted = signal.filter(|_| summary.interrupted);
    Ok(job_exit_code(interrupted, 0, summary.rejected))
}
