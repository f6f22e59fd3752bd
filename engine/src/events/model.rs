//! The SES event model (`shared/reference/ses.md` §3) and how a journal entry
//! becomes events.
//!
//! Each event has `eventType`, `mail` and exactly one type object (`send`,
//! `delivery`, `bounce`, `deliveryDelay`, `failure`). A recipient's first
//! attempt (delivered, bounced or deferred) is preceded by a `Send` event.
//! `mail.timestamp` is when the message was accepted into the spool (with
//! its recipient; the one message of a non-personalized campaign, with the
//! campaign), `mail.messageId` the stable id also used in the Message-ID
//! header.
//!
//! `mail.headers` are the headers the message went out with, captured when
//! it was produced and carried in the entry's detail (DKIM-Signature
//! included, in order, unfolded); `commonHeaders.date` is its Date header.
//! When no message was produced for the attempt (a rendering failure, a
//! failed destination lookup), they are the headers it would have started
//! with (From, To, Subject, Date of the attempt, Message-ID, Reply-To).
//! `mail.sendingAccountId` and `mail.sourceArn` come from [`Identity`]
//! (config `[events]`). Pure.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use serde::ser::Serializer;
use volley_spool::{Entry, Kind};

mod mail;
mod mail_headers;

pub use mail::{CommonHeaders, Mail, Sender};
pub use mail_headers::{Header, HeadersCache, MailHeaders};

use super::detail::Detail;
use super::id::EventKey;
use crate::campaign::CampaignDef;
use crate::config::EventsConfig;

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub timestamp: String,
    pub processing_time_millis: u64,
    pub recipients: Vec<String>,
    pub smtp_response: String,
    #[serde(rename = "reportingMTA")]
    pub reporting_mta: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BouncedRecipient {
    pub email_address: String,
    pub action: String,
    pub status: String,
    pub diagnostic_code: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Bounce {
    pub bounce_type: String,
    pub bounce_sub_type: String,
    pub bounced_recipients: Vec<BouncedRecipient>,
    pub timestamp: String,
    pub feedback_id: String,
    #[serde(rename = "reportingMTA")]
    pub reporting_mta: String,
    /// The receiving server's address, when a report names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_mta_ip: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DelayedRecipient {
    pub email_address: String,
    pub status: String,
    pub diagnostic_code: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryDelay {
    pub timestamp: String,
    pub delay_type: String,
    pub expiration_time: String,
    #[serde(rename = "reportingMTA")]
    pub reporting_mta: String,
    pub delayed_recipients: Vec<DelayedRecipient>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub template_name: String,
    pub error_message: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Empty {}

/// A `Reject` event's object.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Reject {
    pub reason: String,
}

/// The type-specific object of an event.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub enum Body {
    #[serde(rename = "send")]
    Send(Empty),
    #[serde(rename = "delivery")]
    Delivery(Delivery),
    #[serde(rename = "bounce")]
    Bounce(Bounce),
    #[serde(rename = "deliveryDelay")]
    DeliveryDelay(DeliveryDelay),
    #[serde(rename = "failure")]
    Failure(Failure),
    #[serde(rename = "reject")]
    Reject(Reject),
    #[serde(rename = "complaint")]
    Complaint(super::feedback::Complaint),
    #[serde(rename = "subscription")]
    Subscription(super::feedback::Subscription),
}

/// One SES-format event. The events of one journal entry share their
/// `mail` (see [`super::json`], which writes it once for them).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Event {
    /// Where it comes from in the journal (its stable id); not part of
    /// the SES JSON.
    #[serde(skip)]
    pub key: EventKey,
    #[serde(rename = "eventType")]
    pub event_type: &'static str,
    #[serde(serialize_with = "shared")]
    pub mail: Arc<Mail>,
    #[serde(flatten)]
    pub body: Body,
}

/// Serializes a shared value as the value.
fn shared<T: Serialize, S: Serializer>(v: &Arc<T>, s: S) -> Result<S::Ok, S::Error> {
    T::serialize(v, s)
}

