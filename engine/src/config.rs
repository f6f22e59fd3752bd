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
    #[serde(default)]
    pub domain: Vec<DomainConfig>,
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
    /// Default rate limit per destination domain.
    #[serde(default = "default_rate")]
    pub messages_per_second: f64,
    /// Default connection cap per destination domain.
    #[serde(default = "default_connections")]
    pub connections: u32,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainConfig {
    pub name: String,
    pub messages_per_second: Option<f64>,
    pub connections: Option<u32>,
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
        }
    }
}

mod duration {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!(
                "bad duration {s:?}: {e} (e.g. \"90s\", \"5m\", \"72h\")"
            ))
        })
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
        check_rate(d.messages_per_second).map_err(|r| bad("delivery.messages_per_second", r))?;
        check_conns(d.connections).map_err(|r| bad("delivery.connections", r))?;
        if !(1.0..=100.0).contains(&d.retry_factor) {
            return Err(bad(
                "delivery.retry_factor",
                "must be between 1 and 100".into(),
            ));
        }
        if d.retry_first.is_zero() {
            return Err(bad("delivery.retry_first", "must be more than zero".into()));
        }
        if d.helo.is_empty() || d.helo.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(bad("delivery.helo", "must be a host name".into()));
        }
        self.http
            .listen
            .parse::<std::net::SocketAddr>()
            .map_err(|e| bad("http.listen", format!("{:?}: {e}", self.http.listen)))?;
        for (domain, target) in &self.routes {
            Route::parse(target).map_err(|r| bad(&format!("routes.{domain}"), r))?;
        }
        for (i, k) in self.dkim.iter().enumerate() {
            if k.domain.is_empty() || k.selector.is_empty() {
                return Err(bad(
                    &format!("dkim[{i}]"),
                    "domain and selector must be set".into(),
                ));
            }
        }
        for (i, dc) in self.domain.iter().enumerate() {
            if let Some(r) = dc.messages_per_second {
                check_rate(r).map_err(|r| bad(&format!("domain[{i}].messages_per_second"), r))?;
            }
            if let Some(c) = dc.connections {
                check_conns(c).map_err(|r| bad(&format!("domain[{i}].connections"), r))?;
            }
        }
        Ok(())
    }

    /// Fixed next hop for a destination domain, if configured.
    pub fn route_for(&self, domain: &str) -> Option<Route> {
        self.routes
            .get(domain)
            .or_else(|| self.routes.get("*"))
            .and_then(|s| Route::parse(s).ok())
    }

    /// Rate limit and connection cap for a destination domain.
    pub fn limits_for(&self, domain: &str) -> (f64, u32) {
        let o = self
            .domain
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case(domain));
        (
            o.and_then(|o| o.messages_per_second)
                .unwrap_or(self.delivery.messages_per_second),
            o.and_then(|o| o.connections)
                .unwrap_or(self.delivery.connections),
        )
    }
}

fn check_rate(r: f64) -> Result<(), String> {
    if r.is_finite() && r > 0.0 && r <= 1_000_000.0 {
        Ok(())
    } else {
        Err(format!(
            "{r} is not a rate between 0 and 1000000 messages per second"
        ))
    }
}

fn check_conns(c: u32) -> Result<(), String> {
    if (1..=1000).contains(&c) {
        Ok(())
    } else {
        Err(format!("{c} is not between 1 and 1000"))
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
        assert_eq!(c.limits_for("A.test").1, 2);
        assert_eq!(c.limits_for("c.test").1, 4);
    }
}
