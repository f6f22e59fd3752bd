//! The engine: builds the stages for one spool and config, feeds them, and
//! shuts them down in order. No globals: several engines can run in one
//! process (tests do).
//!
//! Stages and threads: the scheduler and shards (tokio tasks), the
//! production pool (one thread per core), the recorder thread and the event
//! pump threads (one per event destination, see `events::fanout`). Shutdown: stop dispatching, let open transactions finish
//! (bounded by a grace period), journal their outcomes, publish every
//! journaled event, then return. Whatever was not journaled stays queued in
//! the spool and is sent again by the next run (at-least-once). When the
//! spool fails for good (a failed fdatasync) the recorder stops dispatching
//! through the same signal; the engine then waits for `shutdown`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

mod operator;
use operator::hold_metric;
use volley_spool::Spool;

use crate::config::Config;
use crate::delivery::backoff::Backoff;
use crate::delivery::budget::{self, Budget};
use crate::delivery::endings::Endings;
use crate::delivery::holds::{Hold, Holds};
use crate::delivery::mx::Resolver;
use crate::delivery::produce::{ProduceCtx, Producer};
use crate::delivery::recorder::{self, RecorderCtx};
use crate::delivery::reroutes::Reroutes;
use crate::delivery::scheduler::{self, SchedMsg};
use crate::delivery::shard::ShardCtx;
use crate::delivery::{Stats, Work};
use crate::events::NotificationSink;
use crate::events::fanout::{DestinationError, Pumps};
use crate::events::webhook::{SinkEnv, SnsState};
use crate::feedback::suppression::SuppressionList;
use crate::ingest::Domains;
use crate::message::dkim::{KeyError, Signers};
use crate::metrics::Metrics;
use crate::smtp::TlsSettings;

/// The size of the global connection budget: `[delivery] max_connections`,
/// or derived from the open-file limit when that is 0.
fn connection_budget(config: &Config) -> usize {
    let nofile = budget::nofile_limit();
    let size = match config.delivery.max_connections {
        0 => budget::auto_size(nofile),
        n => n as usize,
    };
    tracing::info!(
        connections = size,
        open_file_limit = nofile,
        "outbound connection budget"
    );
    size
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Destination(#[from] DestinationError),
    #[error("[feedback]: {0}")]
    Feedback(String),
    #[error("{0}")]
    Holds(#[from] crate::delivery::holds::HoldsError),
}

/// Options that are not in the config file.
#[derive(Clone)]
pub struct Options {
    pub threads: usize,
    pub tls: TlsSettings,
    /// The SNS signing key and subscriptions, needed by `sns` webhooks.
    pub sns: Option<SnsState>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            tls: TlsSettings::opportunistic(),
            sns: None,
        }
    }
}

/// Feeds recipients to a running engine (cloneable, usable from any thread).
#[derive(Clone)]
pub struct Handle {
    sched: mpsc::UnboundedSender<SchedMsg>,
    stats: Arc<Stats>,
    recorder: crossbeam_channel::Sender<crate::delivery::Report>,
    suppression: Arc<SuppressionList>,
    holds: Arc<Holds>,
    reroutes: Arc<Reroutes>,
    endings: Arc<Endings>,
    egress: Arc<crate::delivery::egress::Egress>,
    spool: Arc<volley_spool::Spool>,
    metrics: Arc<Metrics>,
}

impl Handle {
    /// Hands durable recipient records to delivery, except those on the
    /// suppression list (for `topic`, when their mail belongs to one):
    /// they get their outcome (a permanent bounce) without an attempt.
    pub fn enqueue_records(
        &self,
        domains: &mut crate::ingest::Domains,
        ids: &[volley_spool::RecipientId],
        recs: &[volley_spool::Recipient],
        topic: Option<&str>,
    ) {
        let listed = crate::ingest::suppressed(&self.suppression, recs, topic);
        if listed.is_empty() {
            self.enqueue(crate::ingest::works(domains, ids, recs));
            return;
        }
        let mut works = Vec::with_capacity(ids.len() - listed.len());
        let mut dropped = Vec::with_capacity(listed.len());
        let mut next = listed.iter().peekable();
        for (i, w) in crate::ingest::works(domains, ids, recs)
            .into_iter()
            .enumerate()
        {
            if next.next_if(|&&j| j == i).is_some() {
                dropped.push(w);
            } else {
                works.push(w);
            }
        }
        self.suppressed(dropped);
        self.enqueue(works);
    }

    /// Gives recipients on the suppression list their outcome.
    fn suppressed(&self, works: Vec<Work>) {
        self.stats
            .active
            .fetch_add(works.len() as i64, Ordering::AcqRel);
        for work in works {
            let _ = self.recorder.send(crate::delivery::Report::untried(
                work,
                crate::delivery::produce::suppressed_outcome(),
                String::new(),
                None,
            ));
        }
    }

    /// Hands recipients to delivery.
    pub fn enqueue(&self, works: Vec<Work>) {
        if works.is_empty() {
            return;
        }
        self.stats
            .active
            .fetch_add(works.len() as i64, Ordering::AcqRel);
        let _ = self.sched.send(SchedMsg::Work(works));
    }
}

