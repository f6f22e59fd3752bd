//! Feedback metrics: reports received at the inbound listener (and
//! unsubscribes) by what they became (`volley_feedback_reports_total`,
//! label `result`: bounce, complaint, unsubscribe, forged, unattributed,
//! ignored), addresses added to the suppression list by them
//! (`volley_feedback_suppressed_total`), and the list's size
//! (`volley_suppression_entries`). The counts live with the handler and
//! the list; they are copied in at each scrape. Exposure: none.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::feedback::inbound::Counts;
use crate::feedback::suppression::SuppressionList;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

const RESULTS: [&str; 6] = [
    "bounce",
    "complaint",
    "unsubscribe",
    "forged",
    "unattributed",
    "ignored",
];

/// The feedback families and where their values come from.
#[derive(Default)]
pub struct FeedbackMetrics {
    reports: Family<ResultLabels, Counter>,
    suppressed: Counter,
    entries: Gauge,
    counts: Mutex<Option<Arc<Counts>>>,
    list: Mutex<Option<Arc<SuppressionList>>>,
}

impl FeedbackMetrics {
    pub fn register(&self, registry: &mut Registry) {
        for result in RESULTS {
            self.reports.get_or_create_owned(&ResultLabels { result });
        }
        registry.register(
            "feedback_reports",
            "Reports and unsubscribes received, by what they became",
            self.reports.clone(),
        );
        registry.register(
            "feedback_suppressed",
            "Addresses added to the suppression list by bounces, complaints and unsubscribes",
            self.suppressed.clone(),
        );
        registry.register(
            "suppression_entries",
            "Entries on the account's suppression list",
            self.entries.clone(),
        );
    }

    pub fn watch_counts(&self, c: Arc<Counts>) {
        *self.counts.lock().unwrap_or_else(|e| e.into_inner()) = Some(c);
    }

    pub fn watch_list(&self, l: Arc<SuppressionList>) {
        *self.list.lock().unwrap_or_else(|e| e.into_inner()) = Some(l);
    }

    /// Copies the current values in (at a scrape).
    pub fn refresh(&self) {
        if let Some(c) = self
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            let values = [
                &c.bounces,
                &c.complaints,
                &c.unsubscribes,
                &c.forged,
                &c.unattributed,
                &c.ignored,
            ];
            for (result, v) in RESULTS.into_iter().zip(values) {
                let counter = self.reports.get_or_create(&ResultLabels { result });
                let now = v.load(Ordering::Relaxed);
                counter.inc_by(now.saturating_sub(counter.get()));
            }
            let now = c.suppressed.load(Ordering::Relaxed);
            self.suppressed
                .inc_by(now.saturating_sub(self.suppressed.get()));
        }
        if let Some(l) = self.list.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            self.entries.set(i64::try_from(l.len()).unwrap_or(i64::MAX));
        }
    }
}
