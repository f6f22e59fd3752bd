//! Spool operations on recipients: record lookup, state queries, campaign
//! seals, journal readers, sink cursors, and the pending work found at open.
//!
//! Sink cursors are small files replaced atomically (write, sync, rename,
//! sync dir) holding the journal position a sink has published up to and
//! the sink's own state at that point (e.g. the length of its output file),
//! so a sink can undo output written after the cursor. Exposure: record
//! bytes come from disk and are validated on every access.

use std::fs;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;

use crate::error::{Error, IoContext, Result};
use crate::index::Retry;
use crate::journal::{Entry, Kind, files};
use crate::record::ArchivedRecipient;
use crate::report::Pending;
use crate::segment::LOST;
use crate::spool::lock;
use crate::summary::Summary;
use crate::{RecipientId, Spool, State};

/// Where a sink has published to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    /// Journal position published up to.
    pub position: u64,
    /// The sink's own state at that position.
    pub sink_state: u64,
}

impl Spool {
    /// The campaign number of `id`, from the index (the record is not
    /// read).
    pub fn campaign_of(&self, id: RecipientId) -> Option<u32> {
        let index = self.read_index();
        let seg = index.segs.get(&id.segment())?;
        if id.index() as usize >= seg.states.len() {
            return None;
        }
        seg.campaign_of(id.index())
    }

    /// When the spool accepted recipient `id`, in ms since the Unix epoch:
    /// the clock's time once the append's records were on disk, just before
    /// the journal entry acknowledging them was written (the append returns
    /// after that entry's fdatasync). An append that follows the records
    /// before it within [`crate::ACCEPTED_GRANULE_MS`] (1 s) of their time
    /// shares it, so the time is never later than that moment and less
    /// than 1 s earlier (exact for the first append of such a run, as for
    /// every batch of an ingest). A clock that must not start early (the
    /// `max_age` of a recipient) adds the granule. It survives reopen, checkpoints, journal replay and the
    /// reclamation of other segments. Records adopted at open (written but
    /// never acknowledged before a crash) were accepted when the spool was
    /// opened; records from a spool whose checkpoint predates acceptance
    /// times (format 1) and whose append is no longer in the journal get
    /// their campaign's creation time. `None` for an unknown id or while
    /// its append is not yet acknowledged.
    pub fn accepted_ms(&self, id: RecipientId) -> Option<u64> {
        let index = self.read_index();
        let seg = index.segs.get(&id.segment())?;
        if id.index() as usize >= seg.states.len() {
            return None;
        }
        seg.accepted.at(id.index())
    }

    /// The acceptance time ([`Spool::accepted_ms`]) of the deferred
    /// recipient that has waited longest, if any is deferred. Walks the
    /// deferred recipients (one lookup each, under the index's read lock).
    pub fn oldest_deferred_ms(&self) -> Option<u64> {
        let index = self.read_index();
        index
            .retries
            .keys()
            .filter_map(|id| index.segs.get(&id.segment())?.accepted.at(id.index()))
            .min()
    }

    /// Runs `f` on the archived record of `id`.
    pub fn with_record<R>(
        &self,
        id: RecipientId,
        f: impl FnOnce(&ArchivedRecipient) -> R,
    ) -> Result<R> {
        let index = self.read_index();
        let seg = index
            .segs
            .get(&id.segment())
            .ok_or(Error::UnknownRecipient(id))?;
        let off = *seg
            .offsets
            .get(id.index() as usize)
            .ok_or(Error::UnknownRecipient(id))?;
        if off == LOST {
            return Err(Error::BadRecord {
                id,
                reason: "lost to damage".into(),
            });
        }
        seg.record(id.index())
            .map(f)
            .ok_or_else(|| Error::BadRecord {
                id,
                reason: "record unreadable".into(),
            })
    }

    /// Current state of a recipient.
    pub fn state(&self, id: RecipientId) -> Option<State> {
        self.read_index().state(id)
    }

    /// Retry bookkeeping of a deferred recipient.
    pub fn retry(&self, id: RecipientId) -> Option<Retry> {
        self.read_index().retries.get(&id).copied()
    }

    /// Counts per campaign and per domain, as of now.
    pub fn summary(&self) -> Summary {
        self.read_index().summary.clone()
    }

    /// Visits every readable recipient still in the spool, in id order,
    /// with its state and, when deferred, its retry bookkeeping.
    pub fn for_each(
        &self,
        mut f: impl FnMut(RecipientId, State, Option<Retry>, &ArchivedRecipient),
    ) {
        let index = self.read_index();
        for (&no, seg) in &index.segs {
            for (i, &st) in seg.states.iter().enumerate() {
                let id = RecipientId::new(no, i as u32);
                if let Some(rec) = seg.record(i as u32) {
                    let state = State::from_u8(st);
                    let retry = if state == State::Deferred {
                        index.retries.get(&id).copied()
                    } else {
                        None
                    };
                    f(id, state, retry, rec);
                }
            }
        }
    }

