//! The ingest pipeline: a recipient list into the spool, in three stages
//! that overlap, joined by bounded channels (two batches in flight each):
//!
//! 1. **read** (its own thread): parses the list in batches of
//!    [`BATCH`](super::BATCH) items (rows, rejections, duplicates);
//! 2. **write** (the calling thread): admits each batch's items (rows up to
//!    the resume point were spooled by an earlier run; rejections and
//!    duplicates are counted and reported) and starts appending the admitted
//!    records to the spool;
//! 3. **finish** (its own thread): waits, in order, until each append is
//!    durable, acknowledges it to the caller, and sends the spent records
//!    back to the read thread to be freed where they were allocated (much
//!    cheaper for the allocator than freeing across threads).
//!
//! Stopping (the `stop` flag) ends the write stage at the next batch: what
//! was started is still made durable. The read thread is not waited for (it
//! may be blocked reading a pipe); it ends when it finds the write stage
//! gone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::time::Duration;

use volley_spool::{Recipient, RecipientId, Spool, StartedAppend};

use super::list::{Item, ListError, ListReader};
use super::{BATCH, IngestError, Skipped};

/// What the write stage admits.
pub(super) struct Admit<'a> {
    /// The campaign's number in the spool.
    pub campaign: u32,
    /// Its id (for errors).
    pub id: &'a str,
    /// Rows up to this one were spooled by an earlier run.
    pub skip_to: u32,
    /// Recipients the earlier runs spooled.
    pub earlier: u64,
}

/// What the pipeline did.
pub(super) struct Done {
    pub accepted: u64,
    pub rejected: u64,
    pub duplicates: u64,
    pub interrupted: bool,
}

type Batch = Result<Vec<Item>, ListError>;
type Started = (StartedAppend, Vec<Recipient>);

/// Runs the three stages until the list ends, `stop` is set, or a stage
/// fails; returns once every started append is durable and acknowledged.
pub(super) fn spool_list(
    spool: &Spool,
    reader: ListReader,
    admit: Admit<'_>,
    stop: Option<&AtomicBool>,
    accepted: impl FnMut(&[RecipientId], &[Recipient]) + Send,
    skipped: impl FnMut(Skipped<'_>),
) -> Result<Done, IngestError> {
    let (batch_tx, batches) = mpsc::sync_channel::<Batch>(2);
    let (spent_tx, spent) = mpsc::channel::<Vec<Recipient>>();
    std::thread::spawn(move || read_stage(reader, batch_tx, spent));
    std::thread::scope(|scope| {
        let (started_tx, started) = mpsc::sync_channel::<Started>(2);
        let id = admit.id;
        let earlier = admit.earlier;
        let finisher =
            scope.spawn(move || finish_stage(spool, started, id, earlier, accepted, spent_tx));
        let mut done = Done {
            accepted: 0,
            rejected: 0,
            duplicates: 0,
            interrupted: false,
        };
        let written = write_stage(
            spool, &batches, started_tx, &admit, stop, skipped, &mut done,
        );
        let finished = finisher
            .join()
            .unwrap_or(Err(IngestError::Thread("finishing")));
        match (finished, written) {
            (Err(e), _) => Err(e),
            (Ok(n), Err(IngestError::Spool(error))) => Err(IngestError::Append {
                campaign: id.to_string(),
                accepted: earlier + n,
                error,
            }),
            (Ok(_), Err(e)) => Err(e),
            (Ok(n), Ok(())) => {
                done.accepted = n;
                Ok(done)
            }
        }
    })
}

/// Stage 1: reads batches until the list ends, it fails, or the write
/// stage is gone; frees the spent records it gets back.
fn read_stage(mut reader: ListReader, batches: SyncSender<Batch>, spent: Receiver<Vec<Recipient>>) {
    loop {
        while let Ok(s) = spent.try_recv() {
            drop(s);
        }
        let batch = reader.next_batch(BATCH);
        let last = !matches!(&batch, Ok(b) if !b.is_empty());
        if batches.send(batch).is_err() || last {
            break;
        }
    }
}

/// Stage 2: admits the items of each batch and starts appending the
/// admitted records. Ends at the end of the list, when `stop` is set
/// (`done.interrupted`), or when the finish stage is gone (its error is
/// reported).
fn write_stage(
    spool: &Spool,
    batches: &Receiver<Batch>,
    started: SyncSender<Started>,
    admit: &Admit<'_>,
    stop: Option<&AtomicBool>,
    mut skipped: impl FnMut(Skipped<'_>),
    done: &mut Done,
) -> Result<(), IngestError> {
    let stopped = || stop.is_some_and(|s| s.load(Ordering::Acquire));
    loop {
        if stopped() {
            done.interrupted = true;
            return Ok(());
        }
        let items = match batches.recv_timeout(Duration::from_millis(100)) {
            Ok(batch) => batch?,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return Err(IngestError::Thread("list reading")),
        };
        if items.is_empty() {
            return Ok(());
        }
        let recs = admit.items(items, done, &mut skipped);
        if recs.is_empty() {
            continue;
        }
        let s = spool.append_start(&recs)?;
        if started.send((s, recs)).is_err() {
            return Ok(());
        }
    }
}

impl Admit<'_> {
    /// The records to spool from a batch; counts the rest, and reports
    /// those after the resume point (the earlier run reported the others).
    fn items(
        &self,
        items: Vec<Item>,
        done: &mut Done,
        skipped: &mut impl FnMut(Skipped<'_>),
    ) -> Vec<Recipient> {
        let mut recs = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Item::Row(r) if r.row > self.skip_to => recs.push(Recipient {
                    campaign: self.campaign,
                    row: r.row,
                    email: r.email,
                    vars: r.vars,
                }),
                // spooled by the run that was interrupted
                Item::Row(_) => {}
                Item::Rejected(r) => {
                    done.rejected += 1;
                    if r.row > self.skip_to {
                        skipped(Skipped::Rejected(&r));
                    }
                }
                Item::Duplicate(d) => {
                    done.duplicates += 1;
                    if d.row > self.skip_to {
                        skipped(Skipped::Duplicate(&d));
                    }
                }
            }
        }
        recs
    }
}

/// Stage 3: finishes each started append (durable), in order, and hands
/// its ids and records to `accepted`; returns how many were accepted.
fn finish_stage(
    spool: &Spool,
    started: Receiver<Started>,
    id: &str,
    earlier: u64,
    mut accepted: impl FnMut(&[RecipientId], &[Recipient]),
    spent: Sender<Vec<Recipient>>,
) -> Result<u64, IngestError> {
    let mut n = 0u64;
    for (s, recs) in started {
        let ids = spool
            .append_finish(s)
            .map_err(|error| IngestError::Append {
                campaign: id.to_string(),
                accepted: earlier + n,
                error,
            })?;
        n += ids.len() as u64;
        accepted(&ids, &recs);
        let _ = spent.send(recs);
    }
    Ok(n)
}
