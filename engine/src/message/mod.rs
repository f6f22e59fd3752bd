//! Message production: render → MIME → DKIM → dot-stuffed DATA payload, on a
//! fixed pool of CPU threads fed through a crossbeam channel.
//!
//! The headers the message goes out with are captured here, once per
//! message, for its events ([`headers::SentHeaders`]).
//!
//! Each worker reads the recipient record from the spool (memory map), keeps
//! its own cache of compiled campaign templates, and sends the finished
//! message to the destination shard's ready queue, or a `RenderFailed`
//! report straight to the recorder. The async I/O threads never do this CPU
//! work. Exposure: records and campaign bodies come from the spool (disk).

pub mod dkim;
pub mod headers;
pub mod keygen;
pub mod mime;
pub mod template;
pub mod transfer;

use std::collections::HashMap;
use std::sync::Arc;

use volley_spool::{RecipientId, Spool, Vars};

use crate::campaign::CampaignDef;
use crate::delivery::{Held, Outgoing, Ready, Report, Work};
use crate::outcome::Outcome;
use dkim::Signers;
use template::Templates;

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

/// One production request: one recipient, or several recipients of one
/// non-personalized campaign (one message for all of them).
pub struct Job {
    pub works: Vec<Held>,
    pub ready: async_channel::Sender<Ready>,
}

/// What workers share.
pub struct ProduceCtx {
    pub spool: Arc<Spool>,
    pub signers: Arc<Signers>,
    pub recorder: crossbeam_channel::Sender<Report>,
}

struct CampaignRt {
    def: CampaignDef,
    templates: Templates,
}

/// Handle to the production pool.
#[derive(Clone)]
pub struct Producer {
    tx: crossbeam_channel::Sender<Job>,
}

impl Producer {
    /// Starts `threads` workers; they stop when every handle is dropped.
    pub fn start(
        threads: usize,
        ctx: Arc<ProduceCtx>,
    ) -> (Producer, Vec<std::thread::JoinHandle<()>>) {
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let handles = (0..threads.max(1))
            .map(|i| {
                let rx = rx.clone();
                let ctx = Arc::clone(&ctx);
                std::thread::Builder::new()
                    .name(format!("produce-{i}"))
                    .spawn(move || worker(&ctx, &rx))
                    .expect("spawning a production thread")
            })
            .collect();
        (Producer { tx }, handles)
    }

    /// Queues a job (never blocks; in-flight work is bounded by the shards'
    /// permits).
    pub fn submit(&self, job: Job) {
        let _ = self.tx.send(job);
    }
}

fn worker(ctx: &ProduceCtx, rx: &crossbeam_channel::Receiver<Job>) {
    let mut cache: HashMap<u32, Result<Arc<CampaignRt>, String>> = HashMap::new();
    while let Ok(job) = rx.recv() {
        let works: Vec<&Work> = job.works.iter().map(|(w, _)| w).collect();
        // a panic in a template, MIME or signing library must not take the
        // job's recipients (and permits) with it
        let produced = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            produce(ctx, &mut cache, &works)
        }))
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err((
                String::new(),
                format!("internal: producing the message panicked: {what}"),
            ))
        });
        match produced {
            Ok(msg) => {
                let ready = Ready {
                    works: job.works,
                    msg,
                };
                // A closed queue means the shard stopped (shutdown): the
                // recipients stay queued in the spool.
                let _ = job.ready.try_send(ready);
            }
            Err((subject, message)) => {
                for (work, permit) in job.works {
                    let _ = ctx.recorder.send(Report {
                        work,
                        outcome: Outcome::RenderFailed {
                            message: message.clone(),
                        },
                        subject: subject.clone(),
                        headers: None,
                        at_ms: volley_spool::now_ms(),
                        permit: Some(permit),
                        site: None,
                        retry: None,
                        not_before: None,
                    });
                }
            }
        }
    }
}

