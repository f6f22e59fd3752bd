//! Event destinations of a configuration set
//! (`[[configuration_sets.NAME.destinations]]`): a name, the event types
//! it receives (SES `MatchingEventTypes`), optional tag filters, enabled or
//! not, where a new one starts reading, and its kind, given as the one
//! table of the kind's name (`jsonl = {...}` or `webhook = {...}`). Pure;
//! every error names the destination's key.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Most destinations in one configuration set (as SES allows).
pub const MAX_PER_SET: usize = 10;

/// One event destination.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    /// 1 to 64 letters, digits, `_` and `-`, unique in its set.
    pub name: String,
    /// A disabled destination receives nothing and keeps no cursor.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The event types it receives (SES `MatchingEventTypes`, in SES's
    /// API spelling `DELIVERY_DELAY` or the events' `DeliveryDelay`).
    pub event_types: Vec<EventType>,
    /// Only mail whose tags have these values (each key: one value or a
    /// list of accepted values); all must match.
    #[serde(default)]
    pub tags: BTreeMap<String, TagValues>,
    /// A new destination starts from now; with `replay` it starts from the
    /// oldest journal entry the spool keeps.
    #[serde(default)]
    pub replay: bool,
    #[serde(default)]
    pub jsonl: Option<JsonlDestination>,
    #[serde(default)]
    pub webhook: Option<WebhookDestination>,
    #[serde(default)]
    pub amqp: Option<AmqpDestination>,
}

fn yes() -> bool {
    true
}

/// What a destination does with its events.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind<'a> {
    Jsonl(&'a JsonlDestination),
    Webhook(&'a WebhookDestination),
    Amqp(&'a AmqpDestination),
}

impl Kind<'_> {
    /// The kind's name (the metrics' `kind` label).
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Jsonl(_) => "jsonl",
            Kind::Webhook(_) => "webhook",
            Kind::Amqp(_) => "amqp",
        }
    }
}

impl Destination {
    /// Its kind (checked at load: exactly one is given).
    pub fn kind(&self) -> Kind<'_> {
        match (&self.jsonl, &self.webhook, &self.amqp) {
            (Some(j), _, _) => Kind::Jsonl(j),
            (None, Some(w), _) => Kind::Webhook(w),
            (None, None, Some(a)) => Kind::Amqp(a),
            (None, None, None) => unreachable!("checked at load: a destination has a kind"),
        }
    }

    /// The body format of its messages (`jsonl`: the event alone).
    pub fn format(&self) -> EventFormat {
        match self.kind() {
            Kind::Jsonl(_) => EventFormat::Raw,
            Kind::Webhook(w) => w.format,
            Kind::Amqp(a) => a.format,
        }
    }

    /// Whether an event of `event_type` (the event's `eventType`) for mail
    /// with `tags` goes to this destination.
    pub fn matches_type(&self, event_type: &str) -> bool {
        let t = normalize(event_type);
        self.event_types.iter().any(|e| normalize(e.as_str()) == t)
    }

    /// Whether mail with `tags` passes the tag filters.
    pub fn matches_tags(&self, tags: &BTreeMap<String, Vec<String>>) -> bool {
        self.tags.iter().all(|(k, want)| {
            tags.get(k)
                .is_some_and(|have| have.iter().any(|v| want.0.contains(v)))
        })
    }

    /// Checks one destination; `key` names it in errors.
    pub(super) fn check(&self) -> Result<(), (String, String)> {
        if !super::sets::valid_name(&self.name) {
            return Err((
                "name".into(),
                format!(
                    "{:?}: a destination name is 1 to 64 letters, digits, '_' and '-'",
                    self.name
                ),
            ));
        }
        if self.event_types.is_empty() {
            return Err((
                "event_types".into(),
                "name at least one event type (e.g. [\"Bounce\", \"Complaint\"])".into(),
            ));
        }
        for (k, v) in &self.tags {
            if k.is_empty() || v.0.is_empty() {
                return Err((
                    format!("tags.{k}"),
                    "a tag filter needs a name and at least one value".into(),
                ));
            }
        }
        let kinds = [
            self.jsonl.is_some(),
            self.webhook.is_some(),
            self.amqp.is_some(),
        ];
        match kinds.iter().filter(|k| **k).count() {
            0 => Err((
                "kind".into(),
                "give the destination's kind as a table: `jsonl = { path = \"...\" }`, `webhook = { url = \"...\" }` or `amqp = { url = \"...\" }`".into(),
            )),
            1 => match self.kind() {
                Kind::Jsonl(j) if j.keep == 0 => Err((
                    "jsonl.keep".into(),
                    "keep at least 1 rotated file".into(),
                )),
                Kind::Jsonl(_) => Ok(()),
                Kind::Webhook(w) => w.check().map_err(|(k, r)| (format!("webhook.{k}"), r)),
                Kind::Amqp(a) => a.check().map_err(|(k, r)| (format!("amqp.{k}"), r)),
            },
            _ => Err((
                "kind".into(),
                "a destination has one kind: `jsonl`, `webhook` or `amqp`".into(),
            )),
        }
    }
}

