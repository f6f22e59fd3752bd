//! Appending recipients: frames go into the current segment under the
//! writer lock (rolling to a new segment when it is full), the segment is
//! group-committed, then an `Appended` journal entry with per-domain counts
//! is group-committed; only then are the ids returned.

use std::os::unix::fs::FileExt;
use std::sync::MutexGuard;

use crate::error::{Error, IoContext, Result};
use crate::journal::{self, Entry, Kind};
use crate::record::{self, Recipient};
use crate::segment::{self, SEGMENT_BYTES};
use crate::spool::{SegWriter, Spool, lock};
use crate::summary::Counts;
use crate::{RecipientId, State, frame};

/// A batch written by [`Spool::append_start`], not yet acknowledged.
#[derive(Debug, Default)]
pub struct StartedAppend {
    ids: Vec<RecipientId>,
    end: u64,
    entries: Vec<Entry>,
}

impl StartedAppend {
    /// Records in the batch.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

impl Spool {
    /// Appends recipients; returns their ids once they are durable (records
    /// and their journal entry fdatasync'd). Their acceptance time
    /// ([`Spool::accepted_ms`]) is taken when the records are on disk, just
    /// before the journal entry is written.
    ///
    /// On an error nothing of the batch is acknowledged; records of it that
    /// reached the file may still be delivered (at-least-once), and the next
    /// append starts a fresh segment.
    pub fn append(&self, recs: &[Recipient]) -> Result<Vec<RecipientId>> {
        let started = self.append_start(recs)?;
        self.append_finish(started)
    }

    /// First half of [`Spool::append`]: writes and indexes the records (not
    /// yet durable, nothing acknowledged). A producer can start the next
    /// batch while this one is finished on another thread, so writing,
    /// syncing and parsing overlap. Batches must be finished in the order
    /// they were started.
    pub fn append_start(&self, recs: &[Recipient]) -> Result<StartedAppend> {
        self.check_writable()?;
        if let Some(why) = self.seg_commit.failed() {
            return Err(Error::Io {
                op: "write segment",
                path: self.dir.join("segments"),
                error: std::io::Error::other(format!(
                    "segments refuse writes after a failed fdatasync ({why}); restart to reopen the spool"
                )),
            });
        }
        if recs.is_empty() {
            return Ok(StartedAppend::default());
        }
        let mut ranges = Vec::with_capacity(recs.len());
        let mut buf = rkyv::util::AlignedVec::new();
        // sized once: growing a batch of long records by doubling copied
        // and page-faulted it several times over
        let bytes: usize = recs.iter().map(|r| r.email.len() + r.vars.len() + 64).sum();
        let mut frames = Vec::with_capacity(bytes);
        for r in recs {
            buf = record::encode_into(r, buf)?;
            let start = frames.len();
            frame::encode(&mut frames, &buf);
            ranges.push(start..frames.len());
        }
        let mut ids = Vec::with_capacity(recs.len());
        let mut guard = lock(&self.seg_writer);
        let end = match self.append_locked(&mut guard, &frames, &ranges, recs, &mut ids) {
            Ok(end) => end,
            Err(e) => {
                // What this file already holds (earlier batches not yet
                // acknowledged) is synced before any newer file can be, so
                // a later sync never covers it by mistake; then the next
                // append starts a fresh segment.
                if let Some(w) = guard.take() {
                    let end = (u64::from(w.no) << 32) | w.pos;
                    self.seg_commit.written(end, &w.file);
                    let _ = self.seg_commit.wait(end);
                }
                return Err(e);
            }
        };
        drop(guard);
        let entries = appended_entries(recs, &ids);
        Ok(StartedAppend { ids, end, entries })
    }

    /// Second half of [`Spool::append`]: waits until the records are
    /// durable, journals them durably, and returns their ids.
    pub fn append_finish(&self, started: StartedAppend) -> Result<Vec<RecipientId>> {
        self.finish_sealing(started, &[])
    }

    /// [`Spool::append`], and the campaigns `seal` sealed by the same
    /// journal write (a producer whose campaigns are whole with this batch:
    /// one sync fewer).
    pub fn append_and_seal(&self, recs: &[Recipient], seal: &[u32]) -> Result<Vec<RecipientId>> {
        let started = self.append_start(recs)?;
        self.finish_sealing(started, seal)
    }

    fn finish_sealing(&self, started: StartedAppend, seal: &[u32]) -> Result<Vec<RecipientId>> {
        let StartedAppend {
            ids,
            end,
            mut entries,
        } = started;
        if ids.is_empty() {
            self.seal_campaigns(seal)?;
            return Ok(ids);
        }
        let sealed = seal
            .iter()
            .map(|&no| self.campaign(no).ok_or(Error::UnknownCampaign(no)))
            .collect::<Result<Vec<_>>>()?;
        entries.extend(
            seal.iter()
                .map(|&no| Entry::mark(Kind::CampaignSealed, RecipientId(0), no, 0)),
        );
        self.seg_commit
            .wait(end)
            .ctx("fdatasync segment", &self.dir.join("segments"))?;
        // the records are on disk: this is when the spool accepts them
        let accepted_ms = (self.clock)();
        for e in &mut entries {
            e.at_ms = accepted_ms;
        }
        self.journal_write(&mut entries, false, |index, es, ends| {
            for (e, &pos) in es.iter().zip(ends) {
                if e.kind == Kind::Appended {
                    index.apply_appended(e, pos);
                }
            }
            // under the journal lock, as `seal_campaigns` sets them
            for c in &sealed {
                c.sealed.store(true, std::sync::atomic::Ordering::Release);
            }
        })?;
        Ok(ids)
    }

