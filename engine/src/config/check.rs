//! Validation of a parsed config: every error names its key (e.g.
//! `domain[2].retry_factor`) and the reason.

use std::path::Path;

use super::delivery::{self, PolicyRule};
use super::{Config, ConfigError, Route};

impl Config {
    pub(super) fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, reason: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            reason,
        };
        self.submission.check().map_err(|(k, r)| bad(&k, r))?;
        self.feedback.check().map_err(|(k, r)| bad(&k, r))?;
        self.api.check().map_err(|(k, r)| bad(&k, r))?;
        self.egress
            .check(&self.delivery.helo)
            .map_err(|(k, r)| bad(&k, r))?;
        for (name, set) in &self.configuration_sets {
            if let Some(p) = &set.pool
                && !self.egress.has_pool(p)
            {
                return Err(bad(
                    &format!("configuration_sets.{name}.pool"),
                    format!("no egress pool {p:?}"),
                ));
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, t) in self.http.admin.iter().enumerate() {
            let key = |k: &str| format!("http.admin[{i}].{k}");
            if t.name.is_empty() || t.name.chars().any(char::is_control) {
                return Err(bad(&key("name"), "must be a name".into()));
            }
            if !names.insert(t.name.as_str()) {
                return Err(bad(&key("name"), format!("{:?} is used twice", t.name)));
            }
            if t.digest().is_none() {
                return Err(bad(
                    &key("token_sha256"),
                    "must be the SHA-256 of the token as 64 hex digits".into(),
                ));
            }
        }
        let d = &self.delivery;
        // the defaults are checked like a rule that sets everything
        let defaults = PolicyRule {
            messages_per_second: Some(d.messages_per_second),
            connections: Some(d.connections),
            messages_per_connection: Some(d.messages_per_connection),
            recipients_per_transaction: Some(d.recipients_per_transaction),
            retry_first: Some(d.retry_first),
            retry_cap: Some(d.retry_cap),
            max_age: Some(d.max_age),
            retry_factor: Some(d.retry_factor),
            retry_jitter: Some(d.retry_jitter),
            site_down_after: Some(d.site_down_after),
            site_messages_per_second: d.site_messages_per_second,
            site_connections: d.site_connections,
            ..PolicyRule::default()
        };
        delivery::check_rule(&defaults).map_err(|(k, r)| bad(&format!("delivery.{k}"), r))?;
        d.timeouts
            .check()
            .map_err(|(k, r)| bad(&format!("delivery.timeouts.{k}"), r))?;
        if d.helo.is_empty() || d.helo.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(bad("delivery.helo", "must be a host name".into()));
        }
        if d.smtp_port == 0 {
            return Err(bad("delivery.smtp_port", "must be a port number".into()));
        }
        if d.max_connections > 1_000_000 {
            return Err(bad(
                "delivery.max_connections",
                "must be at most 1000000 (0: derived from the open-file limit)".into(),
            ));
        }
        self.http
            .listen
            .parse::<std::net::SocketAddr>()
            .map_err(|e| bad("http.listen", format!("{:?}: {e}", self.http.listen)))?;
        for (domain, target) in &self.routes {
            if domain != "*" && !dns_name(domain) {
                return Err(bad(
                    &format!("routes.{domain}"),
                    "the key must be a domain or \"*\"".into(),
                ));
            }
            Route::parse(target).map_err(|r| bad(&format!("routes.{domain}"), r))?;
        }
        for (i, ns) in self.dns.nameservers.iter().enumerate() {
            ns.parse::<std::net::SocketAddr>().map_err(|e| {
                bad(
                    &format!("dns.nameservers[{i}]"),
                    format!("{ns:?} is not ip:port: {e}"),
                )
            })?;
        }
        for (i, k) in self.dkim.iter().enumerate() {
            if !dns_name(&k.domain) || !dns_name(&k.selector) {
                return Err(bad(
                    &format!("dkim[{i}]"),
                    "domain and selector must be set, as DNS names (letters, digits, '-', '_', '.')"
                        .into(),
                ));
            }
        }
        for (i, r) in self.domain.iter().enumerate() {
            if r.name.as_deref().is_none_or(str::is_empty) || r.suffix.is_some() {
                return Err(bad(
                    &format!("domain[{i}]"),
                    "set `name` (the recipient domain), not `suffix`".into(),
                ));
            }
            delivery::check_rule(r).map_err(|(k, e)| bad(&format!("domain[{i}].{k}"), e))?;
        }
        for (i, r) in self.mx.iter().enumerate() {
            if r.suffix.as_deref().is_none_or(str::is_empty) || r.name.is_some() {
                return Err(bad(
                    &format!("mx[{i}]"),
                    "set `suffix` (an MX host suffix such as \".google.com\"), not `name`".into(),
                ));
            }
            delivery::check_rule(r).map_err(|(k, e)| bad(&format!("mx[{i}].{k}"), e))?;
        }
        self.check_sets().map_err(|(k, r)| bad(&k, r))?;
        if self.events.keep == 0 {
            return Err(bad("events.keep", "keep at least 1 rotated file".into()));
        }
        Ok(())
    }
}

/// A DNS name as the config may use it: 1 to 253 letters, digits, `-`,
/// `_` and `.` (no spaces or line breaks that could reach a header).
fn dns_name(s: &str) -> bool {
    (1..=253).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}
