//! Prometheus metrics: one registry per engine (no globals), exposed on
//! `GET /metrics` in the Prometheus text format 0.0.4 or OpenMetrics
//! ([`expose`]: the scraper's `Accept` header picks).
//!
//! Counters and gauges are updated by the stages as they work; queue gauges
//! are refreshed from delivery's [`Queues`] and the spool ([`spool_view`]) when scraped.
//! Every family with a fixed label set has its series from the start, at
//! zero (outcomes, reload results, the SES bounce type/subtype pairs), so a
//! rate or an alert works before the first event. Per-site families carry a
//! `site` label; [`SiteMetrics`] holds one site's handles ([`site`]).
//! Histogram bounds are written out (no float drift such as
//! `0.15000000000000003`). Exposure: none (output only).

mod destination;
mod expose;
pub mod feedback;
mod site;
mod spool_view;

pub use destination::{DestinationLabels, DestinationMetrics};
pub use expose::{Format, negotiate};
pub use site::{SiteLabels, SiteMetrics, SiteOutcomeLabels, SiteTlsLabels};
pub use spool_view::{CAMPAIGN_SERIES, CampaignLabels, DOMAIN_SERIES, DomainLabels, OTHER};

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use volley_spool::Spool;

use crate::outcome::Outcome;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

/// Every outcome label, in the order of [`Outcome`]'s variants.
pub const OUTCOMES: [&str; 5] = [
    "delivered",
    "deferred",
    "bounced",
    "render_failed",
    "rejected",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: String,
}

/// A session under an MTA-STS policy: its mode, and whether TLS verified.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MtaStsLabels {
    pub mode: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HoldLabels {
    /// `domain`, `site` or `campaign`.
    pub kind: &'static str,
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `applied` or `invalid`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BounceLabels {
    /// SES `bounceType`.
    pub r#type: &'static str,
    /// SES `bounceSubType`.
    pub subtype: &'static str,
}

/// The SES bounce type/subtype pairs (`shared` SES reference, §3): each
/// has its `volley_bounces_total` series from the start.
pub const BOUNCE_KINDS: [(&str, &str); 10] = [
    ("Undetermined", "Undetermined"),
    ("Permanent", "General"),
    ("Permanent", "NoEmail"),
    ("Permanent", "Suppressed"),
    ("Permanent", "OnAccountSuppressionList"),
    ("Transient", "General"),
    ("Transient", "MailboxFull"),
    ("Transient", "MessageTooLarge"),
    ("Transient", "ContentRejected"),
    ("Transient", "AttachmentRejected"),
];

/// Upper bounds of `volley_delivery_latency_seconds`: 50 ms to 3 days.
const DELIVERY_BUCKETS: [f64; 20] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
    7200.0, 14400.0, 43200.0, 86400.0, 259200.0,
];

/// Upper bounds of `volley_smtp_transaction_seconds`: 1 ms to 2 min.
const TRANSACTION_BUCKETS: [f64; 17] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0,
    120.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// Delivery's queue counts at the time of a scrape.
#[derive(Debug, Clone, Copy, Default)]
pub struct Queues {
    /// Recipients handed to delivery whose outcome is not yet journaled.
    pub in_flight: i64,
    /// Deferred recipients waiting for their retry time.
    pub waiting: i64,
    /// Sites with a running shard (work, connections or recent activity).
    pub sites: i64,
}

