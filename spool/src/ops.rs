//! Spool operations on recipients: record lookup, state queries, campaign
//! seals, journal readers, and the pending work found at open (sink
//! cursors are in `cursors`). Exposure: record bytes come from disk and are
//! validated on every access.

use std::fs;
use std::sync::atomic::Ordering;

use crate::error::{Error, Result};
use crate::index::Retry;
use crate::journal::{Entry, Kind, files};
use crate::record::ArchivedRecipient;
use crate::report::Pending;
use crate::segment::LOST;
use crate::spool::lock;
use crate::summary::Summary;
use crate::{RecipientId, Spool, State};

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
