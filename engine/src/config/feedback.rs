//! `[feedback]`: the return path (VERP bounce domain and the keys its
//! tokens are signed with), the inbound listener for bounces and
//! complaints, which feedback suppresses addresses, and one-click
//! unsubscribe. Off until `bounce_domain` is set. Checked at load; every
//! error names its key. Exposure: operator input.

use std::net::SocketAddr;
use std::path::PathBuf;

use base64::Engine as _;
use serde::Deserialize;

/// One token signing key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// 1 to 8 lowercase letters or digits, carried in every token.
    pub id: String,
    /// The secret, base64 (at least 16 bytes decoded).
    pub secret: Option<String>,
    /// ... or a file holding it (base64), relative to the config.
    pub secret_file: Option<PathBuf>,
}

/// A key's id and its decoded secret.
pub type KeySecret = (String, Vec<u8>);

/// `[feedback.unsubscribe]`: Volley builds `List-Unsubscribe` itself.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnsubscribeConfig {
    /// `https://host[:port]` of the HTTP listener as recipients reach it;
    /// the URL is `<base_url>/unsubscribe/<token>`. Unset: no URL.
    pub base_url: Option<String>,
    /// Also a `mailto:` address on the bounce domain.
    #[serde(default)]
    pub mailto: bool,
}

/// The whole `[feedback]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackConfig {
    /// The domain of the return paths (its MX points at the inbound
    /// listener). Unset: mail goes out with the sender's address as return
    /// path and nothing below is used.
    pub bounce_domain: Option<String>,
    /// More domains the inbound listener takes mail for (feedback loop
    /// addresses registered with mailbox providers).
    #[serde(default)]
    pub feedback_domains: Vec<String>,
    /// Token keys, the signing one first; the others still verify.
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    /// `ip:port` addresses of the inbound SMTP listener in `volley run`.
    #[serde(default)]
    pub listeners: Vec<String>,
    /// Largest report accepted.
    #[serde(
        default = "default_max_size",
        deserialize_with = "super::size::deserialize"
    )]
    pub max_message_size: u64,
    /// Most open inbound connections.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Most messages one client address may deliver per minute.
    #[serde(default = "default_per_minute")]
    pub max_messages_per_minute: u32,
    /// Which feedback adds an address to the suppression list (SES
    /// `SuppressedReasons`): `BOUNCE` (permanent bounces), `COMPLAINT`.
    #[serde(default = "default_reasons")]
    pub suppressed_reasons: Vec<String>,
    #[serde(default)]
    pub unsubscribe: UnsubscribeConfig,
    /// How long the addresses of finished recipients stay on disk (the
    /// spool's `ledger/`) so that a report naming no readable address can
    /// still be attributed through its token.
    #[serde(default = "default_window", with = "super::duration")]
    pub attribution_window: std::time::Duration,
}

fn default_max_size() -> u64 {
    10 << 20
}
fn default_max_connections() -> u32 {
    200
}
fn default_per_minute() -> u32 {
    600
}
fn default_window() -> std::time::Duration {
    std::time::Duration::from_secs(14 * 86400)
}
fn default_reasons() -> Vec<String> {
    vec!["BOUNCE".into(), "COMPLAINT".into()]
}

impl Default for FeedbackConfig {
    fn default() -> Self {
        FeedbackConfig {
            bounce_domain: None,
            feedback_domains: Vec::new(),
            keys: Vec::new(),
            listeners: Vec::new(),
            max_message_size: default_max_size(),
            max_connections: default_max_connections(),
            max_messages_per_minute: default_per_minute(),
            suppressed_reasons: default_reasons(),
            unsubscribe: UnsubscribeConfig::default(),
            attribution_window: default_window(),
        }
    }
}

