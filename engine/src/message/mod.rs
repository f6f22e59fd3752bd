//! Message production: recipient records → render → MIME → DKIM →
//! dot-stuffed DATA payload ([`Outgoing`]). Pure CPU work on data read from
//! the spool; the pool of threads that runs it is `delivery::produce`.
//!
//! The headers the message goes out with are captured here, once per
//! message, for its events ([`headers::SentHeaders`]). A [`Campaigns`]
//! cache (one per production thread) keeps each campaign's definition and
//! compiled templates. Exposure: records and campaign bodies come from the
//! spool (disk); they can only produce errors, never panics.

pub mod bytemask;
pub mod dkim;
pub mod headers;
pub mod keygen;
pub mod mime;
pub mod payload;
pub mod transfer;

use std::collections::HashMap;
use std::sync::Arc;

use volley_spool::{RecipientId, Spool, Vars};

use crate::campaign::CampaignDef;
use crate::feedback::marks::Marks;
use crate::template::Templates;
use dkim::Signers;

/// The SES-style message id of a recipient's message (stable across retries).
pub fn message_id(uid: u64, id: RecipientId) -> String {
    format!("{uid:016x}{:016x}-000000", id.0)
}

/// The message id of a non-personalized campaign's message: one message
/// for all its recipients (however many transactions carry it), as SES
/// gives one id to a message with many destinations.
pub fn campaign_message_id(uid: u64, campaign: u32) -> String {
    format!("{uid:016x}{campaign:016x}-000001")
}

/// A produced message, ready for SMTP.
#[derive(Debug)]
pub struct Outgoing {
    pub mail_from: String,
    /// Envelope recipients, in the order they were given.
    pub rcpts: Vec<String>,
    /// The DATA payload: dot-stuffed, ending in `CRLF.CRLF`.
    pub data: payload::Payload,
    pub subject: String,
    /// The headers it is sent with, for its events (shared by the
    /// recipients of one transaction).
    pub headers: Arc<headers::SentHeaders>,
}

/// Why a message could not be produced: the reason, and the subject to
/// report with it (the rendered one when it rendered, else the template).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub subject: String,
    pub reason: String,
}

struct CampaignRt {
    def: CampaignDef,
    /// A template campaign's compiled templates.
    templates: Option<Templates>,
    /// A ready-made message's stored body (definition and message).
    stored: Option<Arc<volley_spool::Campaign>>,
}

/// Campaigns as production needs them (definition and compiled
/// templates), loaded from the spool once.
#[derive(Default)]
pub struct Campaigns(HashMap<u32, Result<Arc<CampaignRt>, String>>);

impl Campaigns {
    /// A campaign's definition and templates; a ready-made message is not
    /// kept (it is produced once per transaction, and its bytes must not
    /// outlive it in a cache).
    fn get(&mut self, spool: &Spool, no: u32) -> Result<Arc<CampaignRt>, String> {
        if let Some(rt) = self.0.get(&no) {
            return rt.clone();
        }
        let rt = Self::load(spool, no);
        let keep = match &rt {
            Ok(rt) => rt.stored.is_none(),
            Err(_) => true,
        };
        if keep {
            self.0.insert(no, rt.clone());
        }
        rt
    }

    /// The list topic of a campaign's mail, if it names one (see
    /// [`crate::campaign::ListManagement`]).
    pub fn topic(&mut self, spool: &Spool, no: u32) -> Option<String> {
        let rt = self.get(spool, no).ok()?;
        rt.def.list_management.as_ref()?.topic.clone()
    }

    fn load(spool: &Spool, no: u32) -> Result<Arc<CampaignRt>, String> {
        let c = spool
            .campaign(no)
            .ok_or_else(|| format!("campaign {no} is missing from the spool"))?;
        let def = CampaignDef::from_bytes(&c.body)
            .map_err(|e| format!("campaign {} is unreadable: {e}", c.id))?;
        if def.message.is_some() {
            return Ok(Arc::new(CampaignRt {
                def,
                templates: None,
                stored: Some(c),
            }));
        }
        let templates = Templates::compile(def.template_sources())
            .map_err(|e| format!("{} template: {}", e.part, e.message))?;
        Ok(Arc::new(CampaignRt {
            def,
            templates: Some(templates),
            stored: None,
        }))
    }
}