/// RFC 3339 UTC with milliseconds, as SES writes timestamps.
pub fn timestamp(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

/// The sending account and identity events name (SES
/// `mail.sendingAccountId` and `mail.sourceArn`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub account_id: String,
    /// ARN with `{account_id}`, `{domain}` (the From domain) and
    /// `{address}` (the From address) filled in per campaign.
    pub arn_template: String,
}

impl Identity {
    /// The identity ARN of a campaign's sender.
    pub fn source_arn(&self, def: &CampaignDef) -> String {
        self.arn_template
            .replace("{account_id}", &self.account_id)
            .replace("{domain}", def.from_domain())
            .replace("{address}", &def.from_addr)
    }
}

impl From<&EventsConfig> for Identity {
    fn from(c: &EventsConfig) -> Identity {
        Identity {
            account_id: c.account_id.clone(),
            arn_template: c.identity_arn.clone(),
        }
    }
}

/// What the event builder knows about the recipient and its message.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub campaign: &'a CampaignDef,
    /// When the campaign was accepted (the entry's own acceptance time,
    /// when it carries one, wins for a personalized campaign).
    pub accepted_ms: u64,
    pub email: &'a str,
    pub message_id: &'a str,
    pub reporting_mta: &'a str,
    /// The campaign's sender (made once per campaign, with its
    /// [`Identity::source_arn`]).
    pub sender: &'a Arc<Sender>,
}

/// The tags of a campaign's mail (`mail.tags`): its own, and
/// `ses:from-domain`, `volley:campaign` and, when it has one,
/// `ses:configuration-set`.
pub fn tags(def: &CampaignDef) -> BTreeMap<String, Vec<String>> {
    let mut tags: BTreeMap<String, Vec<String>> = def
        .tags
        .iter()
        .map(|(k, v)| (k.clone(), vec![v.clone()]))
        .collect();
    tags.insert(
        "ses:from-domain".into(),
        vec![def.from_domain().to_string()],
    );
    tags.insert("volley:campaign".into(), vec![def.id.clone()]);
    if let Some(set) = &def.configuration_set {
        tags.insert("ses:configuration-set".into(), vec![set.clone()]);
    }
    tags
}

/// Whether a failure entry is an operator's rejection (a `Reject` event).
fn rejected(e: &Entry) -> bool {
    Detail::decode(&e.detail).reject.is_some()
}

/// The `eventType`s of the events `e` stands for, in order (see
/// [`events_with`]): none for campaign marks.
pub fn event_types(e: &Entry) -> impl Iterator<Item = &'static str> {
    let outcome = match e.kind {
        Kind::Feedback => Some(
            Detail::decode(&e.detail)
                .feedback
                .map_or("Bounce", |f| f.kind.event_type()),
        ),
        Kind::Delivered => Some("Delivery"),
        Kind::Bounced => Some("Bounce"),
        Kind::Deferred => Some("DeliveryDelay"),
        Kind::Failed if rejected(e) => Some("Reject"),
        Kind::Failed => Some("Rendering Failure"),
        _ => None,
    };
    let send =
        outcome.is_some() && e.attempts == 1 && e.kind.is_outcome() && e.kind != Kind::Failed;
    send.then_some("Send").into_iter().chain(outcome)
}

fn mail(c: &Context<'_>, d: &mut Detail, at_ms: u64, cache: &mut HeadersCache) -> Mail {
    let def = c.campaign;
    // the To header: the recipient, or a non-personalized message's `to`
    let to = match (&def.to, def.personalized) {
        (_, true) => c.email.to_string(),
        (Some(t), false) => t.clone(),
        (None, false) => crate::campaign::UNDISCLOSED.to_string(),
    };
    let (headers, date) = mail_headers::of(c, d, &to, at_ms, cache);
    Mail {
        timestamp: cache.timestamp(c.accepted_ms),
        message_id: c.message_id.to_string(),
        sender: Arc::clone(c.sender),
        destination: vec![c.email.to_string()],
        headers_truncated: d.headers_truncated,
        headers,
        common_headers: CommonHeaders {
            date,
            to: vec![to],
            subject: std::mem::take(&mut d.subject),
        },
    }
}

