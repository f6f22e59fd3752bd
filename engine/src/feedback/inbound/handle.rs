//! What a received report changes: it is parsed ([`report::parse`]),
//! attributed by its signed tokens ([`attribute`]), and each recipient it
//! is about gets a `Feedback` journal entry (its SES event, for every
//! destination) and, for a permanent bounce, a complaint or an unsubscribe
//! (as `[feedback] suppressed_reasons` says), an entry on the suppression
//! list. Both are durable before [`Handler::handle`] returns, so the
//! listener answers `250` only for a report that can no longer be lost
//! (a crash before that: the sender's MTA delivers it again).
//!
//! One-click unsubscribes from the HTTP listener come through
//! [`Handler::unsubscribe`] the same way. Blocking (file syncs): call it
//! off the async threads. Exposure: the report is hostile input.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_lc_rs::digest;
use volley_spool::{Entry, Kind, RecipientId, Spool};

use super::attribute::{self, Finding, Inputs, Verdict};
use crate::campaign::CampaignDef;
use crate::config::FeedbackConfig;
use crate::events::detail::Detail;
use crate::events::feedback::{Feedback, FeedbackKind};
use crate::feedback::report::{self, Report};
use crate::feedback::suppression::{self, Reason, SuppressionList};
use crate::feedback::token::{Keys, UnsubRef};
use crate::message::{campaign_message_id, message_id};

/// Most bytes of the original's headers kept for the event.
const MAX_HEADERS: usize = 10 * 1024;

/// Counts of what reports became (the metrics read them).
#[derive(Debug, Default)]
pub struct Counts {
    pub received: AtomicU64,
    pub bounces: AtomicU64,
    pub complaints: AtomicU64,
    pub unsubscribes: AtomicU64,
    pub suppressed: AtomicU64,
    pub forged: AtomicU64,
    pub unattributed: AtomicU64,
    pub ignored: AtomicU64,
}

/// Turns reports into events and suppressions.
pub struct Handler {
    pub spool: Arc<Spool>,
    pub keys: Keys,
    pub bounce_domain: String,
    pub suppression: Option<Arc<SuppressionList>>,
    pub config: FeedbackConfig,
    pub counts: Arc<Counts>,
}

