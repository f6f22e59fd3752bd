//! The spool handle: journals outcomes, takes checkpoints and reclaims
//! what is finished.
//!
//! One writer process holds the lock; any number of threads in it share the
//! handle. Lock order: segment writer, then journal, then index. Appends
//! live in [`crate::append`]. Outcomes are stamped, written and applied
//! under the journal lock and returned once durable. Opening lives in
//! [`crate::recover`], lookups in [`crate::ops`].

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::campaign::{self, Campaign};
use crate::commit::GroupCommit;
use crate::error::{Error, IoContext, Result};
use crate::index::Index;
use crate::journal::{Entry, files};
use crate::record::CampaignRecord;
use crate::report::Pending;

/// Journal bytes after which a checkpoint is taken.
pub const CHECKPOINT_EVERY: u64 = 16 << 20;
/// Journal bytes between checkpoints while the disk is full (the journal
/// then lives on its reserve, `journal::files::RESERVE`).
pub const PRESSED_CHECKPOINT_EVERY: u64 = 512 << 10;
/// Journal bytes since the last checkpoint after which a journal write
/// that found the disk full takes another.
const RELIEF_CHECKPOINT_AFTER: u64 = 64 << 10;

pub(crate) struct SegWriter {
    pub(crate) no: u32,
    pub(crate) file: Arc<File>,
    pub(crate) pos: u64,
    /// Records in the segment, including those still in `buf`.
    pub(crate) count: u32,
}

/// The spool. See the crate documentation for the durability contract.
pub struct Spool {
    pub(crate) dir: PathBuf,
    pub(crate) uid: u64,
    pub(crate) read_only: bool,
    pub(crate) _lock: Option<File>,
    pub(crate) index: RwLock<Index>,
    pub(crate) campaigns: RwLock<BTreeMap<u32, Arc<Campaign>>>,
    /// Campaign ids in use and the next number (made at the first create).
    pub(crate) names: Mutex<Option<CampaignNames>>,
    /// Campaign files of ready-made messages (see `messages`).
    pub(crate) packs: Mutex<crate::messages::Packs>,
    pub(crate) seg_writer: Mutex<Option<SegWriter>>,
    pub(crate) seg_commit: GroupCommit,
    pub(crate) journal: Mutex<files::Writer>,
    pub(crate) journal_commit: GroupCommit,
    /// The sinks' lowest position: the journal's pages below it are let go.
    pub(crate) journal_floor: Mutex<crate::journal::floor::Floor>,
    /// Journal position of the newest checkpoint.
    pub(crate) checkpoint_pos: AtomicU64,
    pub(crate) checkpointing: Mutex<()>,
    pub(crate) pending: Mutex<Option<Pending>>,
    /// Stamps campaign creation and acceptance times.
    pub(crate) clock: crate::Clock,
    /// How long reclaimed segments' ledgers are kept (`None`: none).
    pub(crate) ledger_keep: Mutex<Option<std::time::Duration>>,
    /// When old ledgers were last looked for.
    pub(crate) ledger_expired: Mutex<Option<std::time::Instant>>,
}

/// Campaign ids in use and the next free campaign number.
pub(crate) struct CampaignNames {
    ids: std::collections::HashMap<String, u32>,
    next: u32,
}

