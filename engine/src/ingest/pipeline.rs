//! The ingest pipeline: a recipient list into the spool, in stages that
//! overlap, joined by bounded channels (two batches in flight each):
//!
//! 1. **read** (its own thread): parses the list in batches of
//!    [`BATCH`](super::BATCH) items (rows and rejections), fewer when
//!    the rows' addresses and variables reach
//!    [`BATCH_BYTES`](super::BATCH_BYTES);
//! 2. **dedup** (its own thread): finds the rows whose address an earlier
//!    row had (parsing is the busiest stage: this work stays off it);
//! 3. **write** (its own thread): admits each batch's rows (not the
//!    duplicates; rows up to the resume point were spooled by an earlier
//!    run), counts and reports rejections and duplicates, and starts
//!    appending the admitted records to the spool;
//! 4. **finish** (its own thread): waits, in order, until each append is
//!    durable, acknowledges it to the caller, and sends the spent records
//!    back to the read thread to be freed where they were allocated (much
//!    cheaper for the allocator than freeing across threads). The
//!    duplicates go back with them, behind the admitted records: freed on
//!    the write thread instead, they slowed the read thread (the busiest
//!    stage) by about a tenth at 10 M rows with 1% duplicates (the
//!    allocator's work on chunks handed back across threads; see
//!    `benches/ingest_dedup.rs`).
//!
//! Stopping (the `stop` flag) ends the write stage at the next batch: what
//! was started is still made durable. The read and dedup threads are not
//! waited for (reading may be blocked on a pipe); they end when they find
//! the next stage gone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::time::Duration;

use volley_spool::{Recipient, RecipientId, Spool, StartedAppend};

use super::list::{Item, ListError, ListReader, Locator};
use super::seen::AddressSet;
use super::{BATCH, BATCH_BYTES, Duplicate, IngestError, Skipped};

/// What the write stage admits, and what the dedup stage knows.
pub(super) struct Admit<'a> {
    /// The campaign's number in the spool.
    pub campaign: u32,
    /// Its id (for errors).
    pub id: &'a str,
    /// Rows up to this one were spooled by an earlier run.
    pub skip_to: u32,
    /// Recipients the earlier runs spooled.
    pub earlier: u64,
    /// The addresses seen so far (`None`: duplicates are spooled too, only
    /// for measuring what finding them costs).
    pub seen: Option<AddressSet>,
    /// Size of the list file (0: unknown), to size `seen` once from the
    /// first batch.
    pub list_bytes: u64,
    /// Finds a duplicate's line.
    pub locator: Locator,
}

/// What the pipeline did.
pub(super) struct Done {
    pub accepted: u64,
    pub rejected: u64,
    pub duplicates: u64,
    pub interrupted: bool,
}

type Batch = Result<Vec<Item>, ListError>;
/// A batch, and for each of its rows whether its address is new (empty
/// when duplicates are not looked for).
type Marked = Result<(Vec<Item>, Vec<bool>), ListError>;
/// A started append: `recs[..admitted]` are being appended; the rest
/// (duplicates) only go back with them to be freed.
struct Started {
    append: StartedAppend,
    recs: Vec<Recipient>,
    admitted: usize,
}

