//! The spool handle: appends records, journals outcomes, answers lookups.
//!
//! One writer process holds the lock; any number of threads in it share the
//! handle. Appends and journal commits are group-committed (see
//! [`crate::commit`]); lookups read the memory-mapped segments under a read
//! lock. Opening and recovery live in [`crate::recover`].

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::campaign::{self, Campaign};
use crate::commit::GroupCommit;
use crate::error::{Error, IoContext, Result};
use crate::index::Index;
use crate::journal;
use crate::record::{self, CampaignRecord, Recipient};
use crate::segment::{self, SEGMENT_BYTES};
use crate::{RecipientId, State, frame};

/// Something found damaged or repaired while opening.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// File concerned.
    pub path: PathBuf,
    /// What was wrong and what was done about it.
    pub what: String,
    /// Recipients lost because of it, where known.
    pub lost: Vec<RecipientId>,
}

/// What opening the spool found.
#[derive(Debug, Clone, Default)]
pub struct OpenReport {
    pub campaigns: usize,
    pub segments: usize,
    pub recipients: u64,
    pub journal_entries: u64,
    pub damage: Vec<Damage>,
}

impl OpenReport {
    /// Number of recipients known to be lost to damage.
    pub fn lost(&self) -> usize {
        self.damage.iter().map(|d| d.lost.len()).sum()
    }
}

pub(crate) struct SegWriter {
    pub(crate) no: u32,
    pub(crate) file: Arc<File>,
    pub(crate) pos: u64,
    /// Records in the segment, including those still in `buf`.
    pub(crate) count: u32,
    pub(crate) buf: Vec<u8>,
}