fn is_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl FeedbackConfig {
    /// Whether return paths, tokens and the inbound listener are on.
    pub fn enabled(&self) -> bool {
        self.bounce_domain.is_some()
    }

    /// Whether feedback of `reason` (`BOUNCE`, `COMPLAINT`) suppresses.
    pub fn suppresses(&self, reason: &str) -> bool {
        self.suppressed_reasons
            .iter()
            .any(|r| r.eq_ignore_ascii_case(reason))
    }

    /// The domains the inbound listener takes mail for (lowercase).
    pub fn domains(&self) -> Vec<String> {
        self.bounce_domain
            .iter()
            .chain(&self.feedback_domains)
            .map(|d| d.to_ascii_lowercase())
            .collect()
    }

    /// The keys' `(id, secret)` pairs, secrets read and decoded.
    pub fn key_secrets(&self) -> Result<Vec<KeySecret>, (String, String)> {
        let mut out = Vec::new();
        for (i, k) in self.keys.iter().enumerate() {
            let key = |n: &str| format!("feedback.keys[{i}].{n}");
            let text = match (&k.secret, &k.secret_file) {
                (Some(s), None) => s.clone(),
                (None, Some(f)) => std::fs::read_to_string(f)
                    .map_err(|e| (key("secret_file"), format!("{}: {e}", f.display())))?,
                _ => {
                    return Err((
                        key("secret"),
                        "give exactly one of `secret` and `secret_file`".into(),
                    ));
                }
            };
            let secret = base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|e| (key("secret"), format!("not base64: {e}")))?;
            out.push((k.id.clone(), secret));
        }
        Ok(out)
    }

    /// Checks the table; `Err((key, reason))`.
    pub fn check(&self) -> Result<(), (String, String)> {
        for r in &self.suppressed_reasons {
            if !r.eq_ignore_ascii_case("BOUNCE") && !r.eq_ignore_ascii_case("COMPLAINT") {
                return Err((
                    "feedback.suppressed_reasons".into(),
                    format!("{r:?}: BOUNCE or COMPLAINT"),
                ));
            }
        }
        let Some(domain) = &self.bounce_domain else {
            if !self.listeners.is_empty() || self.unsubscribe.base_url.is_some() {
                return Err((
                    "feedback.bounce_domain".into(),
                    "the listener and unsubscribe links need a bounce domain".into(),
                ));
            }
            return Ok(());
        };
        if !is_domain(domain) {
            return Err((
                "feedback.bounce_domain".into(),
                format!("{domain:?} is not a domain name"),
            ));
        }
        for (i, d) in self.feedback_domains.iter().enumerate() {
            if !is_domain(d) {
                return Err((
                    format!("feedback.feedback_domains[{i}]"),
                    format!("{d:?} is not a domain name"),
                ));
            }
        }
        if self.keys.is_empty() {
            return Err((
                "feedback.keys".into(),
                "a bounce domain needs at least one key (`volley feedback key` makes one)".into(),
            ));
        }
        let secrets = self.key_secrets()?;
        crate::feedback::token::Keys::new(&secrets).map_err(|r| ("feedback.keys".into(), r))?;
        for (i, l) in self.listeners.iter().enumerate() {
            l.parse::<SocketAddr>().map_err(|_| {
                (
                    format!("feedback.listeners[{i}]"),
                    format!("{l:?} is not ip:port"),
                )
            })?;
        }
        if self.max_message_size < 1024 {
            return Err((
                "feedback.max_message_size".into(),
                "must be at least 1 KB".into(),
            ));
        }
        if self.max_connections == 0 || self.max_messages_per_minute == 0 {
            return Err((
                "feedback.max_connections".into(),
                "limits must be at least 1".into(),
            ));
        }
        if let Some(u) = &self.unsubscribe.base_url {
            let ok = (u.starts_with("https://") || u.starts_with("http://"))
                && u.len() < 200
                && !u
                    .bytes()
                    .any(|b| !b.is_ascii_graphic() || b"<>\"".contains(&b));
            if !ok {
                return Err((
                    "feedback.unsubscribe.base_url".into(),
                    format!("{u:?} is not an http(s) URL"),
                ));
            }
        }
        Ok(())
    }
}
