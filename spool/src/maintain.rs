//! Keeping the spool small: checkpoints (so replay stays short and old
//! journal files can go) and reclamation of finished segments.
//!
//! A checkpoint rotates the journal under its lock, snapshots the index at
//! that exact position, and writes the snapshot durably; journal files
//! wholly before both the newest checkpoint and every sink cursor are then
//! deleted. A segment whose recipients are all final is retired (journaled
//! with the per-domain counts it takes away) and deleted: the journal
//! entries carry everything events need, so nothing reads its records again
//! (but for feedback's attribution, a ledger of its addresses may be kept:
//! see `ledger`).

use std::sync::atomic::Ordering;

use crate::checkpoint::{self, Checkpoint, SegState};
use crate::error::{IoContext, Result};
use crate::journal::{self, Entry, Kind, files};
use crate::segment;
use crate::spool::lock;
use crate::summary::Counts;
use crate::{RecipientId, Spool, State};

impl Spool {
    /// Takes a checkpoint: rotates the journal, snapshots the index at that
    /// position, writes it durably, then deletes journal files that neither
    /// the checkpoint nor any sink cursor needs.
    pub fn checkpoint(&self) -> Result<()> {
        self.check_writable()?;
        let _one = lock(&self.checkpointing);
        let snapshot = {
            let mut j = lock(&self.journal);
            // sync what the old file holds through the group commit, so
            // that a failure sticks
            let old = j.path();
            self.journal_commit.written(j.end, &j.file);
            self.journal_commit
                .wait(j.end)
                .ctx("fdatasync journal", &old)?;
            let file = j.rotate()?;
            self.journal_commit.switch(&file, j.end);
            let index = self.read_index();
            Checkpoint {
                position: j.base,
                next_segment: index.next_segment,
                sealed_campaigns: self
                    .campaigns()
                    .iter()
                    .filter(|c| c.is_sealed())
                    .map(|c| c.no)
                    .collect(),
                segments: index
                    .segs
                    .iter()
                    .map(|(&no, s)| SegState {
                        no,
                        sealed: s.sealed,
                        last_pos: s.last_pos,
                        runs: s.runs.clone(),
                        accepted: Some(s.accepted.truncated(s.journaled)),
                        states: s.states[..(s.journaled as usize).min(s.states.len())].to_vec(),
                    })
                    .collect(),
                retries: index.retries.iter().map(|(id, r)| (*id, *r)).collect(),
                summary: index.summary.clone(),
            }
        };
        checkpoint::write(&self.dir, &snapshot.encode())?;
        self.checkpoint_pos
            .store(snapshot.position, Ordering::Release);
        self.drop_old_journal_files();
        Ok(())
    }

    /// Deletes journal files wholly before both the newest checkpoint and
    /// every sink cursor.
    pub(crate) fn drop_old_journal_files(&self) {
        let keep_from = self
            .checkpoint_pos
            .load(Ordering::Acquire)
            .min(self.min_cursor());
        let Ok(files) = files::list(&self.dir) else {
            return;
        };
        for w in files.windows(2) {
            let ((_, path), (next_base, _)) = (&w[0], &w[1]);
            if *next_base <= keep_from
                && let Err(e) = std::fs::remove_file(path)
            {
                tracing::warn!(path = %path.display(), error = %e, "cannot delete an old journal file");
            }
        }
    }

    /// Deletes segments whose recipients are all final (their outcomes are
    /// journaled, and journal entries carry what events need, so nothing
    /// reads the records again). Returns how many were deleted.
    pub fn reclaim(&self) -> Result<usize> {
        self.check_writable()?;
        let candidates: Vec<u32> = self
            .read_index()
            .segs
            .iter()
            .filter(|(_, s)| s.pending == 0 && !s.states.is_empty())
            .map(|(&no, _)| no)
            .collect();
        if candidates.is_empty() {
            return Ok(0);
        }
        let mut done = 0;
        for no in candidates {
            {
                let mut w = lock(&self.seg_writer);
                if w.as_ref().is_some_and(|w| w.no == no) {
                    let pending = self
                        .read_index()
                        .segs
                        .get(&no)
                        .is_none_or(|s| s.pending > 0);
                    if pending {
                        continue;
                    }
                    *w = None; // the next append starts a new segment
                }
            }
            // per-domain counts this segment takes away from the summary
            // the per-domain counts it takes away, split over as many
            // entries as they need
            let keep_ledger = lock(&self.ledger_keep).is_some();
            let mut ledger: Vec<(u32, String)> = Vec::new();
            let mut entries = {
                let index = self.read_index();
                let Some(seg) = index.segs.get(&no) else {
                    continue;
                };
                let mut by_domain: crate::summary::FastMap<String, Counts> = Default::default();
                for i in 0..seg.states.len() as u32 {
                    if let Some(r) = seg.record(i) {
                        by_domain
                            .entry(r.domain().to_string())
                            .or_default()
                            .add(State::from_u8(seg.states[i as usize]), 1);
                        if keep_ledger {
                            ledger.push((r.campaign.to_native(), r.email.to_string()));
                        }
                    } else if keep_ledger {
                        ledger.push((0, String::new()));
                    }
                }
                let mut entries = Vec::new();
                let mut chunk: Vec<(&str, Counts)> = Vec::new();
                let mut size = 0;
                let mut flush = |chunk: &mut Vec<(&str, Counts)>| {
                    let mut e = Entry::mark(Kind::SegmentRetired, RecipientId::new(no, 0), 0, 0);
                    e.detail = journal::encode_domain_counts(chunk.drain(..));
                    entries.push(e);
                };
                for (d, c) in &by_domain {
                    if size + crate::append::domain_counts_size(d)
                        > crate::append::DOMAIN_COUNTS_LIMIT
                        && !chunk.is_empty()
                    {
                        flush(&mut chunk);
                        size = 0;
                    }
                    size += crate::append::domain_counts_size(d);
                    chunk.push((d.as_str(), *c));
                }
                flush(&mut chunk);
                entries
            };
            // written outside the index lock, before the records go
            if keep_ledger {
                self.write_ledger(no, &ledger);
            }
            self.journal_write(&mut entries, false, |index, es, ends| {
                for (e, &pos) in es.iter().zip(ends) {
                    index.apply_retired(e, pos);
                }
            })?;
            let path = segment::path(&self.dir, no);
            match std::fs::remove_file(&path) {
                Ok(()) => done += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => done += 1,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot delete a finished segment")
                }
            }
        }
        if done > 0 {
            crate::fsync_dir(&self.dir.join("segments"))?;
            tracing::debug!(segments = done, "reclaimed finished segments");
        }
        self.drop_old_journal_files();
        Ok(done)
    }
}
