//! Sites: destinations that share one queue, rate limiter and connection
//! pool. Domains whose MX host sets are the same roll up into one site (so
//! 10,000 domains hosted by one provider get one pool, not 10,000); a
//! `[routes]` target is one site; a domain with its own `[[domain]]` policy
//! is a site of its own, and so is a domain with an MTA-STS policy in
//! force (its mail goes only to the hosts its policy lists, over verified
//! TLS in `enforce` mode; its sessions are reported).
//!
//! [`resolve`] maps a domain to its site by its route or MX answer, and says
//! until when that mapping holds (the MX answer's TTL). Exposure: MX host
//! names come from DNS; they are lower-cased and used only as lookup keys,
//! TLS names and labels.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::mx::Resolver;
use super::sts::{Applied, Sts, report::Failure};
use crate::config::{Config, Policy, TlsPolicy};
use crate::smtp::{DnsFailure, SessionError};

/// What MTA-STS lookups need: the policies, and a verifying TLS client
/// for their fetches.
pub struct StsLookup<'a> {
    pub sts: &'a Arc<Sts>,
    pub tls: Option<&'a tokio_rustls::TlsConnector>,
}

/// Where a site's connections go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hosts {
    /// A fixed next hop from `[routes]`.
    Route { host: String, port: u16 },
    /// MX hosts in the order to try them, on `port`.
    Mx {
        hosts: Vec<(u16, String)>,
        port: u16,
    },
}

impl Hosts {
    /// Host names, for MX-suffix policy rules.
    pub fn names(&self) -> Vec<String> {
        match self {
            Hosts::Route { host, .. } => vec![host.clone()],
            Hosts::Mx { hosts, .. } => hosts.iter().map(|(_, h)| h.clone()).collect(),
        }
    }
}

/// A site as the scheduler knows it.
#[derive(Debug, Clone)]
pub struct Site {
    /// Stable name: the metrics label and the shard key.
    pub key: Arc<str>,
    pub hosts: Hosts,
    /// The domain whose `[[domain]]` rule applies (sites of their own).
    pub rule_domain: Option<String>,
    /// The egress source its shard's connections leave from (`None`: the
    /// system's choice); set by the scheduler.
    pub source: Option<Arc<super::egress::Source>>,
    /// The MTA-STS policy in force for the site's domain.
    pub sts: Option<Arc<Applied>>,
    /// The site it would be without its MTA-STS policy (its `mx:` key):
    /// its site-wide caps and an operator's hold of that site apply to it.
    pub base: Option<Arc<str>>,
}

impl Site {
    /// The key its site-wide caps are kept under: its base site's.
    pub fn share_key(&self) -> &Arc<str> {
        self.base.as_ref().unwrap_or(&self.key)
    }

    /// The policy of this site under `config`.
    pub fn policy(&self, config: &Config) -> Policy {
        let mut p = config.policy(
            self.rule_domain.as_deref().unwrap_or(""),
            &self.hosts.names(),
        );
        if self.sts.as_ref().is_some_and(|s| s.enforced()) {
            p.tls = TlsPolicy::Verify;
        }
        p
    }
}

/// Maps `domain` to its site; returns the site and until when the mapping
/// holds. An operator's reroute (`reroute`) wins over `[routes]` and MX.
/// With `sts` (and `[mta_sts] enabled`), MX destinations are looked up for
/// an MTA-STS policy at the same time as their MX hosts.
pub async fn resolve(
    domain: &str,
    config: &Config,
    resolver: &Resolver,
    reroute: Option<crate::config::Route>,
    sts: Option<StsLookup<'_>>,
) -> Result<(Site, Instant), SessionError> {
    let own_rule = config.domain_rule(domain).is_some();
    let rule_domain = own_rule.then(|| domain.to_string());
    if let Some(r) = reroute.or_else(|| config.route_for(domain)) {
        let key = if own_rule {
            format!("{domain} via {}:{}", r.host, r.port)
        } else {
            format!("{}:{}", r.host, r.port)
        };
        let site = Site {
            key: Arc::from(key),
            hosts: Hosts::Route {
                host: r.host,
                port: r.port,
            },
            rule_domain,
            source: None,
            sts: None,
            base: None,
        };
        // routes change only with the config
        return Ok((site, Instant::now() + Duration::from_secs(24 * 3600)));
    }
    let policy = async {
        match &sts {
            Some(l) if config.mta_sts.enabled => {
                l.sts.lookup(domain, &config.mta_sts, resolver, l.tls).await
            }
            _ => None,
        }
    };
    let (answer, policy) = tokio::join!(resolver.mx(domain), policy);
    let answer = answer?;
    if let Some(p) = policy {
        let sts = sts.as_ref().map(|l| l.sts);
        return with_policy(domain, config, answer, p, rule_domain, sts);
    }
    let key = base_key(&answer, domain, own_rule);
    Ok(mx_site(key, answer, config, rule_domain, None, None))
}

