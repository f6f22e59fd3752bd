//! The `[delivery]` section and per-destination policies: defaults, the
//! `[[domain]]` (by recipient domain) and `[[mx]]` (by MX host suffix) rules
//! that override them, per-phase timeouts, and throttle-reply patterns.
//!
//! [`Config::policy`](super::Config::policy) resolves the policy of a
//! destination: a `[[domain]]` rule for the domain, else the first `[[mx]]`
//! rule whose suffix one of its MX hosts ends with, else the defaults. Pure.

use std::time::Duration;

use serde::Deserialize;

use super::duration;

/// TLS policy of a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsPolicy {
    /// STARTTLS must succeed with a certificate that verifies against the
    /// system roots for the host name connected to, or delivery is
    /// deferred.
    Verify,
    /// STARTTLS must succeed (any certificate), or delivery is deferred.
    Required,
    /// STARTTLS when offered; plain text when it is not, or fails.
    Opportunistic,
    /// Never STARTTLS.
    Disabled,
}

/// Per-phase SMTP timeouts (RFC 5321 §4.5.3.2 defaults; connect 30 s).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsConfig {
    #[serde(default = "d30s", with = "duration")]
    pub connect: Duration,
    #[serde(default = "d5m", with = "duration")]
    pub greeting: Duration,
    #[serde(default = "d5m", with = "duration")]
    pub ehlo: Duration,
    #[serde(default = "d2m", with = "duration")]
    pub starttls: Duration,
    #[serde(default = "d5m", with = "duration")]
    pub mail: Duration,
    #[serde(default = "d5m", with = "duration")]
    pub rcpt: Duration,
    #[serde(default = "d2m", with = "duration")]
    pub data: Duration,
    #[serde(default = "d10m", with = "duration")]
    pub data_end: Duration,
    /// Close a connection after this long without a message to send.
    #[serde(default = "d5s", with = "duration")]
    pub idle: Duration,
}

fn d5s() -> Duration {
    Duration::from_secs(5)
}
fn d30s() -> Duration {
    Duration::from_secs(30)
}
fn d2m() -> Duration {
    Duration::from_secs(120)
}
fn d5m() -> Duration {
    Duration::from_secs(300)
}
fn d10m() -> Duration {
    Duration::from_secs(600)
}

impl TimeoutsConfig {
    /// Every timeout between 1 ms and one hour; returns the offending key
    /// (under `delivery.timeouts`) and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        for (key, d) in [
            ("connect", self.connect),
            ("greeting", self.greeting),
            ("ehlo", self.ehlo),
            ("starttls", self.starttls),
            ("mail", self.mail),
            ("rcpt", self.rcpt),
            ("data", self.data),
            ("data_end", self.data_end),
            ("idle", self.idle),
        ] {
            if d < Duration::from_millis(1) || d > Duration::from_secs(3600) {
                return Err((key, format!("{d:?} is not between 1ms and 1h")));
            }
        }
        Ok(())
    }
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        TimeoutsConfig {
            connect: d30s(),
            greeting: d5m(),
            ehlo: d5m(),
            starttls: d2m(),
            mail: d5m(),
            rcpt: d5m(),
            data: d2m(),
            data_end: d10m(),
            idle: d5s(),
        }
    }
}

/// Overrides a rule may set (unset fields keep the defaults).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRule {
    /// `[[domain]]`: the recipient domain this rule is for.
    pub name: Option<String>,
    /// `[[mx]]`: an MX host suffix such as `.google.com`.
    pub suffix: Option<String>,
    pub messages_per_second: Option<f64>,
    pub connections: Option<u32>,
    pub messages_per_connection: Option<u32>,
    pub recipients_per_transaction: Option<u32>,
    pub tls: Option<TlsPolicy>,
    #[serde(default, with = "duration::option")]
    pub retry_first: Option<Duration>,
    pub retry_factor: Option<f64>,
    #[serde(default, with = "duration::option")]
    pub retry_cap: Option<Duration>,
    pub retry_jitter: Option<f64>,
    #[serde(default, with = "duration::option")]
    pub max_age: Option<Duration>,
    pub site_down_after: Option<u32>,
    /// Most messages a second to the site from all egress sources together.
    pub site_messages_per_second: Option<f64>,
    /// Most connections to the site from all egress sources together.
    pub site_connections: Option<u32>,
}

