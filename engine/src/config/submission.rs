//! `[submission]`: SMTP submission listeners, TLS files, limits, trusted
//! networks, credentials (the users file and SES-style SMTP credentials)
//! and the drop directory. Checked at load; every error names its key.
//! Exposure: operator input.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::Deserialize;

/// How a listener uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerTls {
    /// Plain connection upgraded with STARTTLS (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Implicit,
}

/// One SMTP submission listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// `ip:port` to listen on.
    pub address: String,
    pub tls: ListenerTls,
}

/// SES-style SMTP credentials: the user name is the access key id and the
/// password is derived from the secret key as SES derives SMTP passwords.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SesCredential {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// The region the SMTP password was derived for.
    #[serde(default = "default_region")]
    pub region: String,
    /// Addresses and domains it may send as.
    pub identities: Vec<String>,
    /// Recipients per second (0: no limit).
    #[serde(default)]
    pub max_send_rate: f64,
    /// Recipients per rolling 24 hours (0: no limit).
    #[serde(default)]
    pub max_24_hour_send: u64,
}

fn default_region() -> String {
    "us-east-1".into()
}

/// The whole `[submission]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmissionConfig {
    /// SMTP listeners of `volley run` (none by default).
    #[serde(default)]
    pub listeners: Vec<Listener>,
    /// Certificate chain and private key (PEM) of the listeners.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Name in the greeting and EHLO reply.
    #[serde(default = "default_hostname")]
    pub hostname: String,
    /// Largest message accepted (SES: 40 MB).
    #[serde(
        default = "default_max_size",
        deserialize_with = "super::size::deserialize"
    )]
    pub max_message_size: u64,
    /// Most open submission connections (all listeners); more are
    /// answered `421` and closed.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Most recipients of one message (SES: 50).
    #[serde(default = "default_max_recipients")]
    pub max_recipients: u32,
    /// The users file managed by `volley user` (relative to the config).
    #[serde(default = "default_users")]
    pub users: PathBuf,
    #[serde(default)]
    pub ses_credentials: Vec<SesCredential>,
    /// Networks (CIDR) whose clients may submit without AUTH, as any
    /// sender. Empty by default.
    #[serde(default)]
    pub trusted_networks: Vec<String>,
    /// Development only: allow AUTH without TLS from loopback clients.
    #[serde(default)]
    pub insecure_plaintext_auth_on_loopback: bool,
    /// Failed logins from one address within `auth_failure_window` after
    /// which each reply is slowed (one second per failure beyond it).
    #[serde(default = "default_slow_after")]
    pub auth_failures_slow_after: u32,
    /// ... and after which the address is refused until the window passes.
    #[serde(default = "default_refuse_after")]
    pub auth_failures_refuse_after: u32,
    #[serde(default = "default_window", with = "super::duration")]
    pub auth_failure_window: std::time::Duration,
    /// The drop directory (`pickup/` in the spool directory by default).
    pub pickup: Option<PathBuf>,
}

fn default_hostname() -> String {
    "localhost".into()
}
fn default_max_size() -> u64 {
    40 << 20
}
fn default_max_connections() -> u32 {
    1000
}
fn default_max_recipients() -> u32 {
    50
}
fn default_users() -> PathBuf {
    PathBuf::from("users.toml")
}
fn default_slow_after() -> u32 {
    3
}
fn default_refuse_after() -> u32 {
    10
}
fn default_window() -> std::time::Duration {
    std::time::Duration::from_secs(600)
}

impl Default for SubmissionConfig {
    fn default() -> Self {
        SubmissionConfig {
            listeners: Vec::new(),
            cert: None,
            key: None,
            hostname: default_hostname(),
            max_message_size: default_max_size(),
            max_connections: default_max_connections(),
            max_recipients: default_max_recipients(),
            users: default_users(),
            ses_credentials: Vec::new(),
            trusted_networks: Vec::new(),
            insecure_plaintext_auth_on_loopback: false,
            auth_failures_slow_after: default_slow_after(),
            auth_failures_refuse_after: default_refuse_after(),
            auth_failure_window: default_window(),
            pickup: None,
        }
    }
}

/// A network in CIDR notation (`10.0.0.0/8`, `::1/128`; a bare address is
/// one host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    pub fn parse(s: &str) -> Result<Network, String> {
        let (a, p) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an address or CIDR network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() {
            max
        } else {
            p.trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: bad prefix length"))?
        };
        Ok(Network { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl SubmissionConfig {
    /// The trusted networks, parsed (checked at load).
    pub fn trusted(&self) -> Vec<Network> {
        self.trusted_networks
            .iter()
            .filter_map(|n| Network::parse(n).ok())
            .collect()
    }

    /// Checks the table; `Err((key, reason))`.
    pub fn check(&self) -> Result<(), (String, String)> {
        for (i, l) in self.listeners.iter().enumerate() {
            l.address.parse::<SocketAddr>().map_err(|_| {
                (
                    format!("submission.listeners[{i}].address"),
                    format!("{:?} is not ip:port", l.address),
                )
            })?;
        }
        if !self.listeners.is_empty() && (self.cert.is_none() || self.key.is_none()) {
            return Err((
                "submission.cert".into(),
                "listeners need `cert` and `key` (PEM files; `volley tls-cert` makes a self-signed pair for testing)".into(),
            ));
        }
        if self.hostname.is_empty() || self.hostname.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(("submission.hostname".into(), "must be a host name".into()));
        }
        if self.max_message_size < 1024 {
            return Err((
                "submission.max_message_size".into(),
                "must be at least 1 KB".into(),
            ));
        }
        if self.max_connections == 0 {
            return Err((
                "submission.max_connections".into(),
                "must be at least 1".into(),
            ));
        }
        if self.max_recipients == 0 {
            return Err((
                "submission.max_recipients".into(),
                "must be at least 1".into(),
            ));
        }
        for (i, n) in self.trusted_networks.iter().enumerate() {
            Network::parse(n).map_err(|r| (format!("submission.trusted_networks[{i}]"), r))?;
        }
        if self.auth_failures_refuse_after == 0 {
            return Err((
                "submission.auth_failures_refuse_after".into(),
                "must be at least 1".into(),
            ));
        }
        for (i, c) in self.ses_credentials.iter().enumerate() {
            let key = |k: &str| format!("submission.ses_credentials[{i}].{k}");
            if c.access_key_id.is_empty() || c.access_key_id.contains(char::is_whitespace) {
                return Err((key("access_key_id"), "must be a non-empty word".into()));
            }
            if c.secret_access_key.is_empty() {
                return Err((key("secret_access_key"), "must not be empty".into()));
            }
            if c.identities.is_empty() {
                return Err((
                    key("identities"),
                    "name at least one address or domain".into(),
                ));
            }
            if !(c.max_send_rate >= 0.0 && c.max_send_rate.is_finite()) {
                return Err((key("max_send_rate"), "must be 0 or more".into()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let n = Network::parse("10.1.0.0/16").unwrap();
        assert!(n.contains("10.1.200.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.0.9".parse().unwrap()));
        let h = Network::parse("::1").unwrap();
        assert!(h.contains("::1".parse().unwrap()));
        assert!(!h.contains("::2".parse().unwrap()));
        assert!(
            Network::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(Network::parse("10.0.0.0/33").is_err());
        assert!(Network::parse("example.com").is_err());
    }
}
