//! Sites: destinations that share one queue, rate limiter and connection
//! pool. Domains whose MX host sets are the same roll up into one site (so
//! 10,000 domains hosted by one provider get one pool, not 10,000); a
//! `[routes]` target is one site; a domain with its own `[[domain]]` policy
//! is a site of its own.
//!
//! [`resolve`] maps a domain to its site by its route or MX answer, and says
//! until when that mapping holds (the MX answer's TTL). Exposure: MX host
//! names come from DNS; they are lower-cased and used only as lookup keys,
//! TLS names and labels.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::mx::Resolver;
use crate::config::{Config, Policy};
use crate::smtp::SessionError;

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
}

impl Site {
    /// The policy of this site under `config`.
    pub fn policy(&self, config: &Config) -> Policy {
        config.policy(
            self.rule_domain.as_deref().unwrap_or(""),
            &self.hosts.names(),
        )
    }
}

/// Maps `domain` to its site; returns the site and until when the mapping
/// holds. An operator's reroute (`reroute`) wins over `[routes]` and MX.
pub async fn resolve(
    domain: &str,
    config: &Config,
    resolver: &Resolver,
    reroute: Option<crate::config::Route>,
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
        };
        // routes change only with the config
        return Ok((site, Instant::now() + Duration::from_secs(24 * 3600)));
    }
    let answer = resolver.mx(domain).await?;
    let mut names: Vec<&str> = answer.hosts.iter().map(|(_, h)| h.as_str()).collect();
    names.sort_unstable();
    let key = if own_rule {
        domain.to_string()
    } else if answer.implicit {
        // no MX: the domain's own address; not shared with anyone
        format!("{domain} (no MX)")
    } else {
        format!("mx:{}", names.join(","))
    };
    let site = Site {
        key: Arc::from(key),
        hosts: Hosts::Mx {
            hosts: answer.hosts,
            port: config.delivery.smtp_port,
        },
        rule_domain,
        source: None,
    };
    // at least a minute, so that a TTL of zero does not mean a lookup per
    // message
    let until = answer
        .valid_until
        .max(Instant::now() + Duration::from_secs(60));
    Ok((site, until))
}
