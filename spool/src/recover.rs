//! Opening a spool for writing: lock, read campaigns and the newest
//! checkpoint, replay the journal written since, scan the segments, repair
//! torn tails, and account exactly for what is damaged or missing.
//!
//! The phases, in order (each a function here): [`layout::prepare`],
//! [`from_checkpoint`], [`replay_journal`] (per file [`replay_file`]), the
//! segment scan ([`crate::rescan::segments`]), acceptance times still
//! unknown, [`take_census`], [`assemble`], then a checkpoint.
//!
//! A second process gets [`crate::Error::Locked`]. Damage never stops the
//! open: a torn tail is cut (it was never acknowledged); a record that fails
//! its CRC, records a segment should hold but does not, and a missing
//! segment file make their recipients `Lost`, reported by id and campaign in
//! [`OpenReport`]; a damaged checkpoint falls back to the previous one.
//! Segment files that appear with no trace in the journal are adopted when
//! newer than every known segment (created just before a crash) and deleted
//! when older (left over from reclamation). Records nobody acknowledged
//! (adopted, or written before a crash cut their journal entry) are
//! accepted at the time of the open. A checkpoint is written at the end so
//! that what was found is persisted. Exposure: every file may be damaged or
//! foreign; nothing here panics on content.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};

use crate::accepted::AcceptedTimes;
use crate::campaign::Campaign;
use crate::checkpoint;
use crate::checkpoint::Run;
use crate::commit::GroupCommit;
use crate::error::{IoContext, Result};
use crate::index::{Index, Seg};
use crate::journal::{Kind, files};
use crate::layout;
use crate::report::{Damage, OpenReport, Pending};
use crate::spool::SegWriter;
use crate::summary::{Counts, FastMap};
use crate::{Clock, Spool, State};

impl Spool {
    /// Opens (creating if needed) the spool in `dir` for writing.
    pub fn open(dir: &Path) -> Result<(Spool, OpenReport)> {
        open(dir, Arc::new(crate::now_ms))
    }

    /// [`Spool::open`] with the clock that stamps campaign creation and
    /// acceptance times (tests inject one to move time on).
    pub fn open_with_clock(dir: &Path, clock: Clock) -> Result<(Spool, OpenReport)> {
        open(dir, clock)
    }
}

/// What the checkpoint and the journal since say the spool holds.
struct Restored {
    index: Index,
    sealed: BTreeSet<u32>,
    /// Journal position the checkpoint covers up to (replay starts here).
    from: u64,
}

/// The journal files, as replay left them.
struct JournalTail {
    /// Every journal file, by base position.
    files: Vec<(u64, PathBuf)>,
    /// Position where the next entry goes (after any torn tail was cut).
    end: u64,
    /// Segments the journal says were deleted.
    retired: BTreeSet<u32>,
}

/// Opens a spool in phases: directory, lock and identity; campaigns; the
/// newest usable checkpoint; the journal since; the segment files;
/// acceptance times not known yet; one pass over the records; the handle;
/// a checkpoint of what was found.
fn open(dir: &Path, clock: Clock) -> Result<(Spool, OpenReport)> {
    let started = std::time::Instant::now();
    let (lock, uid) = layout::prepare(dir)?;
    let mut report = OpenReport::default();
    let campaigns = layout::read_campaigns(dir, true, &mut report.damage)?;
    let mut restored = from_checkpoint(dir, &campaigns, &mut report);
    let journal = replay_journal(dir, &mut restored, &mut report)?;
    let writer = crate::rescan::segments(dir, &mut restored.index, &journal.retired, &mut report)?;
    // records adopted, or whose append never reached the journal: the
    // spool takes them on now
    let opened_ms = clock();
    for seg in restored.index.segs.values_mut() {
        seg.accepted
            .fill_unknown(seg.states.len() as u32, opened_ms);
    }
    let pending = take_census(&mut restored.index, &mut report);
    for (no, c) in &campaigns {
        if restored.sealed.contains(no) {
            c.sealed.store(true, std::sync::atomic::Ordering::Release);
        }
    }
    report.campaigns = campaigns.len();
    report.segments = restored.index.segs.len();
    for d in &report.damage {
        tracing::warn!(path = %d.path.display(), lost = d.lost.len(), campaigns = ?d.campaigns, "{}", d.what);
    }
    let spool = assemble(
        dir,
        Recovered {
            lock,
            uid,
            campaigns,
            restored,
            journal,
            writer,
            pending,
            clock,
        },
    )?;
    let scanned = started.elapsed();
    // persist what recovery found (and start a fresh journal file); on a
    // full disk this can fail, and the spool works on without it
    if let Err(e) = spool.checkpoint() {
        tracing::warn!(error = %e, "cannot write a checkpoint after opening (retried later)");
    }
    tracing::info!(
        recipients = report.recipients,
        segments = report.segments,
        replayed = report.journal_entries,
        scan_ms = scanned.as_millis() as u64,
        total_ms = started.elapsed().as_millis() as u64,
        "spool opened"
    );
    Ok((spool, report))
}

