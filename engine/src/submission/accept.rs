//! The acceptor: stores ready-made messages durably, in groups, and hands
//! their recipients to delivery.
//!
//! One thread takes whatever messages producers have queued (up to a
//! group's bound), stores each as its own campaign (its definition and
//! bytes; the group's in one pack file), appends all their recipients as
//! ordinary records and seals the campaigns (one group commit), gives the
//! recipients to the engine and only then
//! answers each producer with the message's SES message id. While one
//! group is being made durable the next one gathers, so many sessions share
//! each sync: a group costs one campaign file (a pack) with its directory,
//! one segment sync and one journal sync, however many messages it has. A failure answers every message of its group with the error
//! (nothing of it was acknowledged). Exposure: none (messages are checked
//! by [`super::message::prepare`] before they get here).

use std::sync::Arc;

use tokio::sync::oneshot;
use volley_spool::{Recipient, Spool};

use super::message::Prepared;
use crate::engine::Handle;
use crate::ingest::Domains;

/// Most messages in one group.
pub const GROUP_MESSAGES: usize = 512;
/// Most message bytes in one group (a group's bodies are held in memory).
pub const GROUP_BYTES: usize = 64 << 20;

/// Why a message was not accepted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AcceptError {
    #[error("the spool could not store the message: {0}")]
    Spool(String),
    #[error("the service is stopping")]
    Stopping,
}

/// A message and whom to tell when it is durable.
struct Pending {
    prepared: Prepared,
    reply: oneshot::Sender<Result<String, AcceptError>>,
}

/// Counters of what the acceptor did.
#[derive(Debug, Default)]
pub struct AcceptStats {
    pub messages: std::sync::atomic::AtomicU64,
    pub recipients: std::sync::atomic::AtomicU64,
    pub groups: std::sync::atomic::AtomicU64,
}

/// Handle to the acceptor thread (cloneable; the thread ends when every
/// handle is dropped).
#[derive(Clone)]
pub struct Acceptor {
    tx: crossbeam_channel::Sender<Pending>,
    pub stats: Arc<AcceptStats>,
}

impl Acceptor {
    /// Starts the acceptor on `spool`, feeding `engine` (none: the
    /// recipients wait in the spool for the next `run`).
    pub fn start(
        spool: Arc<Spool>,
        engine: Option<Handle>,
    ) -> (Acceptor, std::thread::JoinHandle<()>) {
        let (tx, rx) = crossbeam_channel::unbounded::<Pending>();
        let stats = Arc::new(AcceptStats::default());
        let st = Arc::clone(&stats);
        let handle = std::thread::Builder::new()
            .name("acceptor".into())
            .spawn(move || run(&spool, engine.as_ref(), &rx, &st))
            .expect("spawning the acceptor thread");
        (Acceptor { tx, stats }, handle)
    }

    /// Stores a message; returns its SES message id once it and its
    /// recipients are durable.
    pub async fn accept(&self, prepared: Prepared) -> Result<String, AcceptError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending { prepared, reply })
            .map_err(|_| AcceptError::Stopping)?;
        rx.await.unwrap_or(Err(AcceptError::Stopping))
    }

    /// Queues a message; the receiver gets its answer (an async caller
    /// queues several, then awaits each).
    pub fn submit_async(
        &self,
        prepared: Prepared,
    ) -> oneshot::Receiver<Result<String, AcceptError>> {
        let (reply, rx) = oneshot::channel();
        let _ = self.tx.send(Pending { prepared, reply });
        rx
    }

    /// Queues a message without waiting (a thread outside the runtime
    /// queues many, then waits for each [`Ticket`]).
    pub fn submit(&self, prepared: Prepared) -> Ticket {
        let (reply, rx) = oneshot::channel();
        let _ = self.tx.send(Pending { prepared, reply });
        Ticket(rx)
    }
}

/// The answer to come for a message given to [`Acceptor::submit`].
pub struct Ticket(oneshot::Receiver<Result<String, AcceptError>>);

impl Ticket {
    /// Waits (blocking: not on the runtime's threads) for the answer.
    pub fn wait(self) -> Result<String, AcceptError> {
        self.0.blocking_recv().unwrap_or(Err(AcceptError::Stopping))
    }
}

fn run(
    spool: &Spool,
    engine: Option<&Handle>,
    rx: &crossbeam_channel::Receiver<Pending>,
    stats: &AcceptStats,
) {
    let mut domains = Domains::default();
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        let mut bytes = group[0].prepared.message.len();
        while group.len() < GROUP_MESSAGES && bytes < GROUP_BYTES {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += p.prepared.message.len();
                    group.push(p);
                }
                Err(_) => break,
            }
        }
        // producers that gave up (a closed session) are still stored: the
        // client may have been told nothing, and a duplicate beats a loss
        match store(spool, engine, &mut domains, &group) {
            Ok(ids) => {
                use std::sync::atomic::Ordering::Relaxed;
                stats.groups.fetch_add(1, Relaxed);
                stats.messages.fetch_add(group.len() as u64, Relaxed);
                let rcpts: usize = group.iter().map(|p| p.prepared.rcpts.len()).sum();
                stats.recipients.fetch_add(rcpts as u64, Relaxed);
                for (p, id) in group.into_iter().zip(ids) {
                    let _ = p.reply.send(Ok(id));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, messages = group.len(), "messages not accepted");
                for p in group {
                    let _ = p.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Stores a group durably; returns each message's SES message id.
fn store(
    spool: &Spool,
    engine: Option<&Handle>,
    domains: &mut Domains,
    group: &[Pending],
) -> Result<Vec<String>, AcceptError> {
    let err = |e: volley_spool::Error| AcceptError::Spool(e.to_string());
    let bodies: Vec<Vec<u8>> = group.iter().map(|p| p.prepared.stored()).collect();
    let items: Vec<(&str, &[u8])> = group
        .iter()
        .zip(&bodies)
        .map(|(p, b)| (p.prepared.def.id.as_str(), b.as_slice()))
        .collect();
    let campaigns = spool.create_campaigns(&items).map_err(err)?;
    drop(bodies);
    let mut recs = Vec::new();
    for (p, c) in group.iter().zip(&campaigns) {
        for (i, r) in p.prepared.rcpts.iter().enumerate() {
            recs.push(Recipient {
                campaign: c.no,
                row: i as u32 + 1,
                email: r.clone(),
                vars: Vec::new(),
            });
        }
    }
    let nos: Vec<u32> = campaigns.iter().map(|c| c.no).collect();
    let ids = spool.append_and_seal(&recs, &nos).map_err(err)?;
    if let Some(h) = engine {
        h.enqueue_records(domains, &ids, &recs, None);
    }
    Ok(campaigns
        .iter()
        .map(|c| crate::message::campaign_message_id(spool.uid(), c.no))
        .collect())
}