/// The events one journal entry stands for (empty for campaign marks).
pub fn events(c: &Context<'_>, e: &Entry) -> Vec<Event> {
    events_with(c, e, &mut HeadersCache::default())
}

/// [`events`], with what a run of entries shares (the recipients of a
/// shared message: their detail, the headers sent) decoded or written
/// once ([`HeadersCache`]).
pub fn events_with(c: &Context<'_>, e: &Entry, cache: &mut HeadersCache) -> Vec<Event> {
    let mut d = cache.detail(&e.detail);
    // a recipient's message was accepted with the recipient; the one
    // message of a non-personalized campaign, with the campaign
    let accepted_ms = match d.accepted_ms {
        Some(a) if c.campaign.personalized => a,
        _ => c.accepted_ms,
    };
    let c = &Context { accepted_ms, ..*c };
    let m = Arc::new(mail(c, &mut d, e.at_ms, cache));
    let at = cache.timestamp(e.at_ms);
    let unknown = || "unknown".to_string();
    let body = match e.kind {
        Kind::CampaignSealed
        | Kind::Appended
        | Kind::SegmentCreated
        | Kind::SegmentSealed
        | Kind::SegmentRetired => {
            return Vec::new();
        }
        Kind::Delivered => (
            "Delivery",
            Body::Delivery(Delivery {
                timestamp: at,
                processing_time_millis: e.at_ms.saturating_sub(c.accepted_ms),
                recipients: vec![c.email.to_string()],
                smtp_response: d.reply.unwrap_or_else(unknown),
                reporting_mta: c.reporting_mta.to_string(),
            }),
        ),
        Kind::Bounced => (
            "Bounce",
            Body::Bounce(Bounce {
                bounce_type: d.bounce_type.unwrap_or_else(|| "Undetermined".into()),
                bounce_sub_type: d.bounce_subtype.unwrap_or_else(|| "Undetermined".into()),
                bounced_recipients: vec![BouncedRecipient {
                    email_address: c.email.to_string(),
                    action: "failed".into(),
                    status: d.status.unwrap_or_else(unknown),
                    diagnostic_code: d.diagnostic.unwrap_or_default(),
                }],
                timestamp: at,
                feedback_id: format!("{}-{:x}", c.message_id, e.attempts),
                reporting_mta: format!("dns; {}", c.reporting_mta),
                remote_mta_ip: None,
            }),
        ),
        Kind::Feedback => {
            let f = d.feedback.take().unwrap_or_default();
            let body = super::feedback::body(&f, c.email, e.at_ms);
            return vec![Event {
                key: EventKey::default(),
                event_type: f.kind.event_type(),
                mail: m,
                body,
            }];
        }
        Kind::Deferred => (
            "DeliveryDelay",
            Body::DeliveryDelay(DeliveryDelay {
                timestamp: at,
                delay_type: d.delay_type.unwrap_or_else(|| "Undetermined".into()),
                expiration_time: timestamp(d.expires_ms.unwrap_or(e.next_ms)),
                reporting_mta: c.reporting_mta.to_string(),
                delayed_recipients: vec![DelayedRecipient {
                    email_address: c.email.to_string(),
                    status: d.status.unwrap_or_else(unknown),
                    diagnostic_code: d.diagnostic.unwrap_or_default(),
                }],
            }),
        ),
        Kind::Failed if d.reject.is_some() => (
            "Reject",
            Body::Reject(Reject {
                reason: d.reject.unwrap_or_default(),
            }),
        ),
        Kind::Failed => (
            "Rendering Failure",
            Body::Failure(Failure {
                template_name: c.campaign.id.clone(),
                error_message: d.error.unwrap_or_else(unknown),
            }),
        ),
    };
    let mut out = Vec::with_capacity(2);
    if e.attempts == 1 && e.kind != Kind::Failed {
        out.push(Event {
            key: EventKey::default(),
            event_type: "Send",
            mail: Arc::clone(&m),
            body: Body::Send(Empty {}),
        });
    }
    out.push(Event {
        key: EventKey::default(),
        event_type: body.0,
        mail: m,
        body: body.1,
    });
    out
}

#[cfg(test)]
pub(crate) mod tests;
