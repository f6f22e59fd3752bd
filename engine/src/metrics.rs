//! Prometheus metrics: one registry per engine (no globals), exposed as text
//! on `GET /metrics`.
//!
//! Counters and gauges are updated by the stages as they work; queue gauges
//! are refreshed from [`Stats`] when scraped. Exposure: none (output only).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::delivery::Stats;
use crate::outcome::Outcome;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

/// Every metric the engine exports.
pub struct Metrics {
    registry: Registry,
    pub outcomes: Family<OutcomeLabels, Counter>,
    pub attempts: Counter,
    pub connections: Gauge,
    pub journal_errors: Counter,
    pub events_published: Counter,
    pub event_errors: Counter,
    pub spool_lost: Gauge,
    pub ingested: Counter,
    pub rejected: Counter,
    active: Gauge,
    deferred_waiting: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("volley");
        let m = Metrics {
            outcomes: Family::default(),
            attempts: Counter::default(),
            connections: Gauge::default(),
            journal_errors: Counter::default(),
            events_published: Counter::default(),
            event_errors: Counter::default(),
            spool_lost: Gauge::default(),
            ingested: Counter::default(),
            rejected: Counter::default(),
            active: Gauge::default(),
            deferred_waiting: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "outcomes",
            "Recipient outcomes journaled, by outcome",
            m.outcomes.clone(),
        );
        registry.register(
            "smtp_attempts",
            "Mail transactions attempted",
            m.attempts.clone(),
        );
        registry.register(
            "smtp_connections",
            "Open SMTP connections",
            m.connections.clone(),
        );
        registry.register(
            "journal_errors",
            "Failed attempts to journal outcomes",
            m.journal_errors.clone(),
        );
        registry.register(
            "events_published",
            "Events written to notification sinks",
            m.events_published.clone(),
        );
        registry.register(
            "event_errors",
            "Journal entries that could not become events",
            m.event_errors.clone(),
        );
        registry.register(
            "spool_lost_recipients",
            "Recipients lost to spool damage (found at open, all time)",
            m.spool_lost.clone(),
        );
        registry.register(
            "ingested_recipients",
            "Recipients accepted into the spool",
            m.ingested.clone(),
        );
        registry.register(
            "rejected_recipients",
            "Recipient rows rejected at ingest",
            m.rejected.clone(),
        );
        registry.register(
            "in_flight",
            "Recipients being delivered (outcome not yet journaled)",
            m.active.clone(),
        );
        registry.register(
            "deferred_waiting",
            "Deferred recipients waiting for their retry time",
            m.deferred_waiting.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Counts one journaled outcome.
    pub fn observe(&self, _domain: &str, outcome: &Outcome) {
        let name = match outcome {
            Outcome::Delivered { .. } => "delivered",
            Outcome::Deferred { .. } => "deferred",
            Outcome::Bounced { .. } => "bounced",
            Outcome::RenderFailed { .. } => "render_failed",
        };
        self.outcomes
            .get_or_create(&OutcomeLabels { outcome: name })
            .inc();
    }

    /// Prometheus text exposition, with queue gauges refreshed from `stats`.
    pub fn render(&self, stats: &Stats) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        self.active.set(stats.active.load(Relaxed));
        self.deferred_waiting.set(stats.waiting.load(Relaxed));
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
