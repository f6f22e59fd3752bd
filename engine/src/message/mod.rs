//! Message production: render → MIME → DKIM → dot-stuffed DATA payload, on a
//! fixed pool of CPU threads fed through a crossbeam channel.
//!
//! Each worker reads the recipient record from the spool (memory map), keeps
//! its own cache of compiled campaign templates, and sends the finished
//! message to the destination shard's ready queue, or a `RenderFailed`
//! report straight to the recorder. The async I/O threads never do this CPU
//! work. Exposure: records and campaign bodies come from the spool (disk).

pub mod dkim;
pub mod keygen;
pub mod mime;
pub mod template;

use std::collections::HashMap;
use std::sync::Arc;

use volley_spool::{RecipientId, Spool, Vars};

use crate::campaign::CampaignDef;
use crate::delivery::{Outgoing, Ready, Report, Work};
use crate::outcome::Outcome;
use dkim::Signers;
use template::Templates;

/// The SES-style message id of a recipient's message (stable across retries).
pub fn message_id(uid: u64, id: RecipientId) -> String {
    format!("{uid:016x}{:016x}-000000", id.0)
}

/// One production request.
pub struct Job {
    pub work: Work,
    pub ready: async_channel::Sender<Ready>,
    pub permit: tokio::sync::OwnedSemaphorePermit,
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
        match produce(ctx, &mut cache, &job.work) {
            Ok(msg) => {
                let ready = Ready {
                    work: job.work,
                    msg,
                    permit: job.permit,
                };
                // A closed queue means the shard stopped (shutdown): the
                // recipient stays queued in the spool.
                let _ = job.ready.try_send(ready);
            }
            Err((subject, message)) => {
                let _ = ctx.recorder.send(Report {
                    work: job.work,
                    outcome: Outcome::RenderFailed { message },
                    subject,
                    at_ms: volley_spool::now_ms(),
                    permit: Some(job.permit),
                    site: None,
                    retry: None,
                });
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

/// Produces one message; on failure returns (subject, reason).
fn produce(
    ctx: &ProduceCtx,
    cache: &mut HashMap<u32, Result<Arc<CampaignRt>, String>>,
    work: &Work,
) -> Result<Outgoing, (String, String)> {
    let fail = |m: String| (String::new(), m);
    let campaign_no = ctx
        .spool
        .with_record(work.id, |r| r.campaign.to_native())
        .map_err(|e| fail(e.to_string()))?;
    let rt = campaign(ctx, cache, campaign_no).clone().map_err(fail)?;
    let (email, vars) = ctx
        .spool
        .with_record(work.id, |r| {
            (
                r.email.to_string(),
                variables(&rt.def, r.email.as_str(), r.vars()),
            )
        })
        .map_err(|e| fail(e.to_string()))?;
    let ctx_value = vars.map_err(|e| (rt.def.subject.clone(), e))?;
    let rendered = rt
        .templates
        .render(ctx_value)
        .map_err(|e| (rt.def.subject.clone(), e.message))?;
    let mid = message_id(ctx.spool.uid(), work.id);
    let header_id = format!("{mid}@{}", rt.def.from_domain());
    let date = (volley_spool::now_ms() / 1000) as i64;
    let body = mime::build(&rt.def, &email, &rendered, &header_id, date)
        .map_err(|e| (rendered.subject.clone(), e))?;
    let sigs = ctx
        .signers
        .sign(rt.def.from_domain(), &body)
        .map_err(|e| (rendered.subject.clone(), e))?;
    let mut data = Vec::with_capacity(sigs.len() + body.len() + 64);
    crate::delivery::smtp::session::dot_stuff(
        &[sigs.as_slice(), body.as_slice()].concat(),
        &mut data,
    );
    Ok(Outgoing {
        mail_from: rt.def.from_addr.clone(),
        rcpt: email,
        data,
        subject: rendered.subject,
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
