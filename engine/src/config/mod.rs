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

pub mod delivery;

pub use delivery::{Policy, PolicyRule, TimeoutsConfig, TlsPolicy};

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
}

/// Where MX and address lookups go.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// `ip:port` of nameservers to ask instead of the system's resolvers.
    #[serde(default)]
    pub nameservers: Vec<String>,
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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// JSONL file receiving one SES-format event per line.
    #[serde(default = "default_jsonl")]
    pub jsonl: PathBuf,
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
        }
    }
}
impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            jsonl: default_jsonl(),
        }
    }
}
impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            helo: default_helo(),
            messages_per_second: default_rate(),
            connections: default_connections(),
            max_age: default_max_age(),
            retry_first: default_retry_first(),
            retry_factor: default_retry_factor(),
            retry_cap: default_retry_cap(),
            retry_jitter: default_retry_jitter(),
            messages_per_connection: default_per_connection(),
            recipients_per_transaction: default_rcpts(),
            tls: default_tls(),
            smtp_port: default_smtp_port(),
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
        for d in &mut c.dkim {
            abs(&mut d.key);
            d.domain = d.domain.to_ascii_lowercase();
        }
        c.check(path)?;
        Ok(c)
    }

    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, reason: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            reason,
        };
        let d = &self.delivery;
        // the defaults are checked like a rule that sets everything
        let defaults = PolicyRule {
            messages_per_second: Some(d.messages_per_second),
            connections: Some(d.connections),
            messages_per_connection: Some(d.messages_per_connection),
            recipients_per_transaction: Some(d.recipients_per_transaction),
            retry_first: Some(d.retry_first),
            retry_factor: Some(d.retry_factor),
            retry_jitter: Some(d.retry_jitter),
            ..PolicyRule::default()
        };
        delivery::check_rule(&defaults).map_err(|(k, r)| bad(&format!("delivery.{k}"), r))?;
        if d.helo.is_empty() || d.helo.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(bad("delivery.helo", "must be a host name".into()));
        }
        if d.smtp_port == 0 {
            return Err(bad("delivery.smtp_port", "must be a port number".into()));
        }
        self.http
            .listen
            .parse::<std::net::SocketAddr>()
            .map_err(|e| bad("http.listen", format!("{:?}: {e}", self.http.listen)))?;
        for (domain, target) in &self.routes {
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
            if k.domain.is_empty() || k.selector.is_empty() {
                return Err(bad(
                    &format!("dkim[{i}]"),
                    "domain and selector must be set".into(),
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
        Ok(())
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, ConfigError> {
        Config::parse(s, Path::new("test.toml"), Path::new("/base"))
    }

    #[test]
    fn defaults_and_relative_paths() {
        let c = parse("[spool]\ndir = \"sp\"\n").unwrap();
        assert_eq!(c.spool.dir, PathBuf::from("/base/sp"));
        assert_eq!(c.events.jsonl, PathBuf::from("/base/var/events.jsonl"));
        assert_eq!(c.delivery.max_age, Duration::from_secs(72 * 3600));
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = parse("[delivery]\nhelo = \"x\"\nspeed = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("speed"), "{e}");
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let e = parse("[delivery]\nconnections = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("delivery.connections"), "{e}");
        let e = parse("[routes]\n\"*\" = \"nohost\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("routes.*"), "{e}");
        let e = parse("[delivery]\nmax_age = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad duration"), "{e}");
        let e = parse("[[dkim]]\ndomain=\"a\"\nselector=\"s\"\nkey=\"k\"\nalgorithm=\"rsa\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("rsa-sha256"), "{e}");
    }

    #[test]
    fn routes_and_limits() {
        let c = parse(
            "[routes]\n\"*\" = \"127.0.0.1:2525\"\n\"b.test\" = \"[::1]:25\"\n[[domain]]\nname = \"a.test\"\nconnections = 2\n",
        )
        .unwrap();
        assert_eq!(c.route_for("x.test").unwrap().port, 2525);
        assert_eq!(c.route_for("b.test").unwrap().host, "::1");
        assert_eq!(c.policy("A.test", &[]).connections, 2);
        assert_eq!(c.policy("c.test", &[]).connections, 4);
    }

    #[test]
    fn policy_by_domain_then_mx_suffix_then_defaults() {
        let c = parse(concat!(
            "[delivery]\nmessages_per_second = 50\ntls = \"required\"\n",
            "[[domain]]\nname = \"gmail.com\"\nmessages_per_second = 5\n",
            "[[mx]]\nsuffix = \".google.com\"\nconnections = 9\nretry_first = \"2m\"\nmax_age = \"1d\"\n",
            "[[mx]]\nsuffix = \"google.com\"\nconnections = 1\n",
        ))
        .unwrap();
        let mx = vec!["aspmx.l.google.com".to_string()];
        // a domain rule wins over an MX rule, and keeps unset values default
        let p = c.policy("gmail.com", &mx);
        assert_eq!((p.messages_per_second, p.connections), (5.0, 4));
        assert_eq!(p.tls, TlsPolicy::Required);
        // the first matching MX rule applies
        let p = c.policy("example.org", &mx);
        assert_eq!(p.connections, 9);
        assert_eq!(p.retry_first, Duration::from_secs(120));
        assert_eq!(p.max_age, Duration::from_secs(24 * 3600));
        assert_eq!(p.messages_per_second, 50.0);
        // a suffix matches at a label boundary or the whole name only when
        // written with the dot
        assert_eq!(
            c.policy("x.test", &["mx.notgoogle.com".into()]).connections,
            1
        );
        assert_eq!(
            c.policy("x.test", &["mx.other.net".into()]),
            c.default_policy()
        );
    }

    #[test]
    fn shipped_config_documents_the_defaults() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../config.toml"));
        let shipped = Config::load(path).expect("the shipped config.toml parses");
        let defaults = parse("").unwrap();
        assert_eq!(shipped.default_policy(), defaults.default_policy());
        let (a, b) = (&shipped.delivery, &defaults.delivery);
        assert_eq!(a.throttle_patterns, b.throttle_patterns);
        assert_eq!(a.smtp_port, b.smtp_port);
        assert_eq!(format!("{:?}", a.timeouts), format!("{:?}", b.timeouts));
        assert_eq!(shipped.http.listen, defaults.http.listen);
        assert!(shipped.dns.nameservers.is_empty());
    }

    #[test]
    fn policy_rules_are_checked() {
        let e = parse("[[mx]]\nname = \"a\"\n").unwrap_err().to_string();
        assert!(e.contains("mx[0]"), "{e}");
        let e = parse("[[domain]]\nname = \"a\"\nretry_jitter = 2\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("domain[0].retry_jitter"), "{e}");
        let e = parse("[[domain]]\nname = \"a\"\ntls = \"sometimes\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("tls"), "{e}");
        let e = parse("[dns]\nnameservers = [\"localhost\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("dns.nameservers[0]"), "{e}");
        let e = parse("[delivery.timeouts]\nrcpt = \"forever\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad duration"), "{e}");
    }
}
