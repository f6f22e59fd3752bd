//! The event pumps of a config: one for the `[events] jsonl` file (every
//! event) and one per enabled event destination, each on its own thread
//! with its own journal cursor (`dest.SET.NAME`), so that a slow or dead
//! destination holds back neither delivery nor another destination.
//! Cursors of destinations no longer configured (removed or disabled) are
//! released at start, so the journal they held can be retired.
//!
//! In: the config, the spool, the events file's sink. Out: the pumps'
//! wake senders (for the recorder), their positions and threads.
//! Exposure: config only.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use volley_spool::Spool;

use super::JsonlSink;
use super::amqp::AmqpSink;
use super::pump::{self, PumpCtx, Select};
use super::sink::{NotificationSink, Rotation};
use super::webhook::{self, SinkEnv};
use crate::config::destinations::Kind;
use crate::config::{Config, Destination};
use crate::metrics::Metrics;

/// The cursor name of a destination's pump.
pub fn cursor_name(set: &str, destination: &str) -> String {
    format!("dest.{set}.{destination}")
}

/// A destination that cannot start.
#[derive(Debug, thiserror::Error)]
#[error("configuration_sets.{set}: destination {destination:?}: {message}")]
pub struct DestinationError {
    pub set: String,
    pub destination: String,
    pub message: String,
}

/// Running pumps.
pub struct Pumps {
    stop: Arc<AtomicBool>,
    positions: Vec<Arc<AtomicU64>>,
    threads: Vec<JoinHandle<()>>,
}

/// What a pump thread needs besides its sink and selection.
struct Common<'a> {
    spool: &'a Arc<Spool>,
    metrics: &'a Arc<Metrics>,
    config: &'a Config,
    stop: &'a Arc<AtomicBool>,
}

impl Pumps {
    /// Starts the events file's pump and every enabled destination's;
    /// returns the pumps and their wake senders. Fails, starting nothing,
    /// when a destination's sink cannot be made.
    pub fn start(
        config: &Config,
        spool: &Arc<Spool>,
        metrics: &Arc<Metrics>,
        events_file: Box<dyn NotificationSink>,
        env: &SinkEnv,
    ) -> Result<(Pumps, Vec<crossbeam_channel::Sender<()>>), DestinationError> {
        let mut sinks: Vec<(Box<dyn NotificationSink>, Option<Select>, _)> =
            vec![(events_file, None, metrics.events_file())];
        for (set, d) in config.enabled_destinations() {
            let counts = metrics.destination(set, &d.name, d.kind().name());
            let sink = open(set, d, env, &counts).map_err(|message| DestinationError {
                set: set.to_string(),
                destination: d.name.clone(),
                message,
            })?;
            let select = Select {
                set: set.to_string(),
                destination: d.clone(),
            };
            sinks.push((sink, Some(select), counts));
        }
        release_gone(config, spool);
        let stop = Arc::new(AtomicBool::new(false));
        let common = Common {
            spool,
            metrics,
            config,
            stop: &stop,
        };
        let mut pumps = Pumps {
            stop: Arc::clone(&stop),
            positions: Vec::new(),
            threads: Vec::new(),
        };
        let mut wakes = Vec::new();
        for (sink, select, counts) in sinks {
            let (wake, wake_rx) = crossbeam_channel::bounded(1);
            let position = Arc::new(AtomicU64::new(0));
            // a new destination starts from now: outcomes come only after
            // the engine started
            let start_at = match &select {
                Some(s) if !s.destination.replay => spool.journal_end(),
                _ => 0,
            };
            let name = sink.name().to_string();
            let ctx = PumpCtx {
                spool: Arc::clone(common.spool),
                metrics: Arc::clone(common.metrics),
                reporting_mta: common.config.delivery.helo.clone(),
                identity: (&common.config.events).into(),
                stop: Arc::clone(common.stop),
                position: Arc::clone(&position),
                select,
                start_at,
                counts,
            };
            let thread = std::thread::Builder::new()
                .name(format!("pump-{name}"))
                .spawn(move || pump::run(&ctx, sink, &wake_rx))
                .expect("spawning an event pump thread");
            pumps.positions.push(position);
            pumps.threads.push(thread);
            wakes.push(wake);
        }
        Ok((pumps, wakes))
    }

    /// True when every pump has published everything journaled.
    pub fn caught_up(&self, spool: &Spool) -> bool {
        let end = spool.journal_end();
        self.positions
            .iter()
            .all(|p| p.load(Ordering::Acquire) >= end)
    }

    /// How far the `[events] jsonl` file has published (journal position).
    pub fn file_position(&self) -> Option<Arc<AtomicU64>> {
        self.positions.first().cloned()
    }

    /// True when the `[events] jsonl` file has every journaled event.
    pub fn file_caught_up(&self, spool: &Spool) -> bool {
        let end = spool.journal_end();
        self.positions
            .first()
            .is_none_or(|p| p.load(Ordering::Acquire) >= end)
    }

    /// Lets every pump publish what is journaled, then waits for them.
    pub fn finish(self) {
        self.stop.store(true, Ordering::Release);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// The sink of one destination.
fn open(
    set: &str,
    d: &Destination,
    env: &SinkEnv,
    counts: &crate::metrics::DestinationMetrics,
) -> Result<Box<dyn NotificationSink>, String> {
    let name = cursor_name(set, &d.name);
    Ok(match d.kind() {
        Kind::Jsonl(j) => {
            let rotation = Rotation {
                rotate_bytes: j.rotate_bytes,
                keep: j.keep,
            };
            Box::new(JsonlSink::open_rotating(&j.path, &name, rotation).map_err(|e| e.message)?)
        }
        Kind::Webhook(w) => Box::new(webhook::WebhookSink::open(set, &d.name, w, env, counts)?),
        Kind::Amqp(a) => Box::new(AmqpSink::open(set, &d.name, a, env, counts)?),
    })
}

/// Releases the cursors of destinations no longer running (removed from
/// the config or disabled).
fn release_gone(config: &Config, spool: &Spool) {
    let running: Vec<String> = config
        .enabled_destinations()
        .map(|(set, d)| cursor_name(set, &d.name))
        .collect();
    for name in spool.cursor_names() {
        if name.starts_with("dest.") && !running.contains(&name) {
            match spool.remove_cursor(&name) {
                Ok(()) => tracing::info!(
                    cursor = %name,
                    "released the journal cursor of an event destination no longer configured"
                ),
                Err(e) => {
                    tracing::warn!(cursor = %name, error = %e, "cannot release an event destination's cursor")
                }
            }
        }
    }
}
