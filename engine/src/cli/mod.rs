//! Command implementations of the `volley` binary (not part of the library).

pub mod admin_http;
pub mod api;
pub mod control;
pub mod demo;
pub mod drain;
pub mod feedback;
pub mod inbound;
pub mod progress;
pub mod queue;
pub mod queue_top;
pub mod run;
pub mod send;
pub mod sendmail;
pub mod summary;
pub mod suppression;
pub mod user;

use std::path::Path;
use std::sync::Arc;

use volley_engine::config::{Config, EventFormat};
use volley_engine::events::sns::{Signer, Subscriptions};
use volley_engine::events::webhook::SnsState;
use volley_spool::{OpenReport, Spool};

// Exit codes (the README's table). A job that ran to its end says with
// 3, 4 or 5 what is left to look at; one stopped by a signal exits with
// 128 + the signal's number, as a shell reports a process killed by it
// (its summary says what was done), whatever else happened.
pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_BAD_INPUT: u8 = 2;
/// `send`: recipients of the job's campaign are still deferred.
pub const EXIT_DEFERRED: u8 = 3;
/// `send`/`enqueue`: rows of the list were rejected (all else done).
pub const EXIT_REJECTED: u8 = 4;
/// `send`: both 3 and 4.
pub const EXIT_DEFERRED_AND_REJECTED: u8 = 5;

/// The exit code of a batch job that was not stopped by a failure:
/// `interrupted` names the signal that stopped it.
pub fn job_exit_code(interrupted: Option<&str>, deferred: u64, rejected: u64) -> u8 {
    match (interrupted, deferred > 0, rejected > 0) {
        (Some("SIGINT"), ..) => 128 + 2,
        (Some(_), ..) => 128 + 15,
        (None, true, true) => EXIT_DEFERRED_AND_REJECTED,
        (None, true, false) => EXIT_DEFERRED,
        (None, false, true) => EXIT_REJECTED,
        (None, false, false) => EXIT_OK,
    }
}

/// An error with the exit code it maps to.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub error: anyhow::Error,
}

/// Bad input: config, campaign, list, key or usage.
pub fn bad(e: impl Into<anyhow::Error>) -> CliError {
    CliError {
        code: EXIT_BAD_INPUT,
        error: e.into(),
    }
}

/// Any other failure.
pub fn fail(e: impl Into<anyhow::Error>) -> CliError {
    CliError {
        code: EXIT_FAILURE,
        error: e.into(),
    }
}

pub type CliResult = Result<u8, CliError>;

pub fn load_config(path: &Path) -> Result<Arc<Config>, CliError> {
    Config::load(path).map(Arc::new).map_err(bad)
}

/// The SNS signing key and subscriptions, when a webhook or broker uses
/// the `sns` format (made under the spool directory unless `[sns]` names files).
fn sns_state(config: &Config) -> Result<Option<SnsState>, CliError> {
    let wanted = config
        .enabled_destinations()
        .any(|(_, d)| d.jsonl.is_none() && d.format() == EventFormat::Sns);
    if !wanted {
        return Ok(None);
    }
    let dir = config.spool.dir.join("sns");
    let files = config
        .sns
        .signing_key
        .as_deref()
        .zip(config.sns.signing_cert.as_deref());
    let signer =
        Signer::load(files, &dir).map_err(|e| bad(anyhow::anyhow!("sns signing key: {e}")))?;
    Ok(Some(SnsState {
        signer: Arc::new(signer),
        subscriptions: Arc::new(Subscriptions::open(&dir.join("subscriptions"))),
    }))
}

/// Opens the spool and starts an engine on it with the JSONL sink and the
/// configured event destinations.
pub fn start_engine(
    config: &Arc<Config>,
    mut opts: volley_engine::engine::Options,
) -> Result<
    (
        volley_engine::engine::Engine,
        Arc<volley_engine::metrics::Metrics>,
    ),
    CliError,
> {
    let (spool, _) = open_spool(config)?;
    opts.sns = sns_state(config)?;
    let metrics = Arc::new(volley_engine::metrics::Metrics::new());
    metrics.spool_lost.set(spool.summary().totals().lost as i64);
    let rotation = volley_engine::events::sink::Rotation {
        rotate_bytes: config.events.rotate_bytes,
        keep: config.events.keep,
    };
    let sink =
        volley_engine::events::JsonlSink::open_rotating(&config.events.jsonl, "jsonl", rotation)
            .map_err(fail)?;
    let engine = volley_engine::engine::Engine::start(
        Arc::clone(config),
        spool,
        Box::new(sink),
        Arc::clone(&metrics),
        opts,
    )
    .map_err(bad)?;
    Ok((engine, metrics))
}

/// Opens the spool for writing, logging what recovery found.
pub fn open_spool(config: &Config) -> Result<(Arc<Spool>, OpenReport), CliError> {
    let (spool, report) = Spool::open(&config.spool.dir)
        .map_err(|e| fail(anyhow::anyhow!("cannot open the spool: {e}")))?;
    if !report.damage.is_empty() {
        tracing::warn!(
            lost = report.lost(),
            problems = report.damage.len(),
            "the spool had damage (details above)"
        );
    }
    Ok((Arc::new(spool), report))
}
