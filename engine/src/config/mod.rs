//! The service configuration (`config.toml`): serde model, defaults, and
//! checks done once at load.
//!
//! Unknown keys are errors that name the key and line (serde
//! `deny_unknown_fields` + toml's positioned errors). Relative paths are
//! resolved against the directory of the config file. Bounds are checked here
//! so that the mechanisms can take the values as given. Exposure: the file is
//! operator input; any content gives a clear error, never a panic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub mod api;
mod check;
pub mod delivery;
pub mod destinations;
pub mod egress;
pub mod feedback;
pub mod mta_sts;
mod select;
pub mod sets;
pub(crate) mod size;
pub mod submission;

pub use destinations::{Destination, EventFormat, EventType, SnsConfig};
pub use feedback::FeedbackConfig;
pub use sets::ConfigurationSet;
pub use submission::SubmissionConfig;

pub use delivery::{Policy, PolicyRule, TimeoutsConfig, TlsPolicy};
pub use select::Route;

/// Errors loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {path}: `{key}`: {reason}")]
    Invalid {
        path: PathBuf,
        key: String,
        reason: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub spool: SpoolConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub events: EventsConfig,
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// Destination domain (or `*`) to a fixed `host:port`.
    #[serde(default)]
    pub routes: BTreeMap<String, String>,
    #[serde(default)]
    pub dkim: Vec<DkimConfig>,
    /// Per-domain policy overrides (`name` = the recipient domain).
    #[serde(default)]
    pub domain: Vec<PolicyRule>,
    /// Policy overrides by MX host suffix (`suffix` = e.g. `.google.com`).
    #[serde(default)]
    pub mx: Vec<PolicyRule>,
    #[serde(default)]
    pub dns: DnsConfig,
    /// Configuration sets by name (SES); mail names one or gets
    /// `[events] default_configuration_set`.
    #[serde(default)]
    pub configuration_sets: BTreeMap<String, ConfigurationSet>,
    /// SNS-format webhook messages: region, links, signing key.
    #[serde(default)]
    pub sns: SnsConfig,
    /// SMTP submission, credentials and the drop directory.
    #[serde(default)]
    pub submission: SubmissionConfig,
    /// Return paths, the inbound listener for bounces and complaints,
    /// suppression reasons, one-click unsubscribe.
    #[serde(default)]
    pub feedback: FeedbackConfig,
    /// The SES v2 HTTP API listener.
    #[serde(default)]
    pub api: api::ApiConfig,
    /// Local addresses mail leaves from, and their pools.
    #[serde(default)]
    pub egress: egress::EgressConfig,
    /// MTA-STS policies and TLS reports.
    #[serde(default)]
    pub mta_sts: mta_sts::MtaStsConfig,
}

/// Where MX and address lookups go.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// `ip:port` of nameservers to ask instead of the system's resolvers.
    #[serde(default)]
    pub nameservers: Vec<String>,
    /// Accept MX hosts at internal addresses: loopback, private, shared,
    /// link-local and the other special-purpose blocks (refused by
    /// default: a hostile domain could point the engine at services on its
    /// own machine or network).
    #[serde(default)]
    pub allow_internal: bool,
    /// How long one attempt at a lookup waits for an answer (two attempts
    /// per lookup); default 2 s with `nameservers`, else the system's
    /// (`options timeout:` in resolv.conf, 5 s by default).
    #[serde(default, with = "duration::option")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    #[serde(default = "default_spool_dir")]
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Bearer tokens of the admin HTTP API (`/admin/queue/...`; none: the
    /// API is off and its paths are 404).
    #[serde(default)]
    pub admin: Vec<AdminToken>,
}

/// One admin HTTP API token: its name (in the action log) and the SHA-256
/// of the token (64 hex digits; the token itself is not stored).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminToken {
    pub name: String,
    pub token_sha256: String,
}

