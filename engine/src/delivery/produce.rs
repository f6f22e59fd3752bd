//! The production pool: a fixed set of CPU threads, fed through a
//! crossbeam channel, that turn dispatched recipients into messages
//! ([`crate::message::produce`]: render, MIME, DKIM, DATA payload).
//!
//! Each thread keeps its own cache of campaigns and sends the finished
//! message to the destination shard's ready queue, or a `RenderFailed`
//! report straight to the recorder. A panic in template, MIME or signing
//! code becomes a render failure of the job's recipients (their permits
//! are released with it). The async I/O threads never do this CPU work.
//! Exposure: none beyond `message` (records and campaigns from the spool).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use volley_spool::{RecipientId, Spool};

use super::{Held, Ready, Report};
use crate::feedback::suppression::SuppressionList;
use crate::message::dkim::Signers;
use crate::message::{self, Campaigns, Failure};
use crate::outcome::Outcome;

/// One production request: one recipient, or several recipients of one
/// non-personalized campaign (one message for all of them).
pub struct Job {
    pub works: Vec<Held>,
    pub ready: super::ReadyTx,
    /// Its place among the messages produced ahead for the site (given
    /// back when the message is taken, or when it fails).
    pub ticket: super::dest::ReadyTicket,
}

/// What workers share.
pub struct ProduceCtx {
    pub spool: Arc<Spool>,
    pub signers: Arc<Signers>,
    /// Return paths and unsubscribe links (`[feedback]`), if on.
    pub marks: Option<Arc<crate::feedback::marks::Marks>>,
    /// The account's suppression list, checked before each attempt.
    pub suppression: Option<Arc<SuppressionList>>,
    /// The operators' endings, checked before each attempt.
    pub endings: Arc<super::endings::Endings>,
    pub recorder: crossbeam_channel::Sender<Report>,
}

/// Messages produced ahead of the connections (in production, or ready
/// and not yet taken by a connection) of all sites together, per
/// production thread: enough to keep the threads busy, and a bound on
/// rendered mail waiting in memory however many sites and connections
/// there are (each site has its own bound too, see
/// [`super::dest::READY_PER_CONNECTION`]).
pub const AHEAD_PER_THREAD: usize = 16;
/// The least of that bound, whatever the number of threads.
pub const AHEAD_MIN: usize = 64;

/// Handle to the production pool.
#[derive(Clone)]
pub struct Producer {
    tx: crossbeam_channel::Sender<Job>,
    /// Places for messages produced ahead (see [`AHEAD_PER_THREAD`]).
    ahead: Arc<Semaphore>,
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
        let ahead = (threads.max(1) * AHEAD_PER_THREAD).max(AHEAD_MIN);
        let ahead = Arc::new(Semaphore::new(ahead));
        (Producer { tx, ahead }, handles)
    }

    /// Waits for a place for one more message produced ahead; held by the
    /// job's ticket until a connection takes the message (or it is not
    /// produced). Places go in the order asked for.
    pub async fn place(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.ahead).acquire_owned().await.ok()
    }

    /// Queues a job (never blocks; in-flight work is bounded by the shards'
    /// permits).
    pub fn submit(&self, job: Job) {
        let _ = self.tx.send(job);
    }
}

/// The outcome of a recipient on the suppression list (SES: accepted,
/// not sent, a permanent bounce that does not count toward the rate).
pub fn suppressed_outcome() -> Outcome {
    Outcome::Bounced {
        status: "5.1.1".into(),
        diagnostic: "Volley did not send the message to this address because it is on the suppression list for your account".into(),
        bounce_type: "Permanent",
        bounce_subtype: "OnAccountSuppressionList",
    }
}

/// Takes the recipients an operator ended out of `job`, reporting their
/// outcome; false when none is left to produce.
fn drop_ended(ctx: &ProduceCtx, job: &mut Job) -> bool {
    if ctx.endings.none() {
        return true;
    }
    let endings = ctx.endings.get();
    let works = std::mem::take(&mut job.works);
    for (work, permit) in works {
        match endings.verdict(&ctx.spool, &work) {
            None => job.works.push((work, permit)),
            Some(outcome) => {
                let report = Report::untried(work, outcome, String::new(), Some(permit));
                let _ = ctx.recorder.send(report);
            }
        }
    }
    !job.works.is_empty()
}

/// Takes the recipients on the suppression list out of `job`, reporting
/// their outcome; false when none is left to produce.
fn drop_suppressed(ctx: &ProduceCtx, cache: &mut Campaigns, job: &mut Job) -> bool {
    let Some(list) = &ctx.suppression else {
        return true;
    };
    if list.is_empty() {
        return true;
    }
    let works = std::mem::take(&mut job.works);
    for (work, permit) in works {
        let listed = ctx
            .spool
            .with_record(work.id, |r| (r.campaign.to_native(), r.email.to_string()))
            .ok()
            .is_some_and(|(no, email)| {
                let topic = cache.topic(&ctx.spool, no);
                list.contains(&email, topic.as_deref())
            });
        if !listed {
            job.works.push((work, permit));
            continue;
        }
        let _ = ctx.recorder.send(Report::untried(
            work,
            suppressed_outcome(),
            String::new(),
            Some(permit),
        ));
    }
    !job.works.is_empty()
}

fn worker(ctx: &ProduceCtx, rx: &crossbeam_channel::Receiver<Job>) {
    let mut cache = Campaigns::default();
    while let Ok(mut job) = rx.recv() {
        if !drop_ended(ctx, &mut job) || !drop_suppressed(ctx, &mut cache, &mut job) {
            continue;
        }
        let ids: Vec<RecipientId> = job.works.iter().map(|(w, _)| w.id).collect();
        // a panic in a template, MIME or signing library must not take the
        // job's recipients (and permits) with it
        let produced = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            message::produce(
                &ctx.spool,
                &ctx.signers,
                ctx.marks.as_deref(),
                &mut cache,
                &ids,
            )
        }))
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(Failure {
                subject: String::new(),
                reason: format!("internal: producing the message panicked: {what}"),
            })
        });
        match produced {
            Ok(msg) => {
                let ready = Ready {
                    works: job.works,
                    msg,
                    ticket: Some(job.ticket),
                };
                // A closed queue means the shard stopped (shutdown): the
                // recipients stay queued in the spool.
                let _ = job.ready.try_send(Box::new(ready));
            }
            Err(Failure { subject, reason }) => {
                for (work, permit) in job.works {
                    let failed = Outcome::RenderFailed {
                        message: reason.clone(),
                    };
                    let _ = ctx.recorder.send(Report::untried(
                        work,
                        failed,
                        subject.clone(),
                        Some(permit),
                    ));
                }
            }
        }
    }
}
