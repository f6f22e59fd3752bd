//! Per-destination metric families (labels `configuration_set`,
//! `destination`, `kind`) and [`DestinationMetrics`], one destination's
//! handles: events published, failed tries, events dead-lettered, and the
//! lag in journal entries and seconds. The `[events] jsonl` file keeps its
//! own unlabelled series (`volley_events_published_total`,
//! `volley_event_sink_lag_*`). Exposure: none (output only).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DestinationLabels {
    pub configuration_set: String,
    pub destination: String,
    /// `jsonl` or `webhook`.
    pub kind: &'static str,
}

/// One destination's metric handles (or the `[events] jsonl` file's).
#[derive(Clone, Default)]
pub struct DestinationMetrics {
    /// Events the destination took.
    pub published: Counter,
    /// Tries that failed and are retried (a refused connection, a
    /// timeout, a 5xx or 429 answer).
    pub failed: Counter,
    /// Events refused for good, written to the dead-letter file.
    pub dead_lettered: Counter,
    /// Journal entries not yet published.
    pub lag_entries: Gauge,
    /// How long the oldest outcome not yet published has waited (0 when
    /// caught up).
    pub lag_seconds: Gauge<f64, AtomicU64>,
}

/// The families behind every destination's handles.
#[derive(Default)]
pub(super) struct DestinationFamilies {
    published: Family<DestinationLabels, Counter>,
    failed: Family<DestinationLabels, Counter>,
    dead_lettered: Family<DestinationLabels, Counter>,
    lag_entries: Family<DestinationLabels, Gauge>,
    lag_seconds: Family<DestinationLabels, Gauge<f64, AtomicU64>>,
}

impl DestinationFamilies {
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "destination_events_published",
            "Events an event destination took, by configuration set and destination",
            self.published.clone(),
        );
        registry.register(
            "destination_failures",
            "Failed tries to publish to an event destination (retried with backoff)",
            self.failed.clone(),
        );
        registry.register(
            "destination_dead_lettered",
            "Events an event destination refused for good, written to its dead-letter file",
            self.dead_lettered.clone(),
        );
        registry.register(
            "destination_lag_entries",
            "Journal entries an event destination has not reached yet",
            self.lag_entries.clone(),
        );
        registry.register(
            "destination_lag_seconds",
            "How long the oldest outcome an event destination has not received has waited (0 when caught up)",
            self.lag_seconds.clone(),
        );
    }

    /// The handles of one destination (its series exist from now on).
    pub(super) fn handles(&self, set: &str, name: &str, kind: &'static str) -> DestinationMetrics {
        let l = DestinationLabels {
            configuration_set: set.to_string(),
            destination: name.to_string(),
            kind,
        };
        DestinationMetrics {
            published: self.published.get_or_create_owned(&l),
            failed: self.failed.get_or_create_owned(&l),
            dead_lettered: self.dead_lettered.get_or_create_owned(&l),
            lag_entries: self.lag_entries.get_or_create_owned(&l),
            lag_seconds: self.lag_seconds.get_or_create_owned(&l),
        }
    }
}