impl AdminToken {
    /// The digest as bytes (checked at load).
    pub fn digest(&self) -> Option<[u8; 32]> {
        let h = self.token_sha256.as_bytes();
        if h.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in h.chunks(2).enumerate() {
            let s = std::str::from_utf8(pair).ok()?;
            out[i] = u8::from_str_radix(s, 16).ok()?;
        }
        Some(out)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// JSONL file receiving one SES-format event per line.
    #[serde(default = "default_jsonl")]
    pub jsonl: PathBuf,
    /// Events' `mail.sendingAccountId`: 12 digits, as an AWS account id.
    #[serde(default = "default_account_id", deserialize_with = "account_id")]
    pub account_id: String,
    /// Events' `mail.sourceArn`: an ARN in which `{account_id}`, `{domain}`
    /// (the From domain) and `{address}` (the From address) are filled in.
    #[serde(default = "default_identity_arn", deserialize_with = "identity_arn")]
    pub identity_arn: String,
    /// The configuration set of mail that names none (one of
    /// `[configuration_sets]`); none by default.
    #[serde(default)]
    pub default_configuration_set: Option<String>,
    /// Rotate the JSONL file once it has this many bytes (0: never).
    #[serde(default, with = "size")]
    pub rotate_bytes: u64,
    /// Rotated files kept (the oldest beyond go).
    #[serde(default = "default_keep")]
    pub keep: u32,
}

pub(crate) fn default_keep() -> u32 {
    10
}

fn account_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if s.len() != 12 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(serde::de::Error::custom(format!(
            "account_id {s:?} must be 12 digits (like an AWS account id)"
        )));
    }
    Ok(s)
}

fn identity_arn<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if !s.starts_with("arn:")
        || s.split(':').count() < 6
        || !s.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(serde::de::Error::custom(format!(
            "identity_arn {s:?} must be an ARN (arn:partition:service:region:account:resource), e.g. \"arn:aws:ses:us-east-1:{{account_id}}:identity/{{domain}}\""
        )));
    }
    Ok(s)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Name sent in EHLO.
    #[serde(default = "default_helo")]
    pub helo: String,
    /// Default rate limit per destination.
    #[serde(default = "default_rate")]
    pub messages_per_second: f64,
    /// Default connection cap per destination.
    #[serde(default = "default_connections")]
    pub connections: u32,
    /// Most messages a second to one site from all egress sources together
    /// (each source × site also has `messages_per_second`); none by default.
    #[serde(default)]
    pub site_messages_per_second: Option<f64>,
    /// Most connections to one site from all egress sources together (each
    /// source × site also has `connections`); none by default.
    #[serde(default)]
    pub site_connections: Option<u32>,
    /// Close a connection after this many messages (and open a new one).
    #[serde(default = "default_per_connection")]
    pub messages_per_connection: u32,
    /// Most recipients in one transaction (non-personalized campaigns).
    #[serde(default = "default_rcpts")]
    pub recipients_per_transaction: u32,
    /// `required`, `opportunistic` or `disabled`.
    #[serde(default = "default_tls")]
    pub tls: TlsPolicy,
    /// Give up (Transient bounce) on recipients older than this.
    #[serde(default = "default_max_age", with = "duration")]
    pub max_age: Duration,
    /// First retry delay after a temporary failure.
    #[serde(default = "default_retry_first", with = "duration")]
    pub retry_first: Duration,
    /// Each further retry waits this many times longer ...
    #[serde(default = "default_retry_factor")]
    pub retry_factor: f64,
    /// ... up to this delay.
    #[serde(default = "default_retry_cap", with = "duration")]
    pub retry_cap: Duration,
    /// Random spread of each retry delay (0.1 = ±10%).
    #[serde(default = "default_retry_jitter")]
    pub retry_jitter: f64,
    /// A site whose sessions fail to open this many times in a row is
    /// down: its queue is deferred at once and it is probed on the retry
    /// schedule.
    #[serde(default = "default_site_down_after")]
    pub site_down_after: u32,
    /// Outbound connections of all sites together (each costs a file
    /// descriptor); 0: derived from the open-file limit.
    #[serde(default)]
    pub max_connections: u32,
    /// Port of MX hosts (25; other values are for test labs).
    #[serde(default = "default_smtp_port")]
    pub smtp_port: u16,
    /// Temporary replies containing one of these (case-insensitive) slow the
    /// destination down, like 421 and 4.7.x replies do.
    #[serde(default = "delivery::default_throttle_patterns")]
    pub throttle_patterns: Vec<String>,
    #[serde(default)]
    pub timeouts: TimeoutsConfig,
}

/// Algorithm of a DKIM key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum DkimAlgorithm {
    #[serde(rename = "rsa-sha256")]
    RsaSha256,
    #[serde(rename = "ed25519-sha256")]
    Ed25519Sha256,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimConfig {
    pub domain: String,
    pub selector: String,
    pub key: PathBuf,
    pub algorithm: DkimAlgorithm,
}

