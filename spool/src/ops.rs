//! Spool operations on recipients: record lookup, state queries, journal
//! commits, journal readers and sink cursors.
//!
//! Journal commits follow the same group-commit rule as appends: an outcome
//! is applied to the in-memory index only after it is durable. Sink cursors
//! are small files replaced atomically (write, sync, rename, sync dir).
//! Exposure: record bytes come from disk and are validated on every access.

use std::fs;
use std::io::Write;
use std::sync::PoisonError;
use std::sync::atomic::Ordering;

use crate::error::{Error, IoContext, Result};
use crate::index::Retry;
use crate::journal::{self, Entry, Kind};
use crate::record::{self, ArchivedRecipient, MAX_RECORD};
use crate::segment::LOST;
use crate::{RecipientId, Spool, State, frame};

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
        match frame::read(&seg.map, off as usize, MAX_RECORD) {
            frame::Read::Frame { payload, .. } => record::access(payload)
                .map(f)
                .map_err(|reason| Error::BadRecord { id, reason }),
            other => Err(Error::BadRecord {
                id,
                reason: format!("frame unreadable: {other:?}"),
            }),
        }
    }

    /// Current state of a recipient.
    pub fn state(&self, id: RecipientId) -> Option<State> {
        self.read_index().state(id)
    }

    /// Retry bookkeeping of a deferred recipient.
    pub fn retry(&self, id: RecipientId) -> Option<Retry> {
        self.read_index().retries.get(&id).copied()
    }

    /// Visits every recipient in id order with its state and, when deferred,
    /// its retry bookkeeping. Damaged records are skipped.
    pub fn for_each(
        &self,
        mut f: impl FnMut(RecipientId, State, Option<Retry>, &ArchivedRecipient),
    ) {
        let index = self.read_index();
        for (&no, seg) in &index.segs {
            for (i, (&off, &st)) in seg.offsets.iter().zip(&seg.states).enumerate() {
                if off == LOST {
                    continue;
                }
                let id = RecipientId::new(no, i as u32);
                if let frame::Read::Frame { payload, .. } =
                    frame::read(&seg.map, off as usize, MAX_RECORD)
                    && let Ok(rec) = record::access(payload)
                {
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

    /// Marks a campaign's recipient list as completely spooled (durable).
    pub fn seal_campaign(&self, no: u32) -> Result<()> {
        let c = self.campaign(no).ok_or(Error::UnknownCampaign(no))?;
        self.record(&[Entry {
            kind: Kind::CampaignSealed,
            id: RecipientId(u64::from(no)),
            attempts: 0,
            at_ms: crate::now_ms(),
            next_ms: 0,
            detail: Vec::new(),
        }])?;
        c.sealed.store(true, Ordering::Release);
        Ok(())
    }

    /// Journals entries durably, then applies them to the in-memory state.
    /// Returns the journal offset just after them.
    pub fn record(&self, entries: &[Entry]) -> Result<u64> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let end = {
            let mut w = self.journal.lock().unwrap_or_else(PoisonError::into_inner);
            let end = w.append(entries)?;
            self.journal_commit.written(end, &w.file);
            end
        };
        self.journal_commit
            .wait(end)
            .ctx("fdatasync journal", &self.journal_path)?;
        let mut index = self.write_index();
        for e in entries {
            index.apply(e);
        }
        Ok(end)
    }

    /// Journal offset up to which entries are durable.
    pub fn journal_end(&self) -> u64 {
        self.journal_commit.synced()
    }

    /// A reader of journal entries starting at `pos` (0 = the beginning).
    pub fn journal_reader(&self, pos: u64) -> Result<journal::Reader> {
        journal::Reader::open(&self.journal_path, pos)
    }

    /// Where the sink `name` has read the journal to (0 if never).
    pub fn cursor(&self, name: &str) -> u64 {
        let p = self.dir.join("cursors").join(name);
        match fs::read(&p) {
            Ok(b) if b.len() == 12 => {
                let mut pos = [0u8; 8];
                pos.copy_from_slice(&b[..8]);
                let crc = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
                if crc32fast::hash(&pos) == crc {
                    return u64::from_le_bytes(pos);
                }
                tracing::warn!(path = %p.display(), "cursor file damaged; reading the journal from the start");
                0
            }
            _ => 0,
        }
    }

    /// Durably stores where the sink `name` has read the journal to.
    pub fn set_cursor(&self, name: &str, pos: u64) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let dir = self.dir.join("cursors");
        let p = dir.join(name);
        let tmp = dir.join(format!("{name}.tmp"));
        let mut b = pos.to_le_bytes().to_vec();
        b.extend_from_slice(&crc32fast::hash(&pos.to_le_bytes()).to_le_bytes());
        let mut f = fs::File::create(&tmp).ctx("create cursor", &tmp)?;
        f.write_all(&b).ctx("write cursor", &tmp)?;
        f.sync_data().ctx("sync cursor", &tmp)?;
        fs::rename(&tmp, &p).ctx("rename cursor", &p)?;
        crate::fsync_dir(&dir)
    }
}