/// Produces the message of `ids` (one recipient, or several of one
/// non-personalized campaign), signed with `signers`, with a signed return
/// path and unsubscribe links when `marks` are given.
pub fn produce(
    spool: &Spool,
    signers: &Signers,
    marks: Option<&Marks>,
    cache: &mut Campaigns,
    ids: &[RecipientId],
) -> Result<Outgoing, Failure> {
    let fail = |reason: String| Failure {
        subject: String::new(),
        reason,
    };
    let first = *ids.first().ok_or_else(|| fail("no recipient".into()))?;
    let campaign_no = spool
        .campaign_of(first)
        .ok_or_else(|| fail(format!("recipient {first} is not in the spool")))?;
    let rt = cache.get(spool, campaign_no).map_err(fail)?;
    let with_subject = |subject: &str| {
        let subject = subject.to_string();
        move |reason: String| Failure { subject, reason }
    };
    let mut rcpts = Vec::with_capacity(ids.len());
    let mut vars = None;
    for &id in ids {
        let (no, email, v) = spool
            .with_record(id, |r| {
                let v = rt
                    .def
                    .personalized
                    .then(|| variables(&rt.def, r.email.as_str(), r.vars()));
                (r.campaign.to_native(), r.email.to_string(), v)
            })
            .map_err(|e| fail(e.to_string()))?;
        if no != campaign_no || (rt.def.personalized && ids.len() > 1) {
            return Err(fail(
                "internal: one message for recipients that cannot share it".into(),
            ));
        }
        rcpts.push(email);
        vars = v;
    }
    let return_path = |sender: &str, rcpts: &[String]| match marks {
        Some(m) => m.return_path(sender, &Marks::mail_ref(campaign_no, first, rcpts)),
        None => sender.to_string(),
    };
    if let (Some(meta), Some(stored)) = (&rt.def.message, &rt.stored) {
        let mail_from = return_path(&meta.mail_from, &rcpts);
        let mut out = ready_made(spool, signers, &rt.def, stored, campaign_no, rcpts)?;
        out.mail_from = mail_from;
        return Ok(out);
    }
    let Some(templates) = &rt.templates else {
        return Err(fail("internal: a campaign without templates".into()));
    };
    let (context, mid) = match vars {
        Some(v) => (
            v.map_err(with_subject(&rt.def.subject))?,
            message_id(spool.uid(), first),
        ),
        None => (
            serde_json::Value::Object(serde_json::Map::new()),
            campaign_message_id(spool.uid(), campaign_no),
        ),
    };
    let mut rendered = templates.render(context).map_err(|e| {
        // the rendered subject when it rendered (another part failed)
        let subject = match e.subject {
            Some(s) => mime::header_text(&s).into_owned(),
            None => rt.def.subject.clone(),
        };
        Failure {
            subject,
            reason: e.message,
        }
    })?;
    // the subject as the header carries it (and its events report it)
    if let std::borrow::Cow::Owned(s) = mime::header_text(&rendered.subject) {
        rendered.subject = s;
    }
    if let Some(m) = marks.filter(|m| m.unsubscribes() && rt.def.list_unsubscribe.is_none()) {
        let topic = rt
            .def
            .list_management
            .as_ref()
            .and_then(|l| l.topic.as_deref());
        let u = m.unsubscribe(campaign_no, first, &rcpts[0], topic);
        rendered.list_unsubscribe = u.url;
        rendered.list_unsubscribe_mailto = u.mailto;
    }
    let header_id = format!("{mid}@{}", rt.def.from_domain());
    let date = (volley_spool::now_ms() / 1000) as i64;
    let body = mime::build(&rt.def, &rcpts[0], &rendered, &header_id, date)
        .map_err(with_subject(&rendered.subject))?;
    let sigs = signers
        .sign(rt.def.from_domain(), &body)
        .map_err(with_subject(&rendered.subject))?;
    let headers = Arc::new(headers::SentHeaders::capture(&[&sigs, &body]));
    let data = payload::Payload::new(sigs, body);
    Ok(Outgoing {
        mail_from: return_path(&rt.def.from_addr, &rcpts),
        rcpts,
        data,
        subject: rendered.subject,
        headers,
    })
}

/// Produces a ready-made message: its stored bytes, with a `Message-ID`
/// when it came without one, DKIM-signed by its From domain's keys
/// (its envelope sender is set by the caller).
fn ready_made(
    spool: &Spool,
    signers: &Signers,
    def: &CampaignDef,
    stored: &volley_spool::Campaign,
    campaign_no: u32,
    rcpts: Vec<String>,
) -> Result<Outgoing, Failure> {
    let fail = |reason: String| Failure {
        subject: def.subject.clone(),
        reason,
    };
    let message = CampaignDef::message_bytes(&stored.body)
        .ok_or_else(|| fail(format!("stored message {} is damaged", stored.id)))?;
    let mut body = Vec::with_capacity(message.len() + 128);
    if def.message.as_ref().is_some_and(|m| m.add_message_id) {
        let mid = campaign_message_id(spool.uid(), campaign_no);
        body.extend_from_slice(format!("Message-ID: <{mid}@{}>\r\n", def.from_domain()).as_bytes());
    }
    body.extend_from_slice(message);
    let sigs = signers.sign(def.from_domain(), &body).map_err(fail)?;
    let headers = Arc::new(headers::SentHeaders::capture(&[&sigs, &body]));
    let data = payload::Payload::new(sigs, body);
    Ok(Outgoing {
        mail_from: String::new(),
        rcpts,
        data,
        subject: def.subject.clone(),
        headers,
    })
}

/// The template context of a recipient: its variables plus `email`. Empty
/// CSV cells are left out, so `{{#if var}}` sees them as absent and a bare
/// `{{var}}` fails to render, as SES does for missing attributes.
pub fn variables(
    def: &CampaignDef,
    email: &str,
    vars: Result<Vars<'_>, String>,
) -> Result<serde_json::Value, String> {
    let mut map = match vars.map_err(|e| format!("recipient variables are damaged: {e}"))? {
        Vars::Columns(values) => def
            .columns
            .iter()
            .zip(values)
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.to_string())))
            .collect::<serde_json::Map<_, _>>(),
        Vars::Json(json) => match serde_json::from_str::<serde_json::Value>(json) {
            Ok(serde_json::Value::Object(m)) => m,
            Ok(_) => return Err("recipient variables are not a JSON object".into()),
            Err(e) => return Err(format!("recipient variables are not valid JSON: {e}")),
        },
    };
    map.entry("email")
        .or_insert_with(|| serde_json::Value::String(email.to_string()));
    Ok(serde_json::Value::Object(map))
}