/// A running engine.
pub struct Engine {
    pub spool: Arc<Spool>,
    pub stats: Arc<Stats>,
    pub metrics: Arc<Metrics>,
    /// The SNS signing key and subscriptions (`sns` webhooks), for the
    /// HTTP listener's SNS endpoints.
    pub sns: Option<SnsState>,
    /// The account's suppression list (`<spool>/suppression`).
    pub suppression: Arc<SuppressionList>,
    /// Return paths and unsubscribe links, when `[feedback]` is on.
    pub marks: Option<Arc<crate::feedback::marks::Marks>>,
    sched: mpsc::UnboundedSender<SchedMsg>,
    recorder_tx: crossbeam_channel::Sender<crate::delivery::Report>,
    shards: Arc<ShardCtx>,
    shutdown: watch::Sender<bool>,
    recorder_stop: Arc<AtomicBool>,
    recorder: Option<std::thread::JoinHandle<()>>,
    pumps: Option<Pumps>,
}

impl Engine {
    /// Starts every stage. Must be called inside a tokio runtime.
    pub fn start(
        config: Arc<Config>,
        spool: Arc<Spool>,
        sink: Box<dyn NotificationSink>,
        metrics: Arc<Metrics>,
        opts: Options,
    ) -> Result<Engine, StartError> {
        let signers = Arc::new(Signers::load(&config.dkim)?);
        let suppression = Arc::new(
            SuppressionList::open(&spool.dir().join("suppression"))
                .map_err(|e| StartError::Feedback(format!("suppression list: {e}")))?,
        );
        metrics.feedback.watch_list(Arc::clone(&suppression));
        let marks = crate::feedback::marks::Marks::from_config(&config.feedback, spool.uid())
            .map_err(StartError::Feedback)?
            .map(Arc::new);
        if marks.is_some() {
            spool.keep_ledger(config.feedback.attribution_window);
        }
        let env = SinkEnv {
            runtime: tokio::runtime::Handle::current(),
            spool_uid: spool.uid(),
            sns: opts.sns.clone(),
            public_url: config.sns_public_url(),
            account_id: config.events.account_id.clone(),
            region: config.sns.region.clone(),
        };
        let (pumps, wake_pumps) = Pumps::start(&config, &spool, &metrics, sink, &env)?;
        let stats = Arc::new(Stats::default());
        let holds = Arc::new(Holds::open(spool.dir())?);
        for (kind, name) in holds.get().iter() {
            let h = match kind {
                "domain" => Hold::Domain(name.into()),
                "site" => Hold::Site(name.into()),
                _ => Hold::Campaign(name.into()),
            };
            hold_metric(&metrics, &h, true);
        }
        let endings = Arc::new(Endings::open(spool.dir())?);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (sched_tx, sched_rx) = mpsc::unbounded_channel();
        let (rec_tx, rec_rx) = crossbeam_channel::unbounded();
        let recorder_stop = Arc::new(AtomicBool::new(false));

        let (producer, _threads) = Producer::start(
            opts.threads,
            Arc::new(ProduceCtx {
                spool: Arc::clone(&spool),
                signers,
                marks: marks.clone(),
                suppression: Some(Arc::clone(&suppression)),
                endings: Arc::clone(&endings),
                recorder: rec_tx.clone(),
            }),
        );
        let rctx = RecorderCtx {
            spool: Arc::clone(&spool),
            backoff: Backoff::from(&config.default_policy()),
            scheduler: sched_tx.clone(),
            stats: Arc::clone(&stats),
            metrics: Arc::clone(&metrics),
            wake_pumps,
            stop: Arc::clone(&recorder_stop),
            halt: shutdown.clone(),
        };
        let recorder = std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || recorder::run(&rctx, &rec_rx))
            .expect("spawning the recorder thread");
        let nameservers: Vec<std::net::SocketAddr> = config
            .dns
            .nameservers
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect();
        let sctx = Arc::new(ShardCtx::new(
            Arc::clone(&config),
            Arc::clone(&spool),
            producer,
            rec_tx.clone(),
            Arc::clone(&stats),
            Arc::clone(&metrics),
            opts.tls,
            Arc::new(Resolver::new(
                &nameservers,
                config.dns.allow_internal,
                config.dns.timeout,
            )),
            shutdown_rx.clone(),
            Arc::new(Budget::new(connection_budget(&config))),
            Arc::clone(&holds),
            Arc::new(Reroutes::open(spool.dir())?),
            endings,
            Arc::new(crate::delivery::egress::Egress::new(
                &config.egress,
                &config.delivery.helo,
                Arc::clone(&metrics),
                crate::delivery::warmup::Warmup::open(
                    spool.dir(),
                    crate::delivery::egress::plans(&config.egress),
                )?,
            )),
            Arc::new(crate::delivery::sts::Sts::open(
                spool.dir(),
                &config.mta_sts,
                &config.delivery.helo,
            )),
            sched_tx.downgrade(),
        ));
        // TLS reports are written every few seconds (those that changed)
        // and at shutdown
        let (sts, mut stop) = (Arc::clone(&sctx.sts), shutdown_rx.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                let sts = Arc::clone(&sts);
                let _ = tokio::task::spawn_blocking(move || sts.reports.flush()).await;
            }
        });
        tokio::spawn(scheduler::run(
            Arc::clone(&sctx),
            sched_tx.clone(),
            sched_rx,
            shutdown_rx,
        ));
        Ok(Engine {
            spool,
            stats,
            metrics,
            sns: opts.sns,
            suppression,
            marks,
            sched: sched_tx,
            recorder_tx: rec_tx,
            shards: sctx,
            shutdown,
            recorder_stop,
            recorder: Some(recorder),
            pumps: Some(pumps),
        })
    }

    /// Hands recipients to delivery.
    pub fn enqueue(&self, works: Vec<Work>) {
        self.handle().enqueue(works);
    }

    /// A cloneable handle for feeding recipients from other threads.
    pub fn handle(&self) -> Handle {
        Handle {
            sched: self.sched.clone(),
            stats: Arc::clone(&self.stats),
            recorder: self.recorder_tx.clone(),
            suppression: Arc::clone(&self.suppression),
            holds: Arc::clone(&self.shards.holds),
            reroutes: Arc::clone(&self.shards.reroutes),
            endings: Arc::clone(&self.shards.endings),
            egress: Arc::clone(&self.shards.egress),
            spool: Arc::clone(&self.spool),
            metrics: Arc::clone(&self.metrics),
        }
    }

    /// Queues everything the spool held that was not final when it was
    /// opened: queued recipients now (compactly, by domain), deferred ones
    /// at their retry time. Returns (queued, deferred).
    pub fn resume_spooled(&self) -> (u64, u64) {
        let pending = self.spool.take_pending();
        let mut queued = 0u64;
        for (domain, ids) in pending.queued {
            queued += ids.len() as u64;
            self.stats
                .active
                .fetch_add(ids.len() as i64, Ordering::AcqRel);
            let _ = self
                .sched
                .send(SchedMsg::Bulk(Arc::from(domain.as_str()), ids));
        }
        let deferred = pending.deferred.len() as u64;
        let mut domains = Domains::default();
        for (id, domain, retry) in pending.deferred {
            let work = Work {
                id,
                domain: domains.get(&domain),
                attempts: retry.attempts,
            };
            self.stats.waiting.fetch_add(1, Ordering::AcqRel);
            let _ = self.sched.send(SchedMsg::Retry(work, retry.next_ms));
        }
        (queued, deferred)
    }

    /// Installs a new configuration (SIGHUP): delivery policies, routes,
    /// timeouts and throttle patterns apply from now on; queued and
    /// in-flight mail is kept. The spool, listeners, DKIM keys and event
    /// sink stay as they were started.
    pub fn reload(&self, config: Arc<Config>) {
        self.shards.set_config(config);
        let _ = self.sched.send(SchedMsg::Reload);
    }

    /// Recipients handed to delivery whose outcome is not yet journaled.
    pub fn in_flight(&self) -> i64 {
        self.stats.active.load(Ordering::Acquire)
    }

    /// True when the `[events] jsonl` file has every journaled outcome's
    /// events (event destinations may still be behind).
    pub fn events_file_caught_up(&self) -> bool {
        self.pumps
            .as_ref()
            .is_none_or(|p| p.file_caught_up(&self.spool))
    }

    /// The journal position the `[events] jsonl` file has published to
    /// (shared; `None` without pumps).
    pub fn events_file_position(&self) -> Option<Arc<std::sync::atomic::AtomicU64>> {
        self.pumps.as_ref().and_then(|p| p.file_position())
    }

    /// True when every journaled outcome has been published as events to
    /// the events file and every event destination.
    pub fn events_caught_up(&self) -> bool {
        self.pumps.as_ref().is_none_or(|p| p.caught_up(&self.spool))
    }

    /// Stops delivery and drains the recorder and the event pump. Open
    /// transactions get up to `grace` to finish.
    pub async fn shutdown(mut self, grace: Duration) {
        let _ = self.shutdown.send(true);
        let deadline = tokio::time::Instant::now() + grace;
        while self.stats.connection_tasks.load(Ordering::Acquire) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::debug!(
            connections_left = self.stats.connection_tasks.load(Ordering::Acquire),
            "connections closed; draining the recorder and the event pump"
        );
        // The recorder journals what it was given, then stops; the pump
        // publishes everything journaled, then stops.
        self.recorder_stop.store(true, Ordering::Release);
        let recorder = self.recorder.take();
        let pumps = self.pumps.take();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(r) = recorder {
                let _ = r.join();
            }
            if let Some(p) = pumps {
                p.finish();
            }
        })
        .await;
        tracing::debug!("recorder and event pump stopped");
        self.shards.sts.reports.flush();
        // a clean stop leaves a checkpoint, so the next start replays
        // nothing (a failed spool refuses it: reopening replays instead)
        if self.spool.healthy()
            && let Err(e) = self.spool.checkpoint()
        {
            tracing::warn!(error = %e, "cannot write a checkpoint at shutdown");
        }
    }
}