fn campaign<'c>(
    ctx: &ProduceCtx,
    cache: &'c mut HashMap<u32, Result<Arc<CampaignRt>, String>>,
    no: u32,
) -> &'c Result<Arc<CampaignRt>, String> {
    cache.entry(no).or_insert_with(|| {
        let c = ctx
            .spool
            .campaign(no)
            .ok_or_else(|| format!("campaign {no} is missing from the spool"))?;
        let def = CampaignDef::from_bytes(&c.body)
            .map_err(|e| format!("campaign {} is unreadable: {e}", c.id))?;
        let templates =
            Templates::compile(&def).map_err(|e| format!("{} template: {}", e.part, e.message))?;
        Ok(Arc::new(CampaignRt { def, templates }))
    })
}

/// Produces the message of `works` (one recipient, or several of one
/// non-personalized campaign); on failure returns (subject, reason).
fn produce(
    ctx: &ProduceCtx,
    cache: &mut HashMap<u32, Result<Arc<CampaignRt>, String>>,
    works: &[&Work],
) -> Result<Outgoing, (String, String)> {
    let fail = |m: String| (String::new(), m);
    let first = works.first().ok_or_else(|| fail("no recipient".into()))?;
    let campaign_no = ctx
        .spool
        .campaign_of(first.id)
        .ok_or_else(|| fail(format!("recipient {} is not in the spool", first.id)))?;
    let rt = campaign(ctx, cache, campaign_no).clone().map_err(fail)?;
    let mut rcpts = Vec::with_capacity(works.len());
    let mut vars = None;
    for w in works {
        let (no, email, v) = ctx
            .spool
            .with_record(w.id, |r| {
                let v = rt
                    .def
                    .personalized
                    .then(|| variables(&rt.def, r.email.as_str(), r.vars()));
                (r.campaign.to_native(), r.email.to_string(), v)
            })
            .map_err(|e| fail(e.to_string()))?;
        if no != campaign_no || (rt.def.personalized && works.len() > 1) {
            return Err(fail(
                "internal: one message for recipients that cannot share it".into(),
            ));
        }
        rcpts.push(email);
        vars = v;
    }
    let (context, mid) = match vars {
        Some(v) => (
            v.map_err(|e| (rt.def.subject.clone(), e))?,
            message_id(ctx.spool.uid(), first.id),
        ),
        None => (
            serde_json::Value::Object(serde_json::Map::new()),
            campaign_message_id(ctx.spool.uid(), campaign_no),
        ),
    };
    let mut rendered = rt.templates.render(context).map_err(|e| {
        // the rendered subject when it rendered (another part failed)
        let subject = match e.subject {
            Some(s) => mime::header_text(&s).into_owned(),
            None => rt.def.subject.clone(),
        };
        (subject, e.message)
    })?;
    // the subject as the header carries it (and its events report it)
    if let std::borrow::Cow::Owned(s) = mime::header_text(&rendered.subject) {
        rendered.subject = s;
    }
    let header_id = format!("{mid}@{}", rt.def.from_domain());
    let date = (volley_spool::now_ms() / 1000) as i64;
    let body = mime::build(&rt.def, &rcpts[0], &rendered, &header_id, date)
        .map_err(|e| (rendered.subject.clone(), e))?;
    let sigs = ctx
        .signers
        .sign(rt.def.from_domain(), &body)
        .map_err(|e| (rendered.subject.clone(), e))?;
    let parts = [sigs.as_slice(), body.as_slice()];
    let headers = Arc::new(headers::SentHeaders::capture(&parts));
    let mut data = Vec::with_capacity(sigs.len() + body.len() + 64);
    crate::delivery::smtp::session::dot_stuff_parts(&parts, &mut data);
    Ok(Outgoing {
        mail_from: rt.def.from_addr.clone(),
        rcpts,
        data,
        subject: rendered.subject,
        headers,
    })
}

/// The template context of a recipient: its variables plus `email`. Empty
/// CSV cells are left out, so `{{#if var}}` sees them as absent and a bare
/// `{{var}}` fails to render, as SES does for missing attributes.
fn variables(
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
