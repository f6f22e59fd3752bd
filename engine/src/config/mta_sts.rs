//! `[mta_sts]`: MTA-STS (RFC 8461) for MX delivery and TLS reporting (RFC
//! 8460). On by default: a recipient domain that publishes a policy in
//! `enforce` mode gets mail only over TLS verified for an MX host the
//! policy lists; one in `testing` mode gets it as without a policy, and
//! what would have failed is reported. Domains sent through `[routes]` or
//! a reroute are not looked up (the operator chose their next hop). Pure.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::duration;

/// The `[mta_sts]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MtaStsConfig {
    /// Look policies up and apply them (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The port policy hosts are fetched from (RFC 8461: 443; another
    /// only for tests).
    #[serde(default = "https")]
    pub https_port: u16,
    /// How long one policy fetch may take (default 20 s).
    #[serde(default = "d20s", with = "duration")]
    pub fetch_timeout: Duration,
    /// Where TLS reports go (default `<spool>/tls-reports`; a relative
    /// path is relative to the config file).
    #[serde(default)]
    pub reports_dir: Option<PathBuf>,
    /// `organization-name` of the reports (default `[delivery] helo`).
    #[serde(default)]
    pub organization: Option<String>,
    /// `contact-info` of the reports (default `postmaster@<organization>`).
    #[serde(default)]
    pub contact: Option<String>,
}

impl Default for MtaStsConfig {
    fn default() -> Self {
        MtaStsConfig {
            enabled: true,
            https_port: https(),
            fetch_timeout: d20s(),
            reports_dir: None,
            organization: None,
            contact: None,
        }
    }
}

fn yes() -> bool {
    true
}
fn https() -> u16 {
    443
}
fn d20s() -> Duration {
    Duration::from_secs(20)
}