/// A short digest naming a report (feedback ids derive from it).
fn report_id(raw: &[u8]) -> String {
    let d = digest::digest(&digest::SHA256, raw);
    d.as_ref()[..10]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The address in a message's `From` header.
fn from_address(raw: &[u8]) -> Option<String> {
    let m = mail_parser::MessageParser::new().parse_headers(raw)?;
    let a = m.from()?.first()?.address()?.to_ascii_lowercase();
    Some(a)
}

impl Handler {
    /// Handles one received message (envelope and bytes); what it became.
    pub fn handle(&self, mail_from: &str, rcpts: &[String], raw: &[u8]) -> Result<Verdict, String> {
        self.counts.received.fetch_add(1, Ordering::Relaxed);
        let report = report::parse(raw);
        let id = report_id(raw);
        let from = from_address(raw);
        let spool = &self.spool;
        // the record, or once its segment is reclaimed, the ledger
        let record = |rid: RecipientId| {
            spool
                .with_record(rid, |r| (r.campaign.to_native(), r.email.to_string()))
                .ok()
                .or_else(|| spool.ledger_lookup(rid))
        };
        let inputs = Inputs {
            keys: &self.keys,
            bounce_domain: &self.bounce_domain,
            mail_from,
            rcpts,
            from: from.as_deref(),
            report_id: &id,
            record: &record,
        };
        let verdict = attribute::attribute(&inputs, &report);
        match &verdict {
            Verdict::Found(found) => self.record(found, original_of(&report), None)?,
            Verdict::Forged => {
                self.counts.forged.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(report = %id, sender = %mail_from, "report with a forged or altered token ignored");
            }
            Verdict::Unattributed(why) => {
                self.counts.unattributed.fetch_add(1, Ordering::Relaxed);
                tracing::info!(report = %id, sender = %mail_from, "report not attributed: {why}");
            }
            Verdict::Ignored(why) => {
                self.counts.ignored.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(report = %id, sender = %mail_from, "message ignored: {why}");
            }
        }
        Ok(verdict)
    }

    /// A one-click unsubscribe (a verified URL token): for the topic the
    /// token was signed with (none: all of the list's mail).
    pub fn unsubscribe(&self, u: &UnsubRef) -> Result<(), String> {
        let f = Finding {
            campaign: u.campaign,
            recipient: u.recipient,
            shared: false,
            email: u.email.to_ascii_lowercase(),
            feedback: Feedback {
                kind: FeedbackKind::Subscription,
                source: Some("UnsubscribeHeader".into()),
                // the same request made twice has the same id
                feedback_id: report_id(
                    format!("{}:{}:{}:{:?}", u.campaign, u.recipient.0, u.email, u.topic)
                        .as_bytes(),
                ),
                ..Feedback::default()
            },
        };
        self.record(&[f], None, Some(u.topic.as_deref()))
    }

    /// The SES message id of a finding's mail.
    fn message_id(&self, f: &Finding, def: Option<&CampaignDef>) -> String {
        let uid = self.spool.uid();
        match def {
            Some(d) if d.personalized && !f.shared => message_id(uid, f.recipient),
            _ => campaign_message_id(uid, f.campaign),
        }
    }

    /// Journals the findings' events and adds the suppressions they call
    /// for, both durably. An unsubscribe's topic is `signed_topic` when
    /// its token carried one, else the campaign's. A finding whose address
    /// the suppression list refuses is logged and left out first, so that
    /// nothing is journaled for a report that is then refused.
    fn record(
        &self,
        found: &[Finding],
        original: Option<&report::Original>,
        signed_topic: Option<Option<&str>>,
    ) -> Result<(), String> {
        let now = volley_spool::now_ms();
        let (subject, headers) = original.map(headers_text).unwrap_or_default();
        let mut entries = Vec::with_capacity(found.len());
        let mut suppress = Vec::new();
        for f in found {
            if let Err(e) = suppression::normalize_email(&f.email) {
                tracing::warn!(address = %f.email, error = %e, "feedback about an unusable address left out");
                continue;
            }
            let def = self
                .spool
                .campaign(f.campaign)
                .and_then(|c| CampaignDef::from_bytes(&c.body).ok());
            let mut fb = f.feedback.clone();
            if fb.feedback_id.is_empty() {
                let key = format!("{}:{}:{}", f.campaign, f.recipient.0, f.email);
                fb.feedback_id = report_id(key.as_bytes());
            }
            let topic = def
                .as_ref()
                .and_then(|d| d.list_management.as_ref())
                .map(|l| (l.contact_list.clone(), l.topic.clone()));
            if fb.kind == FeedbackKind::Subscription {
                fb.contact_list = topic.as_ref().map(|t| t.0.clone());
                fb.topic = match signed_topic {
                    Some(t) => t.map(str::to_string),
                    None => topic.as_ref().and_then(|t| t.1.clone()),
                };
            }
            let reason = match fb.kind {
                FeedbackKind::Bounce if fb.bounce_type.as_deref() == Some("Permanent") => {
                    self.config.suppresses("BOUNCE").then_some(Reason::Bounce)
                }
                FeedbackKind::Complaint if fb.feedback_type.as_deref() != Some("not-spam") => self
                    .config
                    .suppresses("COMPLAINT")
                    .then_some(Reason::Complaint),
                FeedbackKind::Subscription => Some(Reason::Unsubscribe),
                _ => None,
            };
            let mid = self.message_id(f, def.as_ref());
            if let Some(reason) = reason {
                let mut s = suppression::Entry::new(f.email.clone(), reason, now);
                s.message_id = Some(mid.clone());
                s.feedback_id = Some(fb.feedback_id.clone());
                if fb.kind == FeedbackKind::Subscription {
                    s.topic = fb.topic.clone();
                }
                suppress.push(s);
            }
            match fb.kind {
                FeedbackKind::Bounce => &self.counts.bounces,
                FeedbackKind::Complaint => &self.counts.complaints,
                FeedbackKind::Subscription => &self.counts.unsubscribes,
            }
            .fetch_add(1, Ordering::Relaxed);
            let detail = Detail {
                subject: subject.clone(),
                headers: headers.clone(),
                feedback: Some(Box::new(fb)),
                ..Detail::default()
            };
            let mut e = Entry::outcome(Kind::Feedback, f.recipient, 0, now, 0, detail.encode());
            e.campaign = f.campaign;
            e.email = f.email.clone();
            entries.push(e);
        }
        self.spool
            .record_feedback(entries)
            .map_err(|e| format!("journal: {e}"))?;
        if let (Some(list), false) = (&self.suppression, suppress.is_empty()) {
            let n = suppress.len() as u64;
            list.add(suppress)
                .map_err(|e| format!("suppression list: {e}"))?;
            self.counts.suppressed.fetch_add(n, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// The original message a report quotes.
fn original_of(report: &Report) -> Option<&report::Original> {
    match report {
        Report::Bounce(b) => Some(&b.original),
        Report::Complaint(c) => Some(&c.original),
        _ => None,
    }
}

/// The original's subject and its headers as the compact event text
/// (`Name: value` lines), at most [`MAX_HEADERS`] bytes.
fn headers_text(o: &report::Original) -> (String, String) {
    let subject = o.get("Subject").unwrap_or_default().to_string();
    let mut text = String::new();
    for (name, value) in &o.headers {
        let line = format!("{name}: {}", value.replace(['\r', '\n'], " "));
        if text.len() + line.len() + 1 > MAX_HEADERS {
            break;
        }
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&line);
    }
    (subject, text)
}