/// Runs the three stages until the list ends, `stop` is set, or a stage
/// fails; returns once every started append is durable and acknowledged.
pub(super) fn spool_list(
    spool: &Spool,
    reader: ListReader,
    mut admit: Admit<'_>,
    stop: Option<&AtomicBool>,
    accepted: impl FnMut(&[RecipientId], &[Recipient]) + Send,
    skipped: impl FnMut(Skipped<'_>) + Send,
) -> Result<Done, IngestError> {
    let (batch_tx, batches) = mpsc::sync_channel::<Batch>(2);
    let (marked_tx, marked) = mpsc::sync_channel::<Marked>(2);
    let (spent_tx, spent) = mpsc::channel::<Vec<Recipient>>();
    named("ingest-read")
        .spawn(move || read_stage(reader, batch_tx, spent))
        .map_err(|_| IngestError::Thread("list reading"))?;
    let (seen, list_bytes) = (admit.seen.take(), admit.list_bytes);
    // should this fail, the read thread ends at its next batch
    named("ingest-dedup")
        .spawn(move || dedup_stage(seen, list_bytes, batches, marked_tx))
        .map_err(|_| IngestError::Thread("duplicate finding"))?;
    std::thread::scope(|scope| {
        let (started_tx, started) = mpsc::sync_channel::<Started>(2);
        let id = admit.id;
        let earlier = admit.earlier;
        let finisher = named("ingest-finish")
            .spawn_scoped(scope, move || {
                finish_stage(spool, started, id, earlier, accepted, spent_tx)
            })
            .map_err(|_| IngestError::Thread("finishing"))?;
        let admit = &admit;
        // should this fail, the finish thread ends with nothing to finish
        let writer = named("ingest-write").spawn_scoped(scope, move || {
            let mut done = Done {
                accepted: 0,
                rejected: 0,
                duplicates: 0,
                interrupted: false,
            };
            let written = write_stage(spool, &marked, started_tx, admit, stop, skipped, &mut done);
            (written, done)
        });
        let written = match writer {
            Ok(w) => w.join().ok(),
            Err(_) => None,
        };
        let finished = finisher
            .join()
            .unwrap_or(Err(IngestError::Thread("finishing")));
        let (written, mut done) = written.ok_or(IngestError::Thread("writing"))?;
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

/// A builder of one of the pipeline's threads, named as `top -H` and
/// `perf` show it (at most 15 bytes).
fn named(name: &str) -> std::thread::Builder {
    std::thread::Builder::new().name(name.into())
}

/// Stage 1: reads batches until the list ends, it fails, or the write
/// stage is gone; frees the spent records it gets back.
fn read_stage(mut reader: ListReader, batches: SyncSender<Batch>, spent: Receiver<Vec<Recipient>>) {
    loop {
        while let Ok(s) = spent.try_recv() {
            drop(s);
        }
        let batch = reader.next_batch_within(BATCH, BATCH_BYTES);
        let last = !matches!(&batch, Ok(b) if !b.is_empty());
        if batches.send(batch).is_err() || last {
            break;
        }
    }
}

/// Stage 2: marks the rows of each batch whose address is new, until the
/// list ends or the write stage is gone.
fn dedup_stage(
    mut seen: Option<AddressSet>,
    list_bytes: u64,
    batches: Receiver<Batch>,
    marked: SyncSender<Marked>,
) {
    for batch in batches {
        let batch = batch.map(|items| {
            let mut fresh = Vec::new();
            if let Some(seen) = &mut seen {
                if seen.is_empty() {
                    presize(seen, &items, list_bytes);
                }
                let emails: Vec<&str> = items
                    .iter()
                    .filter_map(|i| match i {
                        Item::Row(r) => Some(r.email.as_str()),
                        Item::Rejected(_) => None,
                    })
                    .collect();
                seen.insert_all(&emails, &mut fresh);
            }
            (items, fresh)
        });
        let last = !matches!(&batch, Ok((b, _)) if !b.is_empty());
        if marked.send(batch).is_err() || last {
            break;
        }
    }
}

/// Stage 3: admits the items of each batch and starts appending the
/// admitted records. Ends at the end of the list, when `stop` is set
/// (`done.interrupted`), or when the finish stage is gone (its error is
/// reported).
fn write_stage(
    spool: &Spool,
    batches: &Receiver<Marked>,
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
        let (items, fresh) = match batches.recv_timeout(Duration::from_millis(100)) {
            Ok(batch) => batch?,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return Err(IngestError::Thread("list reading")),
        };
        if items.is_empty() {
            return Ok(());
        }
        let (recs, admitted) = admit.items(items, &fresh, done, &mut skipped);
        if recs.is_empty() {
            continue;
        }
        let append = match admitted {
            0 => StartedAppend::default(),
            n => spool.append_start(&recs[..n])?,
        };
        let s = Started {
            append,
            recs,
            admitted,
        };
        if started.send(s).is_err() {
            return Ok(());
        }
    }
}

impl Admit<'_> {
    /// The records to spool from a batch (`fresh`: which rows have new
    /// addresses, see [`dedup_stage`]) and how many they are: they come
    /// first, then the duplicates (to be freed on the read thread, see the
    /// module's header). Counts the rest, and reports those after the
    /// resume point (the earlier run reported the others). Rows an earlier
    /// run spooled went into the set of addresses seen too.
    fn items(
        &self,
        items: Vec<Item>,
        fresh: &[bool],
        done: &mut Done,
        skipped: &mut impl FnMut(Skipped<'_>),
    ) -> (Vec<Recipient>, usize) {
        let mut fresh = fresh.iter().copied();
        let mut recs = Vec::with_capacity(items.len());
        let mut duplicates = Vec::new();
        for item in items {
            match item {
                Item::Row(r) if !fresh.next().unwrap_or(true) => {
                    done.duplicates += 1;
                    if r.row > self.skip_to {
                        skipped(Skipped::Duplicate(Duplicate {
                            row: r.row,
                            email: &r.email,
                            start: r.start,
                            locator: &self.locator,
                        }));
                    }
                    duplicates.push(Recipient {
                        campaign: self.campaign,
                        row: r.row,
                        email: r.email,
                        vars: r.vars,
                    });
                }
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
            }
        }
        let admitted = recs.len();
        recs.append(&mut duplicates);
        (recs, admitted)
    }
}

/// Makes room in `seen` for as many addresses as a list of `bytes`
/// probably has, judged by its first rows (at most one per 7 bytes: no row
/// is shorter than `a@b.cd` and a line end).
fn presize(seen: &mut AddressSet, items: &[Item], bytes: u64) {
    let rows = || {
        items.iter().filter_map(|i| match i {
            Item::Row(r) => Some(r),
            Item::Rejected(_) => None,
        })
    };
    let (Some(last), n) = (rows().next_back(), rows().count()) else {
        return;
    };
    if last.start.byte == 0 || bytes == 0 {
        return;
    }
    let per_row = last.start.byte as f64 / f64::from(last.row.max(1));
    let estimate = (bytes as f64 / per_row).min(bytes as f64 / 7.0) as usize;
    let len = rows().map(|r| r.email.len()).sum::<usize>() / n.max(1);
    seen.reserve(estimate.max(n), len);
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
    for Started {
        append,
        recs,
        admitted,
    } in started
    {
        let ids = spool
            .append_finish(append)
            .map_err(|error| IngestError::Append {
                campaign: id.to_string(),
                accepted: earlier + n,
                error,
            })?;
        n += ids.len() as u64;
        if admitted > 0 {
            accepted(&ids, &recs[..admitted]);
        }
        let _ = spent.send(recs);
    }
    Ok(n)
}