/// The index as the newest usable checkpoint has it (empty without one);
/// unusable checkpoints are reported.
fn from_checkpoint(
    dir: &Path,
    campaigns: &BTreeMap<u32, Arc<Campaign>>,
    report: &mut OpenReport,
) -> Restored {
    let (ckpt, problems) = checkpoint::read(dir);
    for p in problems {
        report.damage.push(Damage::note(
            &dir.join("checkpoint"),
            format!("checkpoint unusable ({p}); using an older one or the whole journal"),
        ));
    }
    let mut restored = Restored {
        index: Index::default(),
        sealed: BTreeSet::new(),
        from: 0,
    };
    let Some(c) = ckpt else {
        return restored;
    };
    restored.from = c.position;
    restored.sealed.extend(c.sealed_campaigns);
    let index = &mut restored.index;
    for s in c.segments {
        let pending = s
            .states
            .iter()
            .filter(|&&b| !State::from_u8(b).is_final())
            .count() as u64;
        let accepted = s
            .accepted
            .unwrap_or_else(|| times_before_format_2(&s.runs, s.states.len() as u32, campaigns));
        index.segs.insert(
            s.no,
            Seg {
                map: None,
                offsets: Vec::new(),
                journaled: s.states.len() as u32,
                states: s.states,
                sealed: s.sealed,
                pending,
                last_pos: s.last_pos,
                runs: s.runs,
                accepted,
            },
        );
    }
    index.retries = c.retries.into_iter().collect();
    index.summary = c.summary;
    index.next_segment = c.next_segment;
    restored
}

/// Acceptance times for a segment from a format 1 checkpoint, which did not
/// store them: each record gets its campaign's creation time (what the
/// engine counted from before); when the campaign file is unreadable they
/// stay unknown (and get the open's time). `Appended` entries replayed
/// after the checkpoint set the real times.
fn times_before_format_2(
    runs: &[Run],
    len: u32,
    campaigns: &BTreeMap<u32, Arc<Campaign>>,
) -> AcceptedTimes {
    let mut times = AcceptedTimes::default();
    for (k, run) in runs.iter().enumerate() {
        let end = runs.get(k + 1).map_or(len, |next| next.first.min(len));
        if let Some(c) = campaigns.get(&run.campaign) {
            times.set(run.first, end, c.created_ms);
        }
    }
    times
}

/// Replays the journal written since the checkpoint into the index,
/// reporting gaps and damage and cutting a torn tail of the newest file.
fn replay_journal(
    dir: &Path,
    restored: &mut Restored,
    report: &mut OpenReport,
) -> Result<JournalTail> {
    let from = restored.from;
    let mut files = files::list(dir)?;
    if files.is_empty() {
        files::create(dir, from)?;
        files = files::list(dir)?;
    }
    if let Some((first, path)) = files.first()
        && *first > from
    {
        // the checkpoint in use is older than the journal kept (the newest
        // one was unusable): changes in between are unknown
        report.damage.push(Damage::note(
            path,
            format!(
                "journal positions {from} to {first} are gone; recipients whose state changed there may be sent again"
            ),
        ));
    }
    let last_base = files.last().map_or(0, |(b, _)| *b);
    let mut tail = JournalTail {
        files: Vec::new(),
        end: last_base + files::MAGIC.len() as u64,
        retired: BTreeSet::new(),
    };
    for (k, (base, path)) in files.iter().enumerate() {
        let next = files.get(k + 1).map(|(b, _)| *b);
        if next.is_some_and(|n| n <= from) {
            continue; // wholly before the checkpoint
        }
        if let Some(end) = replay_file(path, *base, next.is_none(), restored, &mut tail, report)?
            && next.is_none()
        {
            tail.end = end;
        }
    }
    tail.files = files;
    Ok(tail)
}

