//! `[api]`: the SES v2 HTTP API listener of `volley run` (off until
//! `listen` is set). Requests are signed (AWS Signature Version 4) with the
//! `[[submission.ses_credentials]]` keys, which also give the SMTP
//! passwords: one key, one principal, one quota, whichever way it sends.
//! Checked at load; every error names its key. Exposure: operator input.

use std::path::PathBuf;

use serde::Deserialize;

/// The `[api]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// `ip:port` to listen on (none: no API).
    pub listen: Option<String>,
    /// Certificate chain and private key (PEM): HTTPS when both are set.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Largest request body accepted (a 40 MB raw message is ~54 MB in
    /// base64 inside JSON).
    #[serde(
        default = "default_max_request",
        deserialize_with = "super::size::deserialize"
    )]
    pub max_request_size: u64,
    /// How far a request's `X-Amz-Date` may be from this machine's clock
    /// (AWS: 15 minutes).
    #[serde(default = "default_skew", with = "super::duration")]
    pub max_clock_skew: std::time::Duration,
    /// Most requests handled at once; more wait for a place.
    #[serde(default = "default_concurrency")]
    pub max_concurrent_requests: u32,
}

impl Default for ApiConfig {
    fn default() -> ApiConfig {
        ApiConfig {
            listen: None,
            cert: None,
            key: None,
            max_request_size: default_max_request(),
            max_clock_skew: default_skew(),
            max_concurrent_requests: default_concurrency(),
        }
    }
}

fn default_max_request() -> u64 {
    60 << 20
}
fn default_skew() -> std::time::Duration {
    std::time::Duration::from_secs(15 * 60)
}
fn default_concurrency() -> u32 {
    1024
}

impl ApiConfig {
    /// Checks the table; the error names the key.
    pub fn check(&self) -> Result<(), (String, String)> {
        let bad = |k: &str, r: String| Err((format!("api.{k}"), r));
        if let Some(l) = &self.listen
            && let Err(e) = l.parse::<std::net::SocketAddr>()
        {
            return bad("listen", format!("{l:?}: {e}"));
        }
        if self.cert.is_some() != self.key.is_some() {
            return bad("cert", "cert and key go together (HTTPS needs both)".into());
        }
        if self.max_request_size < 1024 {
            return bad("max_request_size", "at least 1KB".into());
        }
        if self.max_concurrent_requests == 0 {
            return bad("max_concurrent_requests", "at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_name_their_key() {
        let ok = ApiConfig {
            listen: Some("127.0.0.1:8787".into()),
            ..ApiConfig::default()
        };
        assert!(ok.check().is_ok());
        let bad = ApiConfig {
            listen: Some("nowhere".into()),
            ..ApiConfig::default()
        };
        assert_eq!(bad.check().unwrap_err().0, "api.listen");
        let half = ApiConfig {
            cert: Some("c.pem".into()),
            ..ok.clone()
        };
        assert!(half.check().unwrap_err().1.contains("cert and key"));
    }
}
