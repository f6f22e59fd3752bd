//! Per-site metric families (label `site`, the site key: `host:port` for a
//! route, `mx:<hosts>` for an MX site, see `delivery::site`) and
//! [`SiteMetrics`], one site's handles, so the hot path does not look
//! labels up.
//!
//! To add a per-site metric: a family in [`SiteFamilies`] (registered in
//! [`SiteFamilies::register`]), a handle in [`SiteMetrics`] (made in
//! [`SiteFamilies::handles`]), and, when the value changes on an event, a
//! method on [`SiteMetrics`] that the delivery code calls. Exposure: none
//! (output only).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A site's labels: `site`, and `source` (the egress source, see
/// `[egress]`) when mail leaves from configured sources.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct SiteLabels {
    pub site: String,
    /// Empty without `[egress]` sources (the label is then left out).
    pub source: String,
}

fn encode_site(
    e: &mut prometheus_client::encoding::LabelSetEncoder,
    site: &str,
    source: &str,
) -> Result<(), std::fmt::Error> {
    use prometheus_client::encoding::EncodeLabel;
    ("site", site).encode(e.encode_label())?;
    if !source.is_empty() {
        ("source", source).encode(e.encode_label())?;
    }
    Ok(())
}

impl EncodeLabelSet for SiteLabels {
    fn encode(
        &self,
        e: &mut prometheus_client::encoding::LabelSetEncoder,
    ) -> Result<(), std::fmt::Error> {
        encode_site(e, &self.site, &self.source)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct SiteOutcomeLabels {
    pub site: SiteLabels,
    pub outcome: &'static str,
}

impl EncodeLabelSet for SiteOutcomeLabels {
    fn encode(
        &self,
        e: &mut prometheus_client::encoding::LabelSetEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeLabel;
        encode_site(e, &self.site.site, &self.site.source)?;
        ("outcome", self.outcome).encode(e.encode_label())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct SiteTlsLabels {
    pub site: SiteLabels,
    /// `true` when the session runs over TLS (STARTTLS), else `false`.
    pub tls: &'static str,
}

impl EncodeLabelSet for SiteTlsLabels {
    fn encode(
        &self,
        e: &mut prometheus_client::encoding::LabelSetEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeLabel;
        encode_site(e, &self.site.site, &self.site.source)?;
        ("tls", self.tls).encode(e.encode_label())
    }
}

/// One site's metric handles.
#[derive(Clone, Default)]
pub struct SiteMetrics {
    pub attempts: Counter,
    pub connections: Gauge,
    pub queued: Gauge,
    pub rate: Gauge<f64, AtomicU64>,
    pub connection_limit: Gauge,
    /// 1 while the site is up, 0 while it is down (see `delivery::health`).
    pub up: Gauge,
    /// Journaled outcomes of the site (no label lookup per recipient).
    pub(super) delivered: Counter,
    pub(super) deferred: Counter,
    pub(super) bounced: Counter,
    /// Sessions opened over TLS and in plain text.
    sessions_tls: Counter,
    sessions_plain: Counter,
}

impl SiteMetrics {
    /// A session to the site opened (greeting and EHLO done, STARTTLS too
    /// when `tls`).
    pub fn session_opened(&self, tls: bool) {
        if tls {
            self.sessions_tls.inc();
        } else {
            self.sessions_plain.inc();
        }
    }
}

/// The families behind every site's handles.
#[derive(Default)]
pub(super) struct SiteFamilies {
    outcomes: Family<SiteOutcomeLabels, Counter>,
    attempts: Family<SiteLabels, Counter>,
    connections: Family<SiteLabels, Gauge>,
    queued: Family<SiteLabels, Gauge>,
    rate: Family<SiteLabels, Gauge<f64, AtomicU64>>,
    connection_limit: Family<SiteLabels, Gauge>,
    up: Family<SiteLabels, Gauge>,
    sessions: Family<SiteTlsLabels, Counter>,
}

impl SiteFamilies {
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "site_outcomes",
            "Recipient outcomes journaled, by site and outcome",
            self.outcomes.clone(),
        );
        registry.register(
            "site_attempts",
            "Mail transactions attempted, by site",
            self.attempts.clone(),
        );
        registry.register(
            "site_connections",
            "Open SMTP connections, by site",
            self.connections.clone(),
        );
        registry.register(
            "site_queued",
            "Recipients waiting in a site's queue",
            self.queued.clone(),
        );
        registry.register(
            "site_rate_limit",
            "Current effective rate limit of a site (messages per second; lowered while the site throttles)",
            self.rate.clone(),
        );
        registry.register(
            "site_connection_limit",
            "Current connection limit of a site (lowered while the site throttles)",
            self.connection_limit.clone(),
        );
        registry.register(
            "site_up",
            "1 while a site is up, 0 while it is down (its sessions failed to open site_down_after times in a row; it is probed on the retry schedule)",
            self.up.clone(),
        );
        registry.register(
            "site_sessions",
            "SMTP sessions opened, by site and whether they run over TLS",
            self.sessions.clone(),
        );
    }

    /// The handles of `site` (its series exist from now on, at zero).
    pub(super) fn handles(&self, site: &str, source: &str) -> SiteMetrics {
        let l = SiteLabels {
            site: site.to_string(),
            source: source.to_string(),
        };
        let outcome = |outcome| {
            self.outcomes.get_or_create_owned(&SiteOutcomeLabels {
                site: l.clone(),
                outcome,
            })
        };
        let sessions = |tls| {
            self.sessions.get_or_create_owned(&SiteTlsLabels {
                site: l.clone(),
                tls,
            })
        };
        SiteMetrics {
            attempts: self.attempts.get_or_create_owned(&l),
            connections: self.connections.get_or_create_owned(&l),
            queued: self.queued.get_or_create_owned(&l),
            rate: self.rate.get_or_create_owned(&l),
            connection_limit: self.connection_limit.get_or_create_owned(&l),
            up: self.up.get_or_create_owned(&l),
            delivered: outcome("delivered"),
            deferred: outcome("deferred"),
            bounced: outcome("bounced"),
            sessions_tls: sessions("true"),
            sessions_plain: sessions("false"),
        }
    }
}
