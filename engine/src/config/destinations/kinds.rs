//! The kinds of event destinations (`jsonl`, `webhook`, `amqp` tables),
//! their body formats, and `[sns]`: serde models, defaults and the checks
//! of each. Pure.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// A JSONL file of the destination's events.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct JsonlDestination {
    pub path: PathBuf,
    /// Rotate the file once it has this many bytes (0: never).
    #[serde(default, with = "crate::config::size")]
    pub rotate_bytes: u64,
    /// Rotated files kept.
    #[serde(default = "crate::config::default_keep")]
    pub keep: u32,
}

/// The body of a webhook request or broker message.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EventFormat {
    /// The SNS HTTP/S notification (signed), after the subscription is
    /// confirmed.
    #[default]
    Sns,
    /// The SES event JSON alone (SNS raw message delivery).
    Raw,
}

/// HTTP(S) POST of each event.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookDestination {
    /// `http://` or `https://` URL.
    pub url: String,
    #[serde(default)]
    pub format: EventFormat,
    /// Extra request headers (e.g. `Authorization = "Bearer ..."`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Requests in flight at once (each on its own kept-alive connection).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Connecting, sending and reading the answer of one request.
    #[serde(default = "default_timeout", with = "crate::config::duration")]
    pub timeout: Duration,
    /// The `TopicArn` of `sns` messages; default
    /// `arn:aws:sns:{region}:{account_id}:{set}` (`[sns] region`).
    #[serde(default)]
    pub topic_arn: Option<String>,
    /// Where events the endpoint refuses for good go (JSONL with the
    /// reason); default `dead-letter/SET.NAME.jsonl` beside `[events] jsonl`.
    #[serde(default)]
    pub dead_letter: Option<PathBuf>,
}

fn default_concurrency() -> usize {
    8
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl WebhookDestination {
    pub(super) fn check(&self) -> Result<(), (String, String)> {
        let scheme_ok = self.url.starts_with("http://") || self.url.starts_with("https://");
        if !scheme_ok || self.url.parse::<axum::http::Uri>().is_err() {
            return Err((
                "url".into(),
                format!("{:?} is not an http:// or https:// URL", self.url),
            ));
        }
        if !(1..=256).contains(&self.concurrency) {
            return Err(("concurrency".into(), "must be 1 to 256".into()));
        }
        if self.timeout.is_zero() {
            return Err(("timeout".into(), "must be more than 0".into()));
        }
        for (k, v) in &self.headers {
            if axum::http::HeaderName::try_from(k.as_str()).is_err()
                || axum::http::HeaderValue::try_from(v.as_str()).is_err()
            {
                return Err((format!("headers.{k}"), "not a valid HTTP header".into()));
            }
        }
        if let Some(arn) = &self.topic_arn
            && (!arn.starts_with("arn:") || arn.split(':').count() < 6)
        {
            return Err((
                "topic_arn".into(),
                format!("{arn:?} is not an ARN (arn:aws:sns:REGION:ACCOUNT:TOPIC)"),
            ));
        }
        Ok(())
    }
}

/// The kind of a broker exchange.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ExchangeType {
    #[default]
    Topic,
    Direct,
    Fanout,
    Headers,
}

/// An AMQP 0-9-1 broker (RabbitMQ): each event a persistent message on an
/// exchange, counted as published once the broker confirmed it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AmqpDestination {
    /// `amqp://user:password@host:port/vhost` (vhost `%2f` for `/`).
    pub url: String,
    /// The exchange (declared durable when missing).
    #[serde(default = "default_exchange")]
    pub exchange: String,
    #[serde(default)]
    pub exchange_type: ExchangeType,
    /// `{event_type}` (the eventType without spaces: `Bounce`,
    /// `RenderingFailure`) and `{configuration_set}` are filled in.
    #[serde(default = "default_routing_key")]
    pub routing_key: String,
    #[serde(default)]
    pub format: EventFormat,
    /// Connecting, and the broker's confirmation of a batch.
    #[serde(default = "default_amqp_timeout", with = "crate::config::duration")]
    pub timeout: Duration,
    /// The `TopicArn` of `sns` bodies (as for webhooks).
    #[serde(default)]
    pub topic_arn: Option<String>,
    /// Where events the broker cannot route go (JSONL with the reason);
    /// default `dead-letter/SET.NAME.jsonl` beside `[events] jsonl`.
    #[serde(default)]
    pub dead_letter: Option<PathBuf>,
}

fn default_exchange() -> String {
    "volley-events".into()
}
fn default_routing_key() -> String {
    "{configuration_set}.{event_type}".into()
}
fn default_amqp_timeout() -> Duration {
    Duration::from_secs(30)
}

impl AmqpDestination {
    pub(super) fn check(&self) -> Result<(), (String, String)> {
        if !(self.url.starts_with("amqp://") && self.url.len() > "amqp://".len()) {
            return Err((
                "url".into(),
                format!(
                    "{:?} is not an amqp:// URL (amqp://user:password@host:port/vhost)",
                    self.url
                ),
            ));
        }
        if self.exchange.is_empty() || self.exchange.len() > 255 {
            return Err(("exchange".into(), "1 to 255 characters".into()));
        }
        if self.routing_key.len() > 255 {
            return Err(("routing_key".into(), "at most 255 characters".into()));
        }
        if self.timeout.is_zero() {
            return Err(("timeout".into(), "must be more than 0".into()));
        }
        Ok(())
    }
}

/// `[sns]`: what SNS-format messages say about their topic and where
/// their links point.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SnsConfig {
    /// The region in default topic ARNs.
    #[serde(default = "default_region")]
    pub region: String,
    /// The base URL of `SigningCertURL`, `SubscribeURL` and
    /// `UnsubscribeURL`: this service's HTTP listener as endpoints reach
    /// it; default `http://` + `[http] listen`.
    #[serde(default)]
    pub public_url: Option<String>,
    /// PEM files of the RSA key that signs SNS messages and its
    /// certificate; when absent, a pair is made once and kept in the
    /// spool directory (`sns/`).
    #[serde(default)]
    pub signing_key: Option<PathBuf>,
    #[serde(default)]
    pub signing_cert: Option<PathBuf>,
}

fn default_region() -> String {
    "us-east-1".into()
}

impl Default for SnsConfig {
    fn default() -> Self {
        SnsConfig {
            region: default_region(),
            public_url: None,
            signing_key: None,
            signing_cert: None,
        }
    }
}

impl SnsConfig {
    pub(in crate::config) fn check(&self) -> Result<(), (String, String)> {
        if self.region.is_empty()
            || !self
                .region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err((
                "region".into(),
                format!("{:?} is not a region name", self.region),
            ));
        }
        if let Some(u) = &self.public_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return Err(("public_url".into(), format!("{u:?} is not an http(s) URL")));
        }
        if self.signing_key.is_some() != self.signing_cert.is_some() {
            return Err((
                "signing_key".into(),
                "give both signing_key and signing_cert, or neither".into(),
            ));
        }
        Ok(())
    }
}
