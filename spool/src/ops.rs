//! Spool operations on recipients: record lookup, state queries, campaign
//! seals, journal readers, sink cursors, and the pending work found at open.
//!
//! Sink cursors are small files replaced atomically (write, sync, rename,
//! sync dir) holding the journal position a sink has published up to and
//! the sink's own state at that point (e.g. the length of its output file),
//! so a sink can undo output written after the cursor. Exposure: record
//! bytes come from disk and are validated on every access.

use std::fs;
use std::io::Write;
use std::sync::atomic::Ordering;

use crate::error::{Error, IoContext, Result};
use crate::index::Retry;
use crate::journal::{Entry, Kind, files};
use crate::record::ArchivedRecipient;
use crate::segment::LOST;
use crate::spool::{Pending, lock};
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
        let c = self.campaign(no).ok_or(Error::UnknownCampaign(no))?;
        self.journal_marks(vec![Entry::mark(
            Kind::CampaignSealed,
            RecipientId(0),
            no,
            0,
        )])?;
        c.sealed.store(true, Ordering::Release);
        Ok(())
    }

    /// Journal position up to which entries are durable.
    pub fn journal_end(&self) -> u64 {
        self.journal_commit.synced()
    }

    /// A reader of journal entries starting at `pos` (0 = the oldest kept).
    pub fn journal_reader(&self, pos: u64) -> Result<files::Reader> {
        files::Reader::open(&self.dir, pos)
    }

    /// Where the sink `name` has published to (zeros if never).
    pub fn cursor(&self, name: &str) -> Cursor {
        read_cursor(&self.dir.join("cursors").join(name)).unwrap_or_default()
    }

    /// The lowest position any sink has published to (0 without sinks).
    pub(crate) fn min_cursor(&self) -> u64 {
        let dir = self.dir.join("cursors");
        let Ok(entries) = fs::read_dir(&dir) else {
            return 0;
        };
        let positions: Vec<u64> = entries
            .filter_map(|e| e.ok())
            .filter(|e| !e.file_name().to_string_lossy().ends_with(".tmp"))
            .filter_map(|e| read_cursor(&e.path()).map(|c| c.position))
            .collect();
        positions.into_iter().min().unwrap_or(0)
    }

    /// Durably stores where the sink `name` has published to.
    pub fn set_cursor(&self, name: &str, c: Cursor) -> Result<()> {
        self.check_writable()?;
        let dir = self.dir.join("cursors");
        let p = dir.join(name);
        let tmp = dir.join(format!("{name}.tmp"));
        let mut b = Vec::with_capacity(20);
        b.extend_from_slice(&c.position.to_le_bytes());
        b.extend_from_slice(&c.sink_state.to_le_bytes());
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        let mut f = fs::File::create(&tmp).ctx("create cursor", &tmp)?;
        f.write_all(&b).ctx("write cursor", &tmp)?;
        f.sync_data().ctx("sync cursor", &tmp)?;
        fs::rename(&tmp, &p).ctx("rename cursor", &p)?;
        crate::fsync_dir(&dir)
    }

    /// fdatasyncs issued so far by (segments, journal): shows group commit.
    pub fn sync_counts(&self) -> (u64, u64) {
        (self.seg_commit.syncs(), self.journal_commit.syncs())
    }
}

fn read_cursor(p: &std::path::Path) -> Option<Cursor> {
    let b = fs::read(p).ok()?;
    if b.len() != 20
        || crc32fast::hash(&b[..16]) != u32::from_le_bytes([b[16], b[17], b[18], b[19]])
    {
        tracing::warn!(path = %p.display(), "cursor file damaged; the sink starts over");
        return None;
    }
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    let position = u64::from_le_bytes(a);
    a.copy_from_slice(&b[8..16]);
    Some(Cursor {
        position,
        sink_state: u64::from_le_bytes(a),
    })
}