/// The resolved policy of one destination.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub messages_per_second: f64,
    pub connections: u32,
    pub messages_per_connection: u32,
    pub recipients_per_transaction: u32,
    pub tls: TlsPolicy,
    pub retry_first: Duration,
    pub retry_factor: f64,
    pub retry_cap: Duration,
    pub retry_jitter: f64,
    pub max_age: Duration,
    /// Failed attempts in a row to open a session (with none open) after
    /// which the site is down (see `delivery::health`).
    pub site_down_after: u32,
    /// Caps of the site's sum over its egress sources (`None`: none but
    /// each source's `messages_per_second` and `connections`).
    pub site_messages_per_second: Option<f64>,
    pub site_connections: Option<u32>,
}

impl Policy {
    /// These values with a rule's overrides applied.
    pub fn with(self, r: &PolicyRule) -> Policy {
        Policy {
            messages_per_second: r.messages_per_second.unwrap_or(self.messages_per_second),
            connections: r.connections.unwrap_or(self.connections),
            messages_per_connection: r
                .messages_per_connection
                .unwrap_or(self.messages_per_connection),
            recipients_per_transaction: r
                .recipients_per_transaction
                .unwrap_or(self.recipients_per_transaction),
            tls: r.tls.unwrap_or(self.tls),
            retry_first: r.retry_first.unwrap_or(self.retry_first),
            retry_factor: r.retry_factor.unwrap_or(self.retry_factor),
            retry_cap: r.retry_cap.unwrap_or(self.retry_cap),
            retry_jitter: r.retry_jitter.unwrap_or(self.retry_jitter),
            max_age: r.max_age.unwrap_or(self.max_age),
            site_down_after: r.site_down_after.unwrap_or(self.site_down_after),
            site_messages_per_second: r.site_messages_per_second.or(self.site_messages_per_second),
            site_connections: r.site_connections.or(self.site_connections),
        }
    }
}

/// Reply texts that signal throttling besides 421 and 4.7.x, matched
/// case-insensitively anywhere in a temporary reply. (Not "try again
/// later": greylisting says that about one recipient, not the site's pace.)
pub fn default_throttle_patterns() -> Vec<String> {
    [
        "too many connections",
        "too many concurrent",
        "too many messages",
        "rate limit",
        "throttl",
        "slow down",
    ]
    .map(String::from)
    .to_vec()
}

/// Checks a rule's values; returns the problem and the key it is in.
/// The longest retry delay or maximum age accepted.
const LONGEST: Duration = Duration::from_secs(365 * 24 * 3600);

pub fn check_rule(r: &PolicyRule) -> Result<(), (&'static str, String)> {
    if let Some(v) = r.messages_per_second {
        check_rate(v).map_err(|e| ("messages_per_second", e))?;
    }
    if let Some(v) = r.connections {
        check_range(v, 1, 1000).map_err(|e| ("connections", e))?;
    }
    if let Some(v) = r.messages_per_connection {
        check_range(v, 1, 1_000_000).map_err(|e| ("messages_per_connection", e))?;
    }
    if let Some(v) = r.recipients_per_transaction {
        check_range(v, 1, 1000).map_err(|e| ("recipients_per_transaction", e))?;
    }
    if let Some(v) = r.site_messages_per_second {
        check_rate(v).map_err(|e| ("site_messages_per_second", e))?;
    }
    if let Some(v) = r.site_connections {
        check_range(v, 1, 100_000).map_err(|e| ("site_connections", e))?;
    }
    if let Some(v) = r.site_down_after {
        check_range(v, 1, 1000).map_err(|e| ("site_down_after", e))?;
    }
    if let Some(v) = r.retry_factor
        && !(1.0..=100.0).contains(&v)
    {
        return Err(("retry_factor", "must be between 1 and 100".into()));
    }
    if let Some(v) = r.retry_jitter
        && !(0.0..=1.0).contains(&v)
    {
        return Err(("retry_jitter", "must be between 0 and 1".into()));
    }
    if r.retry_first.is_some_and(|d| d.is_zero()) {
        return Err(("retry_first", "must be more than zero".into()));
    }
    for (key, d) in [
        ("retry_first", r.retry_first),
        ("retry_cap", r.retry_cap),
        ("max_age", r.max_age),
    ] {
        if d.is_some_and(|d| d > LONGEST) {
            return Err((key, "must be at most 365 days".into()));
        }
    }
    Ok(())
}

pub fn check_rate(r: f64) -> Result<(), String> {
    if r.is_finite() && r > 0.0 && r <= 1_000_000.0 {
        Ok(())
    } else {
        Err(format!(
            "{r} is not a rate between 0 and 1000000 messages per second"
        ))
    }
}

pub fn check_range(v: u32, lo: u32, hi: u32) -> Result<(), String> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(format!("{v} is not between {lo} and {hi}"))
    }
}
