//! Gauges read from the spool at each scrape: whether the service is
//! healthy, the spool's disk use, the queue depth (queued and deferred
//! recipients) per campaign and per destination domain, and the age of the
//! oldest deferred recipient.
//!
//! Cardinality is bounded whatever the spool holds: only campaigns and
//! domains with recipients still to deliver get series, at most
//! [`CAMPAIGN_SERIES`] campaigns and [`DOMAIN_SERIES`] domains (the largest
//! queues), and the rest are summed in one series labelled [`OTHER`]; a
//! spool with 50,000 waiting domains gives 21 domain series, and
//! `volley_domains_pending` says how many domains there are. `volley status`
//! lists them all. Pure selection ([`largest`]) and thin reading. Exposure:
//! none (campaign ids and domains come from the spool, validated at ingest).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use volley_spool::{Counts, Spool};

/// Most campaigns with a series of their own.
pub const CAMPAIGN_SERIES: usize = 50;
/// Most destination domains with a series of their own.
pub const DOMAIN_SERIES: usize = 20;
/// The label value of the series that sums the rest (no campaign id or
/// domain can be spelled so).
pub const OTHER: &str = "(other)";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CampaignLabels {
    pub campaign: String,
    /// `queued` or `deferred`.
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DomainLabels {
    pub domain: String,
    /// `queued` or `deferred`.
    pub state: &'static str,
}

/// The spool's gauges.
#[derive(Default)]
pub(super) struct SpoolGauges {
    healthy: Gauge,
    disk_bytes: Gauge,
    oldest_deferred: Gauge<f64, AtomicU64>,
    campaign_pending: Family<CampaignLabels, Gauge>,
    domain_pending: Family<DomainLabels, Gauge>,
    domains_pending: Gauge,
}

impl SpoolGauges {
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "healthy",
            "1 while the service is healthy; 0 once the spool refused writes after a failed fdatasync (GET /healthz says why; restart to reopen the spool)",
            self.healthy.clone(),
        );
        registry.register(
            "spool_disk_bytes",
            "Disk space the spool's files occupy (allocated blocks, preallocation included)",
            self.disk_bytes.clone(),
        );
        registry.register(
            "oldest_deferred_age_seconds",
            "Age of the oldest deferred recipient, from its acceptance into the spool (the clock max_age uses); 0 when none is deferred",
            self.oldest_deferred.clone(),
        );
        registry.register(
            "campaign_pending",
            "Recipients still to deliver, by campaign and state (queued, deferred); the 50 largest campaigns, the rest summed as campaign=\"(other)\"",
            self.campaign_pending.clone(),
        );
        registry.register(
            "domain_pending",
            "Recipients still to deliver, by destination domain and state (queued, deferred); the 20 largest domains, the rest summed as domain=\"(other)\"",
            self.domain_pending.clone(),
        );
        registry.register(
            "domains_pending",
            "Destination domains with recipients still to deliver",
            self.domains_pending.clone(),
        );
    }

    /// Reads the spool's current state into the gauges.
    pub(super) fn refresh(&self, spool: &Spool, now_ms: u64) {
        self.healthy.set(i64::from(spool.healthy()));
        self.disk_bytes
            .set(i64::try_from(spool.disk_usage()).unwrap_or(i64::MAX));
        let summary = spool.summary();

        self.oldest_deferred
            .set(spool.oldest_deferred_ms().map_or(0.0, |accepted| {
                now_ms.saturating_sub(accepted) as f64 / 1000.0
            }));

        let campaigns = summary.campaigns.iter().map(|(&no, c)| {
            let name = spool
                .campaign(no)
                .map_or_else(|| format!("#{no}"), |c| c.id.clone());
            (name, c.counts)
        });
        let (top, rest) = largest(campaigns, CAMPAIGN_SERIES);
        self.campaign_pending.clear();
        for (campaign, counts) in with_other(top, rest) {
            for (state, n) in pending(&counts) {
                self.campaign_pending
                    .get_or_create(&CampaignLabels {
                        campaign: campaign.clone(),
                        state,
                    })
                    .set(n);
            }
        }

        let waiting = summary.domains.values().filter(|c| c.pending() > 0).count();
        self.domains_pending
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
        let domains = summary.domains.iter().map(|(d, c)| (d.clone(), *c));
        let (top, rest) = largest(domains, DOMAIN_SERIES);
        self.domain_pending.clear();
        for (domain, counts) in with_other(top, rest) {
            for (state, n) in pending(&counts) {
                self.domain_pending
                    .get_or_create(&DomainLabels {
                        domain: domain.clone(),
                        state,
                    })
                    .set(n);
            }
        }
    }
}