fn default_spool_dir() -> PathBuf {
    "var/spool".into()
}
fn default_listen() -> String {
    "127.0.0.1:8025".into()
}
fn default_jsonl() -> PathBuf {
    "var/events.jsonl".into()
}
fn default_account_id() -> String {
    "000000000000".into()
}
fn default_identity_arn() -> String {
    "arn:aws:ses:us-east-1:{account_id}:identity/{domain}".into()
}
fn default_helo() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
fn default_rate() -> f64 {
    100.0
}
fn default_connections() -> u32 {
    4
}
fn default_max_age() -> Duration {
    Duration::from_secs(72 * 3600)
}
fn default_retry_first() -> Duration {
    Duration::from_secs(60)
}
fn default_retry_factor() -> f64 {
    2.0
}
fn default_retry_cap() -> Duration {
    Duration::from_secs(3600)
}
fn default_retry_jitter() -> f64 {
    0.1
}
fn default_site_down_after() -> u32 {
    3
}
fn default_per_connection() -> u32 {
    1000
}
fn default_rcpts() -> u32 {
    100
}
fn default_tls() -> TlsPolicy {
    TlsPolicy::Opportunistic
}
fn default_smtp_port() -> u16 {
    25
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            dir: default_spool_dir(),
        }
    }
}
impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_listen(),
            admin: Vec::new(),
        }
    }
}
impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            jsonl: default_jsonl(),
            account_id: default_account_id(),
            identity_arn: default_identity_arn(),
            default_configuration_set: None,
            rotate_bytes: 0,
            keep: default_keep(),
        }
    }
}
impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            helo: default_helo(),
            messages_per_second: default_rate(),
            connections: default_connections(),
            site_messages_per_second: None,
            site_connections: None,
            max_age: default_max_age(),
            retry_first: default_retry_first(),
            retry_factor: default_retry_factor(),
            retry_cap: default_retry_cap(),
            retry_jitter: default_retry_jitter(),
            site_down_after: default_site_down_after(),
            messages_per_connection: default_per_connection(),
            recipients_per_transaction: default_rcpts(),
            tls: default_tls(),
            smtp_port: default_smtp_port(),
            max_connections: 0,
            throttle_patterns: delivery::default_throttle_patterns(),
            timeouts: TimeoutsConfig::default(),
        }
    }
}

pub(crate) mod duration {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    fn parse<E: serde::de::Error>(s: &str) -> Result<Duration, E> {
        humantime::parse_duration(s).map_err(|e| {
            E::custom(format!(
                "bad duration {s:?}: {e} (e.g. \"90s\", \"5m\", \"72h\")"
            ))
        })
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        parse(&String::deserialize(d)?)
    }

    pub mod option {
        use super::*;

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|s| parse(&s))
                .transpose()
        }
    }
}

impl Config {
    /// Loads, resolves relative paths and checks a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, path, base)
    }

    /// Parses config text; `path` is used in errors, `base` for relative paths.
    pub fn parse(text: &str, path: &Path, base: &Path) -> Result<Config, ConfigError> {
        let mut c: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        abs(&mut c.spool.dir);
        abs(&mut c.events.jsonl);
        if let Some(p) = c.mta_sts.reports_dir.as_mut() {
            abs(p);
        }
        if let Some(p) = c.sns.signing_key.as_mut() {
            abs(p);
        }
        if let Some(p) = c.sns.signing_cert.as_mut() {
            abs(p);
        }
        let dead_letters = c.events.jsonl.parent().unwrap_or(base).join("dead-letter");
        for (set, s) in &mut c.configuration_sets {
            for d in &mut s.destinations {
                if let Some(j) = d.jsonl.as_mut() {
                    abs(&mut j.path);
                }
                let default = dead_letters.join(format!("{set}.{}.jsonl", d.name));
                let dead_letter = match (d.webhook.as_mut(), d.amqp.as_mut()) {
                    (Some(w), _) => Some(&mut w.dead_letter),
                    (None, Some(a)) => Some(&mut a.dead_letter),
                    (None, None) => None,
                };
                if let Some(p) = dead_letter {
                    abs(p.get_or_insert(default));
                }
            }
        }
        for p in [
            &mut c.submission.cert,
            &mut c.submission.key,
            &mut c.submission.pickup,
        ]
        .into_iter()
        .flatten()
        {
            abs(p);
        }
        abs(&mut c.submission.users);
        for k in &mut c.feedback.keys {
            if let Some(f) = &mut k.secret_file {
                abs(f);
            }
        }
        for d in &mut c.dkim {
            abs(&mut d.key);
            d.domain = d.domain.to_ascii_lowercase();
        }
        for p in &mut c.delivery.throttle_patterns {
            *p = p.to_ascii_lowercase();
        }
        // route keys match lower-case recipient domains
        c.routes = std::mem::take(&mut c.routes)
            .into_iter()
            .map(|(k, v)| (k.trim_end_matches('.').to_ascii_lowercase(), v))
            .collect();
        c.check(path)?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests;