impl CampaignNames {
    /// Forgets a reclaimed campaign's id (its number stays used).
    pub(crate) fn forget(&mut self, id: &str) {
        self.ids.remove(id);
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Spool {
    pub(crate) fn read_index(&self) -> RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn write_index(&self) -> RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        Ok(())
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// False once an fdatasync failed: the spool then refuses to acknowledge
    /// anything more, and the process should be restarted to reopen it.
    pub fn healthy(&self) -> bool {
        self.failure().is_none()
    }

    /// Why the spool refuses to acknowledge anything more (a failed
    /// fdatasync, naming what failed and the OS error), or `None` while it
    /// is healthy. Sticky: only reopening the spool clears it.
    pub fn failure(&self) -> Option<String> {
        let failed = |what: &str, why: String| {
            format!(
                "fdatasync of the spool's {what} failed ({why}); the spool {} refuses writes until it is reopened",
                self.dir.display()
            )
        };
        if let Some(why) = self.journal_commit.failed() {
            return Some(failed("journal", why));
        }
        self.seg_commit.failed().map(|why| failed("segments", why))
    }

    /// Random identifier of this spool, fixed at creation.
    pub fn uid(&self) -> u64 {
        self.uid
    }

    /// Stores a campaign durably; its id must be new.
    pub fn create_campaign(&self, id: &str, body: &[u8]) -> Result<Arc<Campaign>> {
        let mut made = self.create_campaigns(&[(id, body)])?;
        made.pop()
            .ok_or_else(|| Error::Encode("internal: no campaign made".into()))
    }

    /// Stores several campaigns durably at once, in one file (a producer
    /// of many small messages, each its own campaign, commits them in
    /// groups: one file sync per group). Every id must be new; on an error
    /// none of the batch is acknowledged (when its file reached its place,
    /// the campaigns are kept, without recipients).
    pub fn create_campaigns(&self, items: &[(&str, &[u8])]) -> Result<Vec<Arc<Campaign>>> {
        self.check_writable()?;
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let created_ms = (self.clock)();
        let recs = {
            let mut names = lock(&self.names);
            if names.is_none() {
                *names = Some(self.campaign_names()?);
            }
            let Some(names) = names.as_mut() else {
                unreachable!("set above")
            };
            for (k, (id, _)) in items.iter().enumerate() {
                if names.ids.contains_key(*id) || items[..k].iter().any(|(other, _)| other == id) {
                    return Err(Error::DuplicateCampaign(id.to_string()));
                }
            }
            let mut recs = Vec::with_capacity(items.len());
            for (id, body) in items {
                let no = names.next;
                names.next = no
                    .checked_add(1)
                    .ok_or_else(|| Error::Encode("campaign numbers exhausted".into()))?;
                names.ids.insert(id.to_string(), no);
                recs.push(CampaignRecord {
                    no,
                    id: id.to_string(),
                    created_ms,
                    body: body.to_vec(),
                });
            }
            recs
        };
        if let Err(e) = campaign::write_all(&self.dir, &recs) {
            // ids of campaigns that are not in place may be used again
            let mut names = lock(&self.names);
            if let Some(names) = names.as_mut() {
                let any_placed = campaign::is_placed(&self.dir, &recs);
                if !any_placed {
                    for r in &recs {
                        names.ids.remove(&r.id);
                    }
                }
                // numbers of a batch that left no file are free again
                let (first, last) = (recs[0].no, recs[recs.len() - 1].no);
                if !any_placed && names.next == last + 1 {
                    names.next = first;
                }
            }
            return Err(e);
        }
        lock(&self.packs).added(recs[0].no, recs[recs.len() - 1].no);
        let made: Vec<Arc<Campaign>> = recs
            .into_iter()
            .map(|rec| {
                Arc::new(Campaign {
                    no: rec.no,
                    id: rec.id,
                    created_ms: rec.created_ms,
                    body: rec.body,
                    sealed: false.into(),
                })
            })
            .collect();
        let mut campaigns = self
            .campaigns
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        for c in &made {
            campaigns.insert(c.no, Arc::clone(c));
        }
        Ok(made)
    }

    /// The ids in use and the next free number: numbers still counted in
    /// the index or held by an unreadable file are not free either.
    fn campaign_names(&self) -> Result<CampaignNames> {
        let counted = self
            .read_index()
            .summary
            .campaigns
            .keys()
            .max()
            .copied()
            .unwrap_or(0);
        let campaigns = self
            .campaigns
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let highest = campaigns
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0)
            .max(counted)
            .max(campaign::highest_file_no(&self.dir)?);
        Ok(CampaignNames {
            ids: campaigns.values().map(|c| (c.id.clone(), c.no)).collect(),
            next: highest
                .checked_add(1)
                .ok_or_else(|| Error::Encode("campaign numbers exhausted".into()))?,
        })
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
        let no = {
            let mut names = lock(&self.names);
            if names.is_none() {
                match self.campaign_names() {
                    Ok(n) => *names = Some(n),
                    // (the directory could not be listed) a plain search
                    Err(_) => {
                        return self
                            .campaigns
                            .read()
                            .unwrap_or_else(PoisonError::into_inner)
                            .values()
                            .find(|c| c.id == id)
                            .cloned();
                    }
                }
            }
            *names.as_ref()?.ids.get(id)?
        };
        self.campaign(no)
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

    /// Writes journal entries under the journal lock, lets `apply` update
    /// the index with each entry's end position, and waits until they are
    /// durable. Returns the end position.
    pub(crate) fn journal_write(
        &self,
        entries: &mut [Entry],
        stamp: bool,
        apply: impl FnOnce(&mut Index, &[Entry], &[u64]),
    ) -> Result<u64> {
        self.check_writable()?;
        if let Some(why) = self.journal_commit.failed() {
            return Err(Error::Io {
                op: "write journal",
                path: self.dir.join("journal"),
                error: std::io::Error::other(format!(
                    "the journal refuses writes after a failed fdatasync ({why}); restart to reopen the spool"
                )),
            });
        }
        let end = {
            let mut j = lock(&self.journal);
            if stamp {
                let index = self.read_index();
                for e in entries.iter_mut() {
                    index.stamp(e);
                }
            }
            let mut ends = Vec::with_capacity(entries.len());
            let end = j.append(entries, &mut ends)?;
            apply(&mut self.write_index(), entries, &ends);
            self.journal_commit.written(end, &j.file);
            end
        };
        self.journal_commit
            .wait(end)
            .ctx("fdatasync journal", &self.dir.join("journal"))?;
        Ok(end)
    }

    /// Journals spool-level marks durably and applies them.
    pub(crate) fn journal_marks(&self, mut entries: Vec<Entry>) -> Result<u64> {
        self.journal_write(&mut entries, false, |index, es, ends| {
            for (e, &pos) in es.iter().zip(ends) {
                index.apply_mark(e, pos);
            }
        })
    }

    /// The journal could not be written for lack of space: deletes the
    /// journal files nothing needs any more (the sink cursors may have
    /// passed them since the last checkpoint) and, when the journal has
    /// grown since that checkpoint, takes one, so that the files before it
    /// go too as the cursors pass.
    fn relieve(&self) {
        self.drop_old_journal_files();
        let since = self
            .journal_end()
            .saturating_sub(self.checkpoint_pos.load(Ordering::Acquire));
        if since > RELIEF_CHECKPOINT_AFTER
            && let Err(e) = self.checkpoint()
        {
            tracing::debug!(error = %e, "cannot write a checkpoint on a full disk");
        }
    }

    /// Journals outcomes durably and applies them to the in-memory state.
    /// Each entry is stamped with the recipient's previous state, campaign
    /// and domain. Returns the journal position just after them.
    /// On a full disk the error is returned after room was made where it
    /// could be (see [`Spool::relieve`]): the caller's retry may then pass.
    pub fn record(&self, entries: &[Entry]) -> Result<u64> {
        let mut entries = entries.to_vec();
        let written = self.journal_write(&mut entries, true, |index, es, ends| {
            for (e, &pos) in es.iter().zip(ends) {
                if e.kind.outcome_state().is_some() {
                    index.apply(e, pos, true);
                } else {
                    index.apply_mark(e, pos);
                }
            }
        });
        let end = match written {
            Err(e) if e.is_no_space() => {
                self.relieve();
                return Err(e);
            }
            r => r?,
        };
        let since = end.saturating_sub(self.checkpoint_pos.load(Ordering::Acquire));
        // on a full disk the journal lives on its reserve: checkpoint early,
        // so that the files behind the checkpoint and the sink cursors go
        // before the reserve runs out
        let pressed = since > PRESSED_CHECKPOINT_EVERY && lock(&self.journal).starved();
        if (since > CHECKPOINT_EVERY || pressed)
            && let Err(e) = self.checkpoint()
        {
            // the entries are durable; only replay gets longer
            tracing::warn!(error = %e, "cannot write a checkpoint (retried later)");
        }
        Ok(end)
    }
}