    fn append_locked(
        &self,
        guard: &mut MutexGuard<'_, Option<SegWriter>>,
        frames: &[u8],
        ranges: &[std::ops::Range<usize>],
        recs: &[Recipient],
        ids: &mut Vec<RecipientId>,
    ) -> Result<u64> {
        let mut i = 0;
        while i < recs.len() {
            let fits = |w: &SegWriter| w.pos + ranges[i].len() as u64 <= SEGMENT_BYTES;
            if !guard.as_ref().is_some_and(fits) {
                self.roll_segment(guard)?;
            }
            let Some(w) = guard.as_mut() else {
                unreachable!("roll_segment installs a writer")
            };
            let mut j = i;
            while j < recs.len()
                && w.pos + (ranges[j].end - ranges[i].start) as u64 <= SEGMENT_BYTES
            {
                j += 1;
            }
            let chunk = &frames[ranges[i].start..ranges[j - 1].end];
            let path = segment::path(&self.dir, w.no);
            if let Err(e) = w.file.write_all_at(chunk, w.pos) {
                // Zero what may have reached the file so that no half frame
                // remains (best effort: the disk may be full).
                let _ = w.file.write_all_at(&vec![0u8; chunk.len()], w.pos);
                return Err(e).ctx("write segment", &path);
            }
            let mut index = self.write_index();
            if let Some(seg) = index.segs.get_mut(&w.no) {
                for k in i..j {
                    seg.push_run(w.count + (k - i) as u32, recs[k].campaign);
                    seg.offsets
                        .push((w.pos + (ranges[k].start - ranges[i].start) as u64) as u32);
                    seg.states.push(State::Queued as u8);
                    ids.push(RecipientId::new(w.no, w.count + (k - i) as u32));
                }
                seg.pending += (j - i) as u64;
            }
            drop(index);
            w.count += (j - i) as u32;
            w.pos += chunk.len() as u64;
            i = j;
        }
        let Some(w) = guard.as_ref() else {
            unreachable!("a record was appended")
        };
        let end = (u64::from(w.no) << 32) | w.pos;
        self.seg_commit.written(end, &w.file);
        Ok(end)
    }

    /// Seals the current segment (sync + journal mark) and starts the next
    /// one (created, synced and journaled before anything in it is
    /// acknowledged).
    fn roll_segment(&self, guard: &mut MutexGuard<'_, Option<SegWriter>>) -> Result<()> {
        let next_no = match guard.take() {
            Some(w) => {
                // through the group commit, so that a failure sticks
                let path = segment::path(&self.dir, w.no);
                let end = (u64::from(w.no) << 32) | w.pos;
                self.seg_commit.written(end, &w.file);
                self.seg_commit
                    .wait(end)
                    .ctx("fdatasync sealed segment", &path)?;
                self.journal_marks(vec![Entry::mark(
                    Kind::SegmentSealed,
                    RecipientId::new(w.no, 0),
                    0,
                    w.count,
                )])?;
                w.no + 1
            }
            None => {
                let index = self.read_index();
                index
                    .segs
                    .keys()
                    .next_back()
                    .map_or(1, |n| n + 1)
                    .max(index.next_segment)
                    .max(1)
            }
        };
        let file = segment::create(&self.dir, next_no)?;
        let path = segment::path(&self.dir, next_no);
        let map = segment::map(&file, &path)?;
        self.write_index().segs.insert(
            next_no,
            crate::index::Seg {
                map: Some(map),
                ..Default::default()
            },
        );
        self.journal_marks(vec![Entry::mark(
            Kind::SegmentCreated,
            RecipientId::new(next_no, 0),
            0,
            0,
        )])?;
        **guard = Some(SegWriter {
            no: next_no,
            file,
            pos: segment::HEADER as u64,
            count: 0,
        });
        Ok(())
    }
}

/// Largest per-domain counts put into one journal entry (entries hold at
/// most `journal::MAX_ENTRY` bytes; a run with more domains is split).
pub(crate) const DOMAIN_COUNTS_LIMIT: usize = 48 * 1024;

/// Bytes one domain takes in encoded per-domain counts.
pub(crate) fn domain_counts_size(domain: &str) -> usize {
    1 + domain.len().min(255) + 24
}

/// The `Appended` entries describing a batch: one per run of records in the
/// same segment and campaign (split further when a run has too many
/// domains for one entry), with per-domain counts.
fn appended_entries(recs: &[Recipient], ids: &[RecipientId]) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let mut domains: crate::summary::FastMap<&str, u64> = Default::default();
        let mut size = 0;
        let mut j = i;
        while j < ids.len()
            && ids[j].segment() == ids[i].segment()
            && recs[j].campaign == recs[i].campaign
        {
            let d = crate::record::domain_of(&recs[j].email);
            if !domains.contains_key(d) {
                if size + domain_counts_size(d) > DOMAIN_COUNTS_LIMIT && j > i {
                    break;
                }
                size += domain_counts_size(d);
            }
            *domains.entry(d).or_default() += 1;
            j += 1;
        }
        let detail = journal::encode_domain_counts(domains.iter().map(|(d, n)| {
            (
                *d,
                Counts {
                    queued: *n,
                    ..Counts::default()
                },
            )
        }));
        let mut e = Entry::mark(Kind::Appended, ids[i], recs[i].campaign, (j - i) as u32);
        e.last_row = recs[i..j].iter().map(|r| r.row).max().unwrap_or(0);
        e.detail = detail;
        entries.push(e);
        i = j;
    }
    entries
}

#[cfg(test)]
mod tests;
