//! Which policy and next hop apply to a destination: its `[[domain]]`
//! rule, else the first `[[mx]]` rule matching one of its MX hosts, else
//! `[delivery]`; `[routes]` for a domain or `*`.

use super::{Config, Policy, PolicyRule};

/// A fixed next hop from `[routes]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub host: String,
    pub port: u16,
}

impl Route {
    /// Parses `host:port` (IPv6 as `[::1]:25`).
    pub fn parse(s: &str) -> Result<Route, String> {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("{s:?} is not host:port"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{s:?}: port {port:?} is not a number 1-65535"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || port == 0 {
            return Err(format!("{s:?} is not host:port"));
        }
        Ok(Route {
            host: host.to_string(),
            port,
        })
    }
}

impl Config {
    /// The default policy (the `[delivery]` values).
    pub fn default_policy(&self) -> Policy {
        let d = &self.delivery;
        Policy {
            messages_per_second: d.messages_per_second,
            connections: d.connections,
            messages_per_connection: d.messages_per_connection,
            recipients_per_transaction: d.recipients_per_transaction,
            tls: d.tls,
            retry_first: d.retry_first,
            retry_factor: d.retry_factor,
            retry_cap: d.retry_cap,
            retry_jitter: d.retry_jitter,
            max_age: d.max_age,
            site_down_after: d.site_down_after,
            site_messages_per_second: d.site_messages_per_second,
            site_connections: d.site_connections,
        }
    }

    /// The `[[domain]]` rule of a recipient domain, if any.
    pub fn domain_rule(&self, domain: &str) -> Option<&PolicyRule> {
        self.domain.iter().find(|r| {
            r.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(domain))
        })
    }

    /// The policy of a destination: its domain's `[[domain]]` rule, else the
    /// first `[[mx]]` rule matching one of its MX hosts, else the defaults.
    pub fn policy(&self, domain: &str, mx_hosts: &[String]) -> Policy {
        let base = self.default_policy();
        if let Some(r) = self.domain_rule(domain) {
            return base.with(r);
        }
        let matches = |suffix: &str| {
            let suffix = suffix.trim_end_matches('.').to_ascii_lowercase();
            mx_hosts.iter().any(|h| {
                let h = h.trim_end_matches('.').to_ascii_lowercase();
                h.ends_with(&suffix) || format!(".{h}") == suffix
            })
        };
        match self
            .mx
            .iter()
            .find(|r| r.suffix.as_deref().is_some_and(matches))
        {
            Some(r) => base.with(r),
            None => base,
        }
    }

    /// Fixed next hop for a destination domain, if configured.
    pub fn route_for(&self, domain: &str) -> Option<Route> {
        self.routes
            .get(domain)
            .or_else(|| self.routes.get("*"))
            .and_then(|s| Route::parse(s).ok())
    }
}