/// The queued and deferred counts, labelled.
fn pending(c: &Counts) -> [(&'static str, i64); 2] {
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    [("queued", n(c.queued)), ("deferred", n(c.deferred))]
}

fn with_other(top: Vec<(String, Counts)>, rest: Option<Counts>) -> Vec<(String, Counts)> {
    let mut all = top;
    all.extend(rest.map(|r| (OTHER.to_string(), r)));
    all
}

/// Of the items with recipients still to deliver, the `n` with the most
/// (ties by name), largest first, and the sum of the others' queued and
/// deferred counts (`None` when there are no others).
pub fn largest(
    items: impl IntoIterator<Item = (String, Counts)>,
    n: usize,
) -> (Vec<(String, Counts)>, Option<Counts>) {
    let mut waiting: Vec<(String, Counts)> =
        items.into_iter().filter(|(_, c)| c.pending() > 0).collect();
    let order = |a: &(String, Counts), b: &(String, Counts)| {
        b.1.pending()
            .cmp(&a.1.pending())
            .then_with(|| a.0.cmp(&b.0))
    };
    if waiting.len() > n && n > 0 {
        waiting.select_nth_unstable_by(n - 1, order);
    }
    let rest = if waiting.len() > n {
        let mut sum = Counts::default();
        for (_, c) in waiting.drain(n..) {
            sum.queued += c.queued;
            sum.deferred += c.deferred;
        }
        Some(sum)
    } else {
        None
    };
    waiting.sort_unstable_by(order);
    (waiting, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(queued: u64, deferred: u64, delivered: u64) -> Counts {
        Counts {
            queued,
            deferred,
            delivered,
            ..Counts::default()
        }
    }

    #[test]
    fn largest_keeps_the_biggest_queues_and_sums_the_rest() {
        // 50,000 domains with something waiting, and finished ones
        let mut items: Vec<(String, Counts)> = (0..50_000u64)
            .map(|i| (format!("d{i}.test"), counts(i % 7, i % 3, 5)))
            .filter(|(_, c)| c.pending() > 0)
            .collect();
        items.push(("done.test".into(), counts(0, 0, 100)));
        items.push(("big.test".into(), counts(1000, 1, 0)));
        items.push(("bigger.test".into(), counts(0, 2000, 0)));
        let total: u64 = items.iter().map(|(_, c)| c.pending()).sum();
        let (top, rest) = largest(items, DOMAIN_SERIES);
        assert_eq!(top.len(), DOMAIN_SERIES);
        assert_eq!(top[0].0, "bigger.test");
        assert_eq!(top[1].0, "big.test");
        // largest first, ties by name
        for w in top.windows(2) {
            let (a, b) = (&w[0], &w[1]);
            assert!(
                a.1.pending() > b.1.pending() || (a.1.pending() == b.1.pending() && a.0 < b.0),
                "{a:?} before {b:?}"
            );
        }
        let rest = rest.expect("the others are summed");
        let shown: u64 = top.iter().map(|(_, c)| c.pending()).sum();
        assert_eq!(shown + rest.pending(), total, "nothing is dropped");
        assert!(!top.iter().any(|(d, _)| d == "done.test"));
    }

    #[test]
    fn largest_without_others_and_without_waiting() {
        let (top, rest) = largest(
            vec![
                ("a".to_string(), counts(1, 0, 0)),
                ("b".to_string(), counts(0, 0, 9)),
            ],
            3,
        );
        assert_eq!(top, vec![("a".to_string(), counts(1, 0, 0))]);
        assert_eq!(rest, None);
        let (top, rest) = largest(Vec::new(), 3);
        assert!(top.is_empty() && rest.is_none());
        let (top, rest) = largest(vec![("a".to_string(), counts(1, 1, 0))], 0);
        assert!(top.is_empty());
        assert_eq!(rest.map(|c| c.pending()), Some(2));
    }
}
