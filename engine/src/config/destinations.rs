//! Event destinations of a configuration set
//! (`[[configuration_sets.NAME.destinations]]`): a name, the event types
//! it receives (SES `MatchingEventTypes`), optional tag filters, enabled or
//! not, where a new one starts reading, and its kind, given as the one
//! table of the kind's name (`jsonl = {...}` or `webhook = {...}`). Pure;
//! every error names the destination's key.

use std::collections::BTreeMap;

use serde::Deserialize;

mod kinds;

pub use kinds::{
    AmqpDestination, EventFormat, ExchangeType, JsonlDestination, SnsConfig, WebhookDestination,
};

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