/// Every metric the engine exports.
pub struct Metrics {
    registry: Registry,
    /// One scrape at a time (the spool's families are rebuilt per scrape).
    scraping: Mutex<()>,
    pub outcomes: Family<OutcomeLabels, Counter>,
    /// Bounces by SES type and subtype.
    bounces: Family<BounceLabels, Counter>,
    sites: site::SiteFamilies,
    destinations: destination::DestinationFamilies,
    /// Reports received and the suppression list.
    pub feedback: feedback::FeedbackMetrics,
    spool: spool_view::SpoolGauges,
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
    /// Recipients set aside by operators' holds (see `delivery::holds`).
    pub held_recipients: Gauge,
    /// One series at 1 per hold in force.
    pub holds: Family<HoldLabels, Gauge>,
    /// 1 while the service drains (`volley queue drain`).
    pub draining: Gauge,
    /// 1 per egress source in service, 0 while out of it.
    pub source_up: Family<SourceLabels, Gauge>,
    /// Warming sources: plan day, and today's allowance per site.
    pub warmup_day: Family<SourceLabels, Gauge>,
    pub warmup_allowance: Family<SourceLabels, Gauge>,
    /// Sessions under MTA-STS policies, by mode and result.
    pub mta_sts_sessions: Family<MtaStsLabels, Counter>,
    pub ingested: Counter,
    pub rejected: Counter,
    /// SIGHUP reloads, by result (`applied`, `invalid`).
    pub reloads: Family<ReloadLabels, Counter>,
    active: Gauge,
    deferred_waiting: Gauge,
    sites_active: Gauge,
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
            scraping: Mutex::new(()),
            outcomes: Family::default(),
            bounces: Family::default(),
            sites: site::SiteFamilies::default(),
            destinations: destination::DestinationFamilies::default(),
            feedback: feedback::FeedbackMetrics::default(),
            spool: spool_view::SpoolGauges::default(),
            delivery_latency: Histogram::new(DELIVERY_BUCKETS),
            transaction_latency: Histogram::new(TRANSACTION_BUCKETS),
            attempts: Counter::default(),
            connections: Gauge::default(),
            journal_errors: Counter::default(),
            events_published: Counter::default(),
            event_errors: Counter::default(),
            event_sink_lag_entries: Gauge::default(),
            event_sink_lag_seconds: Gauge::default(),
            spool_lost: Gauge::default(),
            held_recipients: Gauge::default(),
            holds: Family::default(),
            draining: Gauge::default(),
            source_up: Family::default(),
            mta_sts_sessions: Family::default(),
            warmup_day: Family::default(),
            warmup_allowance: Family::default(),
            ingested: Counter::default(),
            rejected: Counter::default(),
            reloads: Family::default(),
            active: Gauge::default(),
            deferred_waiting: Gauge::default(),
            sites_active: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "build",
            "The version of volley running (the value is always 1)",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        for outcome in OUTCOMES {
            m.outcomes.get_or_create_owned(&OutcomeLabels { outcome });
        }
        registry.register(
            "outcomes",
            "Recipient outcomes journaled, by outcome",
            m.outcomes.clone(),
        );
        for (r#type, subtype) in BOUNCE_KINDS {
            m.bounces
                .get_or_create_owned(&BounceLabels { r#type, subtype });
        }
        registry.register(
            "bounces",
            "Bounces journaled, by SES bounce type and subtype",
            m.bounces.clone(),
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
            "held_recipients",
            "Recipients not attempted because an operator holds their domain, site or campaign (volley queue hold)",
            m.held_recipients.clone(),
        );
        registry.register(
            "egress_source_up",
            "1 while an egress source ([egress]) is in service, 0 while it is out (its address cannot be bound, or sites refuse it at the greeting)",
            m.source_up.clone(),
        );
        registry.register(
            "egress_warmup_day",
            "The warm-up day a warming egress source is on (1, 2, ...)",
            m.warmup_day.clone(),
        );
        registry.register(
            "egress_warmup_allowance",
            "Messages a warming egress source may send each site today (0 while paused, -1 once established)",
            m.warmup_allowance.clone(),
        );
        registry.register(
            "mta_sts_sessions",
            "Sessions to domains with an MTA-STS policy, by mode (enforce, testing) and result (verified; failed: TLS did not verify, or the MX host is not in the policy)",
            m.mta_sts_sessions.clone(),
        );
        registry.register(
            "draining",
            "1 while the service drains (volley queue drain): no new work, no new attempt",
            m.draining.clone(),
        );
        registry.register(
            "holds",
            "Operators' holds in force (volley queue hold): 1 per held domain, site or campaign",
            m.holds.clone(),
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
        for result in ["applied", "invalid"] {
            m.reloads.get_or_create_owned(&ReloadLabels { result });
        }
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
            "sites_active",
            "Sites with a running shard (an idle site's shard ends after the idle timeout)",
            m.sites_active.clone(),
        );
        // every mode and result served from the start (at 0)
        for mode in ["enforce", "testing"] {
            for result in ["verified", "failed"] {
                let _ = m.mta_sts_sessions.get_or_create(&MtaStsLabels {
                    mode: mode.into(),
                    result: result.into(),
                });
            }
        }
        m.spool.register(&mut registry);
        m.sites.register(&mut registry);
        m.destinations.register(&mut registry);
        m.feedback.register(&mut registry);
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

    /// The metric handles of one event destination.
    pub fn destination(&self, set: &str, name: &str, kind: &'static str) -> DestinationMetrics {
        self.destinations.handles(set, name, kind)
    }

    /// Handles onto the `[events] jsonl` file's unlabelled series.
    pub fn events_file(&self) -> DestinationMetrics {
        DestinationMetrics {
            published: self.events_published.clone(),
            lag_entries: self.event_sink_lag_entries.clone(),
            lag_seconds: self.event_sink_lag_seconds.clone(),
            ..DestinationMetrics::default()
        }
    }

    /// The metric handles of one site (and egress source: `""` for none).
    pub fn site(&self, site: &str, source: &str) -> SiteMetrics {
        self.sites.handles(site, source)
    }

    /// Shows a source's warm-up: its plan day and today's allowance per
    /// site (`-1` when established).
    pub fn warmup(&self, s: &crate::delivery::warmup::Standing) {
        let l = SourceLabels {
            source: s.source.clone(),
        };
        self.warmup_day.get_or_create(&l).set(s.day as i64);
        let allowance = match (s.complete, s.paused, s.allowance) {
            (true, _, _) | (_, _, None) => -1,
            (_, true, _) => 0,
            (_, false, Some(a)) => a as i64,
        };
        self.warmup_allowance.get_or_create(&l).set(allowance);
    }

    /// Shows whether an egress source is in service.
    pub fn source_up(&self, source: &str, up: bool) {
        self.source_up
            .get_or_create(&SourceLabels {
                source: source.to_string(),
            })
            .set(i64::from(up));
    }

    /// Counts one journaled outcome (per site when it was tried at one).
    pub fn observe(&self, site: Option<&SiteMetrics>, outcome: &Outcome) {
        let (name, at_site) = match outcome {
            Outcome::Delivered { .. } => (OUTCOMES[0], site.map(|s| &s.delivered)),
            Outcome::Deferred { .. } => (OUTCOMES[1], site.map(|s| &s.deferred)),
            Outcome::Bounced {
                bounce_type,
                bounce_subtype,
                ..
            } => {
                self.bounces
                    .get_or_create(&BounceLabels {
                        r#type: bounce_type,
                        subtype: bounce_subtype,
                    })
                    .inc();
                (OUTCOMES[2], site.map(|s| &s.bounced))
            }
            Outcome::RenderFailed { .. } => (OUTCOMES[3], None),
            Outcome::Rejected { .. } => (OUTCOMES[4], None),
        };
        self.outcomes
            .get_or_create(&OutcomeLabels { outcome: name })
            .inc();
        if let Some(c) = at_site {
            c.inc();
        }
    }

    /// The exposition in `format`, with the queue gauges refreshed from
    /// the delivery's `queues` and the `spool` (reads the spool's counts
    /// and walks its directory: call it off the async threads).
    pub fn render(&self, queues: Queues, spool: &Spool, format: Format) -> String {
        let _one = self
            .scraping
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.active.set(queues.in_flight);
        self.deferred_waiting.set(queues.waiting);
        self.sites_active.set(queues.sites);
        self.spool.refresh(spool, volley_spool::now_ms());
        self.feedback.refresh();
        format.encode(&self.registry)
    }
}

#[cfg(test)]
mod tests;