/// The site `key` of an MX answer, and until when the mapping holds (at
/// least a minute, so that a TTL of zero does not mean a lookup per
/// message).
fn mx_site(
    key: String,
    answer: super::mx::MxAnswer,
    config: &Config,
    rule_domain: Option<String>,
    sts: Option<Applied>,
    base: Option<String>,
) -> (Site, Instant) {
    let until = answer
        .valid_until
        .max(Instant::now() + Duration::from_secs(60));
    let site = Site {
        key: Arc::from(key),
        hosts: Hosts::Mx {
            hosts: answer.hosts,
            port: config.delivery.smtp_port,
        },
        rule_domain,
        source: None,
        sts: sts.map(Arc::new),
        base: base.map(Arc::from),
    };
    (site, until)
}

/// The key of the site of `domain` by its MX answer: the domain itself
/// with a rule of its own, `<domain> (no MX)` without MX hosts, else
/// `mx:<hosts>` (shared by every domain with the same hosts).
fn base_key(answer: &super::mx::MxAnswer, domain: &str, own_rule: bool) -> String {
    let mut names: Vec<&str> = answer.hosts.iter().map(|(_, h)| h.as_str()).collect();
    names.sort_unstable();
    if own_rule {
        domain.to_string()
    } else if answer.implicit {
        // no MX: the domain's own address; not shared with anyone
        format!("{domain} (no MX)")
    } else {
        format!("mx:{}", names.join(","))
    }
}

/// The site of `domain` under its MTA-STS policy `p`: a site of its own,
/// named after the mode and a digest of its hosts and policy (a changed
/// policy is a new site). In `enforce` mode only the MX hosts the policy
/// lists are kept; with none left the domain's mail is deferred (and the
/// failure reported).
fn with_policy(
    domain: &str,
    config: &Config,
    mut answer: super::mx::MxAnswer,
    p: Applied,
    rule_domain: Option<String>,
    sts: Option<&Arc<Sts>>,
) -> Result<(Site, Instant), SessionError> {
    let base = base_key(&answer, domain, rule_domain.is_some());
    if p.enforced() {
        let all: Vec<String> = answer.hosts.iter().map(|(_, h)| h.clone()).collect();
        answer.hosts.retain(|(_, h)| p.policy.allows(h));
        if answer.hosts.is_empty() {
            if let Some(s) = sts {
                s.reports.record(
                    &p.domain,
                    Some(&p.policy),
                    Some(Failure {
                        result_type: "validation-failure",
                        mx_host: all.first().cloned(),
                        reason: Some("mx-not-in-policy".into()),
                        ..Default::default()
                    }),
                );
            }
            return Err(SessionError::Dns(
                DnsFailure::Temporary,
                format!(
                    "MTA-STS policy of {domain} (enforce) lists none of its MX hosts ({}); mx: {}",
                    all.join(", "),
                    p.policy.mx.join(", ")
                ),
            ));
        }
    }
    let mut digest = crc32fast::Hasher::new();
    for (_, h) in &answer.hosts {
        digest.update(h.as_bytes());
        digest.update(b",");
    }
    for l in p.policy.lines() {
        digest.update(l.as_bytes());
        digest.update(b"\n");
    }
    let key = format!(
        "{domain} (mta-sts {} {:08x})",
        p.policy.mode.name(),
        digest.finalize()
    );
    Ok(mx_site(
        key,
        answer,
        config,
        rule_domain,
        Some(p),
        Some(base),
    ))
}
