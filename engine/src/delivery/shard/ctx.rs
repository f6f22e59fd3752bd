//! What every shard and connection shares ([`ShardCtx`]): the config in
//! force, the spool, production, the recorder, the budget of connections,
//! the operators' state (holds, reroutes, endings, drain), egress sources,
//! MTA-STS policies and the site-wide caps. Exposure: none (internal).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use tokio::sync::{mpsc, watch};
use volley_spool::Spool;

use super::super::budget::Budget;
use super::super::holds::Holds;
use super::super::mx::Resolver;
use super::super::produce::Producer;
use super::super::{Report, Stats};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::smtp::TlsSettings;

/// Everything shards and their connections share.
pub struct ShardCtx {
    config: RwLock<Arc<Config>>,
    generation: AtomicU64,
    pub spool: Arc<Spool>,
    pub producer: Producer,
    pub recorder: crossbeam_channel::Sender<Report>,
    pub stats: Arc<Stats>,
    pub metrics: Arc<Metrics>,
    pub tls: TlsSettings,
    pub resolver: Arc<Resolver>,
    pub shutdown: watch::Receiver<bool>,
    /// The global budget of outbound connections.
    pub budget: Arc<Budget>,
    /// One clock for every shard's rate limiter (making one calibrates it).
    pub clock: governor::clock::DefaultClock,
    /// The operators' holds (domains, sites, campaigns).
    pub holds: Arc<Holds>,
    /// The operators' reroutes (domain → next hop).
    pub reroutes: Arc<super::super::reroutes::Reroutes>,
    /// The operators' endings (cancelled campaigns, bounced domains).
    pub endings: Arc<super::super::endings::Endings>,
    /// The service drains: no shard starts an attempt (as if every site
    /// were held) until it ends.
    pub draining: std::sync::atomic::AtomicBool,
    /// The egress sources and pools.
    pub egress: Arc<super::super::egress::Egress>,
    /// MTA-STS policies and TLS reports.
    pub sts: Arc<super::super::sts::Sts>,
    /// The site-wide limits the shards of one site (one per source) share.
    pub site_shares: super::super::site_limits::SiteShares,
    /// The scheduler, for recipients an ending shard gives back (weak:
    /// the scheduler owns this context).
    pub scheduler: mpsc::WeakUnboundedSender<super::super::scheduler::SchedMsg>,
}

impl ShardCtx {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Arc<Config>,
        spool: Arc<Spool>,
        producer: Producer,
        recorder: crossbeam_channel::Sender<Report>,
        stats: Arc<Stats>,
        metrics: Arc<Metrics>,
        tls: TlsSettings,
        resolver: Arc<Resolver>,
        shutdown: watch::Receiver<bool>,
        budget: Arc<Budget>,
        holds: Arc<Holds>,
        reroutes: Arc<super::super::reroutes::Reroutes>,
        endings: Arc<super::super::endings::Endings>,
        egress: Arc<super::super::egress::Egress>,
        sts: Arc<super::super::sts::Sts>,
        scheduler: mpsc::WeakUnboundedSender<super::super::scheduler::SchedMsg>,
    ) -> ShardCtx {
        ShardCtx {
            config: RwLock::new(config),
            generation: AtomicU64::new(0),
            spool,
            producer,
            recorder,
            stats,
            metrics,
            tls,
            resolver,
            shutdown,
            budget,
            clock: governor::clock::DefaultClock::default(),
            holds,
            reroutes,
            endings,
            draining: std::sync::atomic::AtomicBool::new(false),
            egress,
            sts,
            site_shares: Default::default(),
            scheduler,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.config.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Installs a new configuration (a reload).
    pub fn set_config(&self, c: Arc<Config>) {
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = c;
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}