/// Lower case without spaces and `_`: `RENDERING_FAILURE`, `Rendering
/// Failure` and `renderingfailure` are the same type.
fn normalize(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, ' ' | '_' | '-'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// An SES event type (`MatchingEventTypes`). Types Volley does not produce
/// yet are accepted and simply never match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Send,
    Reject,
    Bounce,
    Complaint,
    Delivery,
    Open,
    Click,
    RenderingFailure,
    DeliveryDelay,
    Subscription,
}

impl EventType {
    const ALL: [EventType; 10] = [
        EventType::Send,
        EventType::Reject,
        EventType::Bounce,
        EventType::Complaint,
        EventType::Delivery,
        EventType::Open,
        EventType::Click,
        EventType::RenderingFailure,
        EventType::DeliveryDelay,
        EventType::Subscription,
    ];

    /// The `eventType` of its events.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Send => "Send",
            EventType::Reject => "Reject",
            EventType::Bounce => "Bounce",
            EventType::Complaint => "Complaint",
            EventType::Delivery => "Delivery",
            EventType::Open => "Open",
            EventType::Click => "Click",
            EventType::RenderingFailure => "Rendering Failure",
            EventType::DeliveryDelay => "DeliveryDelay",
            EventType::Subscription => "Subscription",
        }
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<EventType, D::Error> {
        let s = String::deserialize(d)?;
        let n = normalize(&s);
        EventType::ALL
            .into_iter()
            .find(|t| normalize(t.as_str()) == n)
            .ok_or_else(|| {
                let names: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
                serde::de::Error::custom(format!(
                    "unknown event type {s:?} (one of: {})",
                    names.join(", ")
                ))
            })
    }
}

/// The accepted values of one tag: a string or a list of strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagValues(pub Vec<String>);

impl<'de> Deserialize<'de> for TagValues {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<TagValues, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        match OneOrMany::deserialize(d) {
            Ok(OneOrMany::One(s)) => Ok(TagValues(vec![s])),
            Ok(OneOrMany::Many(v)) => Ok(TagValues(v)),
            Err(_) => Err(serde::de::Error::custom(
                "a tag filter is a string or a list of strings",
            )),
        }
    }
}

/// A JSONL file of the destination's events.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct JsonlDestination {
    pub path: PathBuf,
    /// Rotate the file once it has this many bytes (0: never).
    #[serde(default, with = "super::size")]
    pub rotate_bytes: u64,
    /// Rotated files kept.
    #[serde(default = "super::default_keep")]
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
    #[serde(default = "default_timeout", with = "super::duration")]
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
    fn check(&self) -> Result<(), (String, String)> {
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
    #[serde(default = "default_amqp_timeout", with = "super::duration")]
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
    fn check(&self) -> Result<(), (String, String)> {
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
    pub(super) fn check(&self) -> Result<(), (String, String)> {
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