    /// Takes the recipients that were waiting for delivery when the spool
    /// was opened (once; later calls get nothing).
    pub fn take_pending(&self) -> Pending {
        lock(&self.pending).take().unwrap_or_default()
    }

    /// Marks a campaign's recipient list as completely spooled (durable).
    pub fn seal_campaign(&self, no: u32) -> Result<()> {
        self.seal_campaigns(&[no])
    }

    /// [`Spool::seal_campaign`] for several campaigns, in one journal write.
    pub fn seal_campaigns(&self, nos: &[u32]) -> Result<()> {
        let cs = nos
            .iter()
            .map(|&no| self.campaign(no).ok_or(Error::UnknownCampaign(no)))
            .collect::<Result<Vec<_>>>()?;
        let mut es: Vec<Entry> = nos
            .iter()
            .map(|&no| Entry::mark(Kind::CampaignSealed, RecipientId(0), no, 0))
            .collect();
        if es.is_empty() {
            return Ok(());
        }
        // the flags are set under the journal lock, so a checkpoint sees
        // them exactly when its position is past the entries
        self.journal_write(&mut es, false, |_, _, _| {
            for c in &cs {
                c.sealed.store(true, Ordering::Release);
            }
        })?;
        Ok(())
    }

    /// Journals feedback entries ([`Kind::Feedback`]) durably: events for
    /// the sinks, no change of state. Each entry names its campaign and
    /// address itself (the recipient's record may be gone). Returns the
    /// journal position just after them.
    pub fn record_feedback(&self, mut entries: Vec<Entry>) -> Result<u64> {
        if let Some(e) = entries.iter().find(|e| e.kind != Kind::Feedback) {
            return Err(Error::Invalid(format!(
                "record_feedback takes feedback entries only, not {:?}",
                e.kind
            )));
        }
        if entries.is_empty() {
            return Ok(self.journal_end());
        }
        self.journal_write(&mut entries, false, |_, _, _| {})
    }

    /// An id below which lie every recipient appended so far: those
    /// appended later get this id or a greater one (ids grow with each
    /// append: one writer, segments numbered upwards).
    pub fn append_mark(&self) -> RecipientId {
        let guard = lock(&self.seg_writer);
        if let Some(w) = guard.as_ref() {
            return RecipientId::new(w.no, w.count);
        }
        drop(guard);
        let index = self.read_index();
        let next = index
            .segs
            .keys()
            .next_back()
            .map_or(1, |n| n.saturating_add(1))
            .max(index.next_segment);
        RecipientId::new(next, 0)
    }

    /// Journal position up to which entries are durable.
    pub fn journal_end(&self) -> u64 {
        self.journal_commit.synced()
    }

    /// A reader of journal entries starting at `pos` (0 = the oldest kept).
    pub fn journal_reader(&self, pos: u64) -> Result<files::Reader> {
        files::Reader::open(&self.dir, pos)
    }

    /// Where the sink `name` has published to; `None` if it never stored a
    /// cursor (or the cursor is unreadable).
    pub fn cursor(&self, name: &str) -> Option<Cursor> {
        read_cursor(&self.dir.join("cursors").join(name)).map(|(_, c)| c)
    }

    /// The names of the stored sink cursors, sorted.
    pub fn cursor_names(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(self.dir.join("cursors")) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        names
    }

    /// Forgets the cursor of a sink that is gone, so the journal it held
    /// can be retired; no error when there is none.
    pub fn remove_cursor(&self, name: &str) -> Result<()> {
        let dir = self.dir.join("cursors");
        let p = dir.join(name);
        lock(&self.journal_floor).removed(name);
        match fs::remove_file(&p) {
            Ok(()) => crate::fsync_dir(&dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).ctx("remove cursor", &p),
        }
    }

    /// The lowest position any sink has published to (0 without sinks).
    pub(crate) fn min_cursor(&self) -> u64 {
        let dir = self.dir.join("cursors");
        let Ok(entries) = fs::read_dir(&dir) else {
            return 0;
        };
        let positions: Vec<u64> = entries
            .filter_map(|e| e.ok())
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(|e| read_cursor(&e.path()).map(|(_, c)| c.position))
            .collect();
        positions.into_iter().min().unwrap_or(0)
    }

