//! Prometheus metrics: one registry per engine (no globals), exposed as text
//! on `GET /metrics`.
//!
//! Counters and gauges are updated by the stages as they work; queue gauges
//! are refreshed from [`Stats`] when scraped. Per-site families carry a
//! `site` label (the site key: `host:port` for a route, `mx:<hosts>` for an
//! MX site, see `delivery::site`); [`SiteMetrics`] holds one site's handles so
//! the hot path does not look labels up. Exposure: none (output only).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::delivery::Stats;
use crate::outcome::Outcome;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `applied` or `invalid`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SiteLabels {
    pub site: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SiteOutcomeLabels {
    pub site: String,
    pub outcome: &'static str,
}

/// One site's metric handles.
#[derive(Clone, Default)]
pub struct SiteMetrics {
    pub attempts: Counter,
    pub connections: Gauge,
    pub queued: Gauge,
    pub rate: Gauge<f64, AtomicU64>,
    pub connection_limit: Gauge,
    /// Journaled outcomes of the site (no label lookup per recipient).
    delivered: Counter,
    deferred: Counter,
    bounced: Counter,
}

/// Every metric the engine exports.
pub struct Metrics {
    registry: Registry,
    pub outcomes: Family<OutcomeLabels, Counter>,
    site_outcomes: Family<SiteOutcomeLabels, Counter>,
    site_attempts: Family<SiteLabels, Counter>,
    site_connections: Family<SiteLabels, Gauge>,
    site_queued: Family<SiteLabels, Gauge>,
    site_rate: Family<SiteLabels, Gauge<f64, AtomicU64>>,
    site_connection_limit: Family<SiteLabels, Gauge>,
    /// Seconds from acceptance into the spool to delivery.
    pub delivery_latency: Histogram,
    /// Seconds one SMTP transaction took.
    pub transaction_latency: Histogram,
    pub attempts: Counter,
    pub connections: Gauge,
    pub journal_errors: Counter,
    pub events_published: Counter,
    pub event_errors: Counter,
    /// Journal entries the event sink has not published yet.
    pub event_sink_lag_entries: Gauge,
    /// How long the oldest unpublished outcome has waited (0 when caught up).
    pub event_sink_lag_seconds: Gauge<f64, AtomicU64>,
    pub spool_lost: Gauge,
    pub ingested: Counter,
    pub rejected: Counter,
    /// SIGHUP reloads, by result (`applied`, `invalid`).
    pub reloads: Family<ReloadLabels, Counter>,
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
            site_outcomes: Family::default(),
            site_attempts: Family::default(),
            site_connections: Family::default(),
            site_queued: Family::default(),
            site_rate: Family::default(),
            site_connection_limit: Family::default(),
            // 0.05 s .. ~3.4 days
            delivery_latency: Histogram::new(exponential_buckets(0.05, 3.0, 16)),
            // 1 ms .. ~2 min
            transaction_latency: Histogram::new(exponential_buckets(0.001, 2.0, 18)),
            attempts: Counter::default(),
            connections: Gauge::default(),
            journal_errors: Counter::default(),
            events_published: Counter::default(),
            event_errors: Counter::default(),
            event_sink_lag_entries: Gauge::default(),
            event_sink_lag_seconds: Gauge::default(),
            spool_lost: Gauge::default(),
            ingested: Counter::default(),
            rejected: Counter::default(),
            reloads: Family::default(),
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
            "event_sink_lag_entries",
            "Journal entries not yet published to the event sink",
            m.event_sink_lag_entries.clone(),
        );
        registry.register(
            "event_sink_lag_seconds",
            "How long the oldest outcome not yet published to the event sink has waited (0 when caught up)",
            m.event_sink_lag_seconds.clone(),
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
            "config_reloads",
            "Configuration reloads on SIGHUP, by result (applied, invalid: the old one stays)",
            m.reloads.clone(),
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
        registry.register(
            "site_outcomes",
            "Recipient outcomes journaled, by site and outcome",
            m.site_outcomes.clone(),
        );
        registry.register(
            "site_attempts",
            "Mail transactions attempted, by site",
            m.site_attempts.clone(),
        );
        registry.register(
            "site_connections",
            "Open SMTP connections, by site",
            m.site_connections.clone(),
        );
        registry.register(
            "site_queued",
            "Recipients waiting in a site's queue",
            m.site_queued.clone(),
        );
        registry.register(
            "site_rate_limit",
            "Current effective rate limit of a site (messages per second; lowered while the site throttles)",
            m.site_rate.clone(),
        );
        registry.register(
            "site_connection_limit",
            "Current connection limit of a site (lowered while the site throttles)",
            m.site_connection_limit.clone(),
        );
        registry.register(
            "delivery_latency_seconds",
            "Time from acceptance into the spool to delivery",
            m.delivery_latency.clone(),
        );
        registry.register(
            "smtp_transaction_seconds",
            "Time one SMTP mail transaction took",
            m.transaction_latency.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The metric handles of one site.
    pub fn site(&self, site: &str) -> SiteMetrics {
        let l = SiteLabels {
            site: site.to_string(),
        };
        let outcome = |outcome| {
            self.site_outcomes.get_or_create_owned(&SiteOutcomeLabels {
                site: site.to_string(),
                outcome,
            })
        };
        SiteMetrics {
            attempts: self.site_attempts.get_or_create_owned(&l),
            connections: self.site_connections.get_or_create_owned(&l),
            queued: self.site_queued.get_or_create_owned(&l),
            rate: self.site_rate.get_or_create_owned(&l),
            connection_limit: self.site_connection_limit.get_or_create_owned(&l),
            delivered: outcome("delivered"),
            deferred: outcome("deferred"),
            bounced: outcome("bounced"),
        }
    }

    /// Counts one journaled outcome (per site when it was tried at one).
    pub fn observe(&self, site: Option<&SiteMetrics>, outcome: &Outcome) {
        let (name, at_site) = match outcome {
            Outcome::Delivered { .. } => ("delivered", site.map(|s| &s.delivered)),
            Outcome::Deferred { .. } => ("deferred", site.map(|s| &s.deferred)),
            Outcome::Bounced { .. } => ("bounced", site.map(|s| &s.bounced)),
            Outcome::RenderFailed { .. } => ("render_failed", None),
        };
        self.outcomes
            .get_or_create(&OutcomeLabels { outcome: name })
            .inc();
        if let Some(c) = at_site {
            c.inc();
        }
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