/// The spool. See the crate documentation for the durability contract.
pub struct Spool {
    pub(crate) dir: PathBuf,
    pub(crate) uid: u64,
    pub(crate) read_only: bool,
    pub(crate) _lock: Option<File>,
    pub(crate) index: RwLock<Index>,
    pub(crate) campaigns: RwLock<BTreeMap<u32, Arc<Campaign>>>,
    pub(crate) seg_writer: Mutex<Option<SegWriter>>,
    pub(crate) seg_commit: GroupCommit,
    pub(crate) journal: Mutex<journal::Writer>,
    pub(crate) journal_commit: GroupCommit,
    pub(crate) journal_path: PathBuf,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Spool {
    pub(crate) fn read_index(&self) -> RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn write_index(&self) -> RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn check_writable(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        Ok(())
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Random identifier of this spool, fixed at creation.
    pub fn uid(&self) -> u64 {
        self.uid
    }

    /// Stores a campaign durably; its id must be new.
    pub fn create_campaign(&self, id: &str, body: &[u8]) -> Result<Arc<Campaign>> {
        self.check_writable()?;
        let mut campaigns = self
            .campaigns
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if campaigns.values().any(|c| c.id == id) {
            return Err(Error::DuplicateCampaign(id.to_string()));
        }
        let no = campaigns.keys().next_back().map_or(1, |n| n + 1);
        let rec = CampaignRecord {
            no,
            id: id.to_string(),
            created_ms: crate::now_ms(),
            body: body.to_vec(),
        };
        campaign::write(&self.dir, &rec)?;
        let c = Arc::new(Campaign {
            no,
            id: rec.id,
            created_ms: rec.created_ms,
            body: rec.body,
            sealed: false.into(),
        });
        campaigns.insert(no, Arc::clone(&c));
        Ok(c)
    }

    /// The campaign with this number.
    pub fn campaign(&self, no: u32) -> Option<Arc<Campaign>> {
        self.campaigns
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&no)
            .cloned()
    }

    /// The campaign with this user id.
    pub fn campaign_by_id(&self, id: &str) -> Option<Arc<Campaign>> {
        self.campaigns
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .find(|c| c.id == id)
            .cloned()
    }

    /// All campaigns, by number.
    pub fn campaigns(&self) -> Vec<Arc<Campaign>> {
        self.campaigns
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Appends recipients; returns their ids once they are durable.
    ///
    /// On an error nothing of the batch is acknowledged; records of it that
    /// reached the file may still be delivered (at-least-once), and the next
    /// append starts a fresh segment.
    pub fn append(&self, recs: &[Recipient]) -> Result<Vec<RecipientId>> {
        self.check_writable()?;
        let encoded = recs
            .iter()
            .map(record::encode)
            .collect::<Result<Vec<_>>>()?;
        let mut ids = Vec::with_capacity(recs.len());
        let mut guard = lock(&self.seg_writer);
        let written = match self.append_locked(&mut guard, &encoded, &mut ids) {
            Ok(w) => w,
            Err(e) => {
                *guard = None;
                return Err(e);
            }
        };
        drop(guard);
        if let Some(end) = written {
            self.seg_commit
                .wait(end)
                .ctx("fdatasync segment", &self.dir.join("segments"))?;
        }
        Ok(ids)
    }

    fn append_locked(
        &self,
        guard: &mut MutexGuard<'_, Option<SegWriter>>,
        encoded: &[rkyv::util::AlignedVec],
        ids: &mut Vec<RecipientId>,
    ) -> Result<Option<u64>> {
        let mut offsets: Vec<(u32, u32)> = Vec::with_capacity(encoded.len());
        for bytes in encoded {
            let need = frame::frame_len(bytes.len()) as u64;
            let full = match guard.as_ref() {
                None => true,
                Some(w) => w.pos + w.buf.len() as u64 + need > SEGMENT_BYTES,
            };
            if full {
                self.roll_segment(guard, &mut offsets)?;
            }
            let Some(w) = guard.as_mut() else {
                unreachable!("roll_segment installs a writer")
            };
            let off = w.pos + w.buf.len() as u64;
            frame::encode(&mut w.buf, bytes);
            ids.push(RecipientId::new(w.no, w.count));
            w.count += 1;
            offsets.push((w.no, off as u32));
        }
        let Some(w) = guard.as_mut() else {
            return Ok(None);
        };
        self.flush_writer(w, &mut offsets)?;
        let end = (u64::from(w.no) << 32) | w.pos;
        self.seg_commit.written(end, &w.file);
        Ok(Some(end))
    }

    /// Writes the writer's buffer at its position and registers the records.
    fn flush_writer(&self, w: &mut SegWriter, offsets: &mut Vec<(u32, u32)>) -> Result<()> {
        if w.buf.is_empty() {
            return Ok(());
        }
        let path = segment::path(&self.dir, w.no);
        w.file
            .write_all_at(&w.buf, w.pos)
            .ctx("write segment", &path)?;
        w.pos += w.buf.len() as u64;
        w.buf.clear();
        let mut index = self.write_index();
        if let Some(seg) = index.segs.get_mut(&w.no) {
            for &(_, off) in offsets.iter().filter(|(no, _)| *no == w.no) {
                seg.offsets.push(off);
                seg.states.push(State::Queued as u8);
            }
        }
        offsets.retain(|(no, _)| *no != w.no);
        Ok(())
    }

    /// Seals the current segment (flush + sync) and starts the next one.
    fn roll_segment(
        &self,
        guard: &mut MutexGuard<'_, Option<SegWriter>>,
        offsets: &mut Vec<(u32, u32)>,
    ) -> Result<()> {
        let next_no = match guard.as_mut() {
            Some(w) => {
                self.flush_writer(w, offsets)?;
                let path = segment::path(&self.dir, w.no);
                w.file.sync_data().ctx("fdatasync sealed segment", &path)?;
                w.no + 1
            }
            None => self
                .read_index()
                .segs
                .keys()
                .next_back()
                .map_or(1, |n| n + 1),
        };
        let file = segment::create(&self.dir, next_no)?;
        let path = segment::path(&self.dir, next_no);
        let map = segment::map(&file, &path)?;
        self.write_index().add_segment(next_no, map, Vec::new());
        **guard = Some(SegWriter {
            no: next_no,
            file,
            pos: segment::HEADER as u64,
            count: 0,
            buf: Vec::new(),
        });
        Ok(())
    }
}