    /// Durably stores where the sink `name` has published to.
    ///
    /// The cursor file has two slots in different disk sectors, written in
    /// turn in place (no new blocks are needed, so this works on a full
    /// disk); a torn write spoils one slot and the other is still valid.
    /// A sink's first cursor needs a new file: when the disk is full, the
    /// spool's cursor reserve (`cursors/.reserve`) gives its space up for it.
    pub fn set_cursor(&self, name: &str, c: Cursor) -> Result<()> {
        self.check_writable()?;
        let stored = match self.write_cursor(name, c) {
            Err(e)
                if e.is_no_space()
                    && std::fs::remove_file(crate::layout::cursor_reserve(&self.dir)).is_ok() =>
            {
                tracing::warn!(
                    sink = name,
                    "the disk is full: the cursor reserve makes room for this sink's first cursor"
                );
                self.write_cursor(name, c)
            }
            r => r,
        };
        if stored.is_ok() {
            self.floor_moved(name, c.position);
        }
        stored
    }

    /// A sink's cursor is at `position`: the journal's pages every sink
    /// has read are let go (see [`crate::journal::floor`]).
    fn floor_moved(&self, name: &str, position: u64) {
        let mut floor = lock(&self.journal_floor);
        if floor.unloaded() {
            let names = self.cursor_names();
            floor.load(
                names
                    .into_iter()
                    .filter_map(|n| self.cursor(&n).map(|c| (n, c.position))),
            );
        }
        floor.moved(&self.dir, name, position);
    }

    fn write_cursor(&self, name: &str, c: Cursor) -> Result<()> {
        let dir = self.dir.join("cursors");
        let p = dir.join(name);
        let (seq, _) = read_cursor_slots(&p)
            .into_iter()
            .flatten()
            .max_by_key(|(s, _)| *s)
            .unwrap_or((0, Cursor::default()));
        let seq = seq + 1;
        let mut slot = Vec::with_capacity(SLOT);
        slot.extend_from_slice(&seq.to_le_bytes());
        slot.extend_from_slice(&c.position.to_le_bytes());
        slot.extend_from_slice(&c.sink_state.to_le_bytes());
        let crc = crc32fast::hash(&slot);
        slot.extend_from_slice(&crc.to_le_bytes());
        let existed = p.exists();
        let f = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&p)
            .ctx("open cursor", &p)?;
        if !existed {
            let sized = f
                .set_len(2 * SLOT_STRIDE)
                .and_then(|()| f.write_all_at(&[0u8; 2 * SLOT_STRIDE as usize], 0))
                .and_then(|()| f.sync_all());
            if let Err(e) = sized {
                // no half-made cursor file is left behind
                let _ = fs::remove_file(&p);
                return Err(e).ctx("write cursor", &p);
            }
        }
        f.write_all_at(&slot, (seq % 2) * SLOT_STRIDE)
            .ctx("write cursor", &p)?;
        f.sync_data().ctx("sync cursor", &p)?;
        if !existed {
            crate::fsync_dir(&dir)?;
        }
        Ok(())
    }

    /// fdatasyncs issued so far by (segments, journal): shows group commit.
    pub fn sync_counts(&self) -> (u64, u64) {
        (self.seg_commit.syncs(), self.journal_commit.syncs())
    }

    /// Bytes of disk the spool's files occupy: their allocated blocks, so
    /// preallocated segments and the journal's reserve count in full. Files
    /// that go away while they are counted (a reclaimed segment) are
    /// skipped; symbolic links are not followed.
    pub fn disk_usage(&self) -> u64 {
        disk_usage(&self.dir)
    }
}

fn disk_usage(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut bytes = 0;
    for e in entries.filter_map(|e| e.ok()) {
        let Ok(meta) = e.path().symlink_metadata() else {
            continue;
        };
        bytes += meta.blocks() * 512;
        if meta.is_dir() {
            bytes += disk_usage(&e.path());
        }
    }
    bytes
}

const SLOT: usize = 28;
const SLOT_STRIDE: u64 = 512;

fn read_cursor_slots(p: &std::path::Path) -> [Option<(u64, Cursor)>; 2] {
    let Ok(b) = fs::read(p) else {
        return [None, None];
    };
    let slot = |k: usize| {
        let s = b.get(k * SLOT_STRIDE as usize..k * SLOT_STRIDE as usize + SLOT)?;
        let crc = u32::from_le_bytes([s[24], s[25], s[26], s[27]]);
        if crc32fast::hash(&s[..24]) != crc {
            return None;
        }
        let u = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&s[i..i + 8]);
            u64::from_le_bytes(a)
        };
        let seq = u(0);
        (seq > 0).then(|| {
            (
                seq,
                Cursor {
                    position: u(8),
                    sink_state: u(16),
                },
            )
        })
    };
    [slot(0), slot(1)]
}

/// The newest valid slot of a cursor file, with its sequence number.
fn read_cursor(p: &std::path::Path) -> Option<(u64, Cursor)> {
    let slots = read_cursor_slots(p);
    let best = slots.into_iter().flatten().max_by_key(|(s, _)| *s);
    if best.is_none() && p.exists() {
        tracing::warn!(path = %p.display(), "cursor file unreadable; the sink starts over (at-least-once)");
    }
    best
}
