//! The SES event model (`shared/reference/ses.md` §3) and how a journal entry
//! becomes events.
//!
//! Each event has `eventType`, `mail` and exactly one type object (`send`,
//! `delivery`, `bounce`, `deliveryDelay`, `failure`). A recipient's first
//! attempt (delivered, bounced or deferred) is preceded by a `Send` event.
//! `mail.timestamp` is when the campaign was accepted, `mail.messageId` the
//! stable id also used in the Message-ID header. Pure.

use std::collections::BTreeMap;

use serde::Serialize;
use volley_spool::{Entry, Kind};

use super::detail::Detail;
use crate::campaign::CampaignDef;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CommonHeaders {
    pub from: Vec<String>,
    pub to: Vec<String>,
    pub message_id: String,
    pub subject: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Mail {
    pub timestamp: String,
    pub message_id: String,
    pub source: String,
    pub destination: Vec<String>,
    pub headers_truncated: bool,
    pub headers: Vec<Header>,
    pub common_headers: CommonHeaders,
    pub tags: BTreeMap<String, Vec<String>>,
}

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
}

/// One SES-format event.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Event {
    #[serde(rename = "eventType")]
    pub event_type: &'static str,
    pub mail: Mail,
    #[serde(flatten)]
    pub body: Body,
}

/// RFC 3339 UTC with milliseconds, as SES writes timestamps.
pub fn timestamp(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

/// What the event builder knows about the recipient and its message.
pub struct Context<'a> {
    pub campaign: &'a CampaignDef,
    pub accepted_ms: u64,
    pub email: &'a str,
    pub message_id: &'a str,
    pub reporting_mta: &'a str,
}

fn mail(c: &Context<'_>, subject: &str) -> Mail {
    let def = c.campaign;
    let header_id = format!("<{}@{}>", c.message_id, def.from_domain());
    // the To header: the recipient, or a non-personalized message's `to`
    let to = match (&def.to, def.personalized) {
        (_, true) => c.email.to_string(),
        (Some(t), false) => t.clone(),
        (None, false) => crate::campaign::UNDISCLOSED.to_string(),
    };
    let mut headers = vec![
        Header {
            name: "From".into(),
            value: def.from.clone(),
        },
        Header {
            name: "To".into(),
            value: to.clone(),
        },
        Header {
            name: "Subject".into(),
            value: subject.to_string(),
        },
        Header {
            name: "Message-ID".into(),
            value: header_id,
        },
    ];
    if let Some(r) = &def.reply_to {
        headers.push(Header {
            name: "Reply-To".into(),
            value: r.clone(),
        });
    }
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
    Mail {
        timestamp: timestamp(c.accepted_ms),
        message_id: c.message_id.to_string(),
        source: def.from_addr.clone(),
        destination: vec![c.email.to_string()],
        headers_truncated: false,
        headers,
        common_headers: CommonHeaders {
            from: vec![def.from.clone()],
            to: vec![to],
            message_id: c.message_id.to_string(),
            subject: subject.to_string(),
        },
        tags,
    }
}

/// The events one journal entry stands for (empty for campaign marks).
pub fn events(c: &Context<'_>, e: &Entry) -> Vec<Event> {
    let d = Detail::decode(&e.detail);
    let m = mail(c, &d.subject);
    let at = timestamp(e.at_ms);
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
            }),
        ),
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
            event_type: "Send",
            mail: m.clone(),
            body: Body::Send(Empty {}),
        });
    }
    out.push(Event {
        event_type: body.0,
        mail: m,
        body: body.1,
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Outcome;
    use volley_spool::RecipientId;

    fn def() -> CampaignDef {
        CampaignDef {
            id: "spring".into(),
            from: "News <news@example.com>".into(),
            from_name: Some("News".into()),
            from_addr: "news@example.com".into(),
            reply_to: None,
            subject: "Hi".into(),
            html: None,
            text: Some("x".into()),
            list_unsubscribe: None,
            tags: [("kind".to_string(), "promo".to_string())].into(),
            columns: vec![],
            personalized: true,
            to: None,
        }
    }

    #[test]
    fn bounce_event_shape() {
        let d = def();
        let c = Context {
            campaign: &d,
            accepted_ms: 1_000,
            email: "r@x.test",
            message_id: "abc-000000",
            reporting_mta: "mta.test",
        };
        let o = Outcome::Bounced {
            status: "5.1.1".into(),
            diagnostic: "smtp; 550 5.1.1 unknown".into(),
            bounce_type: "Permanent",
            bounce_subtype: "NoEmail",
        };
        let e = Entry::outcome(
            Kind::Bounced,
            RecipientId(1),
            1,
            2_000,
            0,
            Detail::of(&o, "Hi r", None).encode(),
        );
        let evs = events(&c, &e);
        assert_eq!(evs.len(), 2);
        let v = serde_json::to_value(&evs[1]).unwrap();
        assert_eq!(v["eventType"], "Bounce");
        assert_eq!(v["bounce"]["bounceType"], "Permanent");
        assert_eq!(v["bounce"]["bounceSubType"], "NoEmail");
        assert_eq!(v["bounce"]["bouncedRecipients"][0]["status"], "5.1.1");
        assert_eq!(
            v["bounce"]["bouncedRecipients"][0]["diagnosticCode"],
            "smtp; 550 5.1.1 unknown"
        );
        assert_eq!(v["mail"]["destination"][0], "r@x.test");
        assert_eq!(v["mail"]["commonHeaders"]["subject"], "Hi r");
        assert_eq!(v["mail"]["tags"]["kind"][0], "promo");
        assert_eq!(v["mail"]["timestamp"], "1970-01-01T00:00:01.000Z");
        let s = serde_json::to_value(&evs[0]).unwrap();
        assert_eq!(s["eventType"], "Send");
        assert_eq!(s["send"], serde_json::json!({}));
    }
}