/// Replays one journal file from the checkpoint's position on. Returns
/// where its readable entries end (`None` when its header is bad).
fn replay_file(
    path: &Path,
    base: u64,
    newest: bool,
    restored: &mut Restored,
    tail: &mut JournalTail,
    report: &mut OpenReport,
) -> Result<Option<u64>> {
    let bytes = fs::read(path).ctx("read journal", path)?;
    if bytes.len() < files::MAGIC.len() || &bytes[..files::MAGIC.len()] != files::MAGIC {
        report.damage.push(Damage::note(
            path,
            "journal file has a bad header; its entries are skipped",
        ));
        return Ok(None);
    }
    let r = files::replay(&bytes, base, restored.from);
    for d in &r.damage {
        report.damage.push(Damage::note(
            path,
            format!(
                "journal entry at position {} skipped: {}",
                d.offset, d.reason
            ),
        ));
    }
    for (pos, e) in &r.entries {
        if e.kind == Kind::SegmentRetired {
            tail.retired.insert(e.id.segment());
        }
        if !restored.index.replay(&mut restored.sealed, e, *pos) {
            report.damage.push(Damage::note(
                path,
                format!("journal names recipient {} that no segment holds", e.id),
            ));
        }
    }
    report.journal_entries += r.entries.len() as u64;
    if r.torn_bytes > 0 {
        let what = if newest {
            cut_torn_journal(path, r.end - base)?;
            format!(
                "torn journal tail of {} bytes at position {} cut (an unacknowledged commit)",
                r.torn_bytes, r.end
            )
        } else {
            format!(
                "{} unreadable bytes at the end of an older journal file (entries there are lost)",
                r.torn_bytes
            )
        };
        report.damage.push(Damage::note(path, what));
    }
    Ok(Some(r.end))
}

/// Cuts the newest journal file to `len` bytes, durably.
fn cut_torn_journal(path: &Path, len: u64) -> Result<()> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .ctx("open journal", path)?;
    f.set_len(len).ctx("truncate torn journal tail", path)?;
    f.sync_all().ctx("sync journal", path)
}

/// One pass over the records: per-domain counts and pending counts go into
/// the index, the recipient total into the report; returns the work
/// waiting for delivery.
fn take_census(index: &mut Index, report: &mut OpenReport) -> Pending {
    let census = crate::census::census(index);
    for (no, n) in census.pending_per_segment {
        if let Some(seg) = index.segs.get_mut(&no) {
            seg.pending = n;
        }
    }
    report.recipients = census.recipients;
    let mut domains: FastMap<String, Counts> = FastMap::default();
    let mut queued = Vec::new();
    for (d, (counts, ids)) in census.domains {
        if !ids.is_empty() {
            queued.push((d.clone(), ids));
        }
        domains.insert(d, counts);
    }
    index.summary.domains = domains;
    Pending {
        queued,
        deferred: census.deferred,
    }
}

/// Everything recovery found, ready to become the handle.
struct Recovered {
    lock: File,
    uid: u64,
    campaigns: BTreeMap<u32, Arc<Campaign>>,
    restored: Restored,
    journal: JournalTail,
    /// Where appends continue, when the newest segment can take more.
    writer: Option<SegWriter>,
    pending: Pending,
    clock: Clock,
}

/// The spool handle, writing where the journal and the newest segment end.
fn assemble(dir: &Path, r: Recovered) -> Result<Spool> {
    let Recovered {
        lock,
        uid,
        campaigns,
        restored,
        journal,
        writer,
        pending,
        clock,
    } = r;
    let (jbase, jpath) = journal
        .files
        .last()
        .cloned()
        .unwrap_or((0, files::path(dir, 0)));
    let jfile = Arc::new(
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(&jpath)
            .ctx("open journal", &jpath)?,
    );
    let seg_file = writer
        .as_ref()
        .map_or_else(|| Arc::clone(&jfile), |w| Arc::clone(&w.file));
    let seg_end = writer
        .as_ref()
        .map_or(0, |w| (u64::from(w.no) << 32) | w.pos);
    Ok(Spool {
        dir: dir.to_path_buf(),
        uid,
        read_only: false,
        _lock: Some(lock),
        index: RwLock::new(restored.index),
        campaigns: RwLock::new(campaigns),
        names: Mutex::new(None),
        packs: Mutex::new(Default::default()),
        seg_writer: Mutex::new(writer),
        seg_commit: GroupCommit::new(seg_file, seg_end),
        journal: Mutex::new(files::Writer::new(
            dir,
            Arc::clone(&jfile),
            jbase,
            journal.end,
        )),
        journal_commit: GroupCommit::new(jfile, journal.end),
        journal_floor: Mutex::new(Default::default()),
        checkpoint_pos: AtomicU64::new(restored.from),
        checkpointing: Mutex::new(()),
        pending: Mutex::new(Some(pending)),
        clock,
        ledger_keep: Mutex::new(None),
        ledger_expired: Mutex::new(None),
    })
}

#[cfg(test)]
mod tests;
