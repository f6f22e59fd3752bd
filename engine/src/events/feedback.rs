//! Events of feedback entries (journal kind `Feedback`): a bounce report
//! that came back after delivery, a complaint, an unsubscribe. What the
//! inbound side learnt travels in the entry's detail as [`Feedback`]
//! (besides the mail's subject and headers in [`Detail`]); this module
//! turns it into the SES `bounce`, `complaint` or `subscription` object.
//! Feedback events have no `Send` event before them. Pure.

use serde::{Deserialize, Serialize};

use super::model::{Body, Bounce, BouncedRecipient, timestamp};

/// What kind of feedback an entry reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum FeedbackKind {
    #[default]
    #[serde(rename = "b")]
    Bounce,
    #[serde(rename = "c")]
    Complaint,
    #[serde(rename = "s")]
    Subscription,
}

impl FeedbackKind {
    /// Its events' `eventType`.
    pub fn event_type(self) -> &'static str {
        match self {
            FeedbackKind::Bounce => "Bounce",
            FeedbackKind::Complaint => "Complaint",
            FeedbackKind::Subscription => "Subscription",
        }
    }
}

/// The feedback fields of a journal entry (short keys: it is stored).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feedback {
    #[serde(rename = "k", default)]
    pub kind: FeedbackKind,
    /// `feedbackId` (unique per report and recipient).
    #[serde(rename = "f", default)]
    pub feedback_id: String,
    /// Bounce: `bounceType` and `bounceSubType`.
    #[serde(rename = "bt", default, skip_serializing_if = "Option::is_none")]
    pub bounce_type: Option<String>,
    #[serde(rename = "bs", default, skip_serializing_if = "Option::is_none")]
    pub bounce_sub_type: Option<String>,
    /// Bounce: the recipient's `action`, `status`, `diagnosticCode`.
    #[serde(rename = "ac", default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(rename = "st", default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(rename = "dc", default, skip_serializing_if = "Option::is_none")]
    pub diagnostic_code: Option<String>,
    /// `reportingMTA` (`dns; host`) and `remoteMtaIp`.
    #[serde(rename = "rm", default, skip_serializing_if = "Option::is_none")]
    pub reporting_mta: Option<String>,
    #[serde(rename = "ip", default, skip_serializing_if = "Option::is_none")]
    pub remote_mta_ip: Option<String>,
    /// Complaint: `complaintFeedbackType`, `userAgent`, `arrivalDate`,
    /// `complaintSubType`.
    #[serde(rename = "ft", default, skip_serializing_if = "Option::is_none")]
    pub feedback_type: Option<String>,
    #[serde(rename = "ua", default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(rename = "ad", default, skip_serializing_if = "Option::is_none")]
    pub arrival_date: Option<String>,
    #[serde(rename = "cs", default, skip_serializing_if = "Option::is_none")]
    pub complaint_sub_type: Option<String>,
    /// Subscription: the list (`contactList`), its topic, and how the
    /// recipient unsubscribed (`source`).
    #[serde(rename = "cl", default, skip_serializing_if = "Option::is_none")]
    pub contact_list: Option<String>,
    #[serde(rename = "tp", default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(rename = "so", default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The mail's `From` and envelope sender as the report gave them,
    /// for when the campaign is no longer in the spool.
    #[serde(rename = "fr", default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ComplainedRecipient {
    pub email_address: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Complaint {
    pub complained_recipients: Vec<ComplainedRecipient>,
    pub timestamp: String,
    pub feedback_id: String,
    pub complaint_sub_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub complaint_feedback_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arrival_date: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TopicStatus {
    pub topic_name: String,
    pub subscription_status: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TopicPreferences {
    pub unsubscribe_all: bool,
    pub topic_subscription_status: Vec<TopicStatus>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub contact_list: String,
    pub timestamp: String,
    pub source: String,
    pub new_topic_preferences: TopicPreferences,
    pub old_topic_preferences: TopicPreferences,
}

/// The event body of feedback `f` about `email`, reported at `at_ms`.
pub fn body(f: &Feedback, email: &str, at_ms: u64) -> Body {
    let at = timestamp(at_ms);
    match f.kind {
        FeedbackKind::Bounce => Body::Bounce(Bounce {
            bounce_type: f
                .bounce_type
                .clone()
                .unwrap_or_else(|| "Undetermined".into()),
            bounce_sub_type: f
                .bounce_sub_type
                .clone()
                .unwrap_or_else(|| "Undetermined".into()),
            bounced_recipients: vec![BouncedRecipient {
                email_address: email.to_string(),
                action: f.action.clone().unwrap_or_else(|| "failed".into()),
                status: f.status.clone().unwrap_or_else(|| "unknown".into()),
                diagnostic_code: f.diagnostic_code.clone().unwrap_or_default(),
            }],
            timestamp: at,
            feedback_id: f.feedback_id.clone(),
            reporting_mta: f.reporting_mta.clone().unwrap_or_default(),
            remote_mta_ip: f.remote_mta_ip.clone(),
        }),
        FeedbackKind::Complaint => Body::Complaint(Complaint {
            complained_recipients: vec![ComplainedRecipient {
                email_address: email.to_string(),
            }],
            timestamp: at,
            feedback_id: f.feedback_id.clone(),
            complaint_sub_type: f.complaint_sub_type.clone(),
            user_agent: f.user_agent.clone(),
            complaint_feedback_type: f.feedback_type.clone(),
            arrival_date: f.arrival_date.clone(),
        }),
        FeedbackKind::Subscription => {
            let topic = f.topic.clone();
            let prefs = |status: &str, all: bool| TopicPreferences {
                unsubscribe_all: all,
                topic_subscription_status: topic
                    .iter()
                    .map(|t| TopicStatus {
                        topic_name: t.clone(),
                        subscription_status: status.into(),
                    })
                    .collect(),
            };
            Body::Subscription(Subscription {
                contact_list: f.contact_list.clone().unwrap_or_default(),
                timestamp: at,
                source: f
                    .source
                    .clone()
                    .unwrap_or_else(|| "UnsubscribeHeader".into()),
                // without a topic the recipient left the whole list
                new_topic_preferences: prefs("OptOut", topic.is_none()),
                old_topic_preferences: prefs("OptIn", false),
            })
        }
    }
}
