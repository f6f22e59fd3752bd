//! Opening a spool for writing: lock, read campaigns and the newest
//! checkpoint, replay the journal written since, scan the segments, repair
//! torn tails, and account exactly for what is damaged or missing.
//!
//! A second process gets [`Error::Locked`]. Damage never stops the open: a
//! torn tail is cut (it was never acknowledged); a record that fails its CRC,
//! records a segment should hold but does not, and a missing segment file
//! make their recipients `Lost`, reported by id and campaign in
//! [`OpenReport`]; a damaged checkpoint falls back to the previous one.
//! Segment files that appear with no trace in the journal are adopted when
//! newer than every known segment (created just before a crash) and deleted
//! when older (left over from reclamation). A checkpoint is written at the
//! end so that what was found is persisted. Exposure: every file may be
//! damaged or foreign; nothing here panics on content.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};

use crate::campaign::{self, Campaign};
use crate::checkpoint;
use crate::commit::GroupCommit;
use crate::error::{Error, IoContext, Result};
use crate::index::{Index, Seg};
use crate::journal::{self, Entry, Kind, files};
use crate::segment::{self, LOST, SEGMENT_BYTES};
use crate::spool::{Damage, OpenReport, Pending, SegWriter};
use crate::summary::{Counts, FastMap};
use crate::{RecipientId, Spool, State};

const META_MAGIC: &[u8; 8] = b"VLYSPOOL";

impl Spool {
    /// Opens (creating if needed) the spool in `dir` for writing.
    pub fn open(dir: &Path) -> Result<(Spool, OpenReport)> {
        open(dir)
    }
}

pub(crate) fn read_meta(dir: &Path) -> Result<Option<u64>> {
    let p = dir.join("meta");
    match fs::read(&p) {
        Ok(b) if b.len() == 16 && &b[..8] == META_MAGIC => {
            let mut u = [0u8; 8];
            u.copy_from_slice(&b[8..]);
            Ok(Some(u64::from_le_bytes(u)))
        }
        Ok(_) => Err(Error::BadMagic { path: p }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).ctx("read meta", &p),
    }
}

fn create_meta(dir: &Path) -> Result<u64> {
    let uid = fastrand::u64(..);
    let tmp = dir.join("meta.tmp");
    let mut f = File::create(&tmp).ctx("create meta", &tmp)?;
    f.write_all(META_MAGIC).ctx("write meta", &tmp)?;
    f.write_all(&uid.to_le_bytes()).ctx("write meta", &tmp)?;
    f.sync_all().ctx("sync meta", &tmp)?;
    fs::rename(&tmp, dir.join("meta")).ctx("rename meta", &dir.join("meta"))?;
    crate::fsync_dir(dir)?;
    Ok(uid)
}

fn take_lock(dir: &Path) -> Result<File> {
    let p = dir.join("lock");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .ctx("open lock file", &p)?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(fs::TryLockError::WouldBlock) => Err(Error::Locked(dir.to_path_buf())),
        Err(fs::TryLockError::Error(e)) => Err(e).ctx("lock spool", &p),
    }
}

pub(crate) fn sorted_entries(dir: &Path) -> Result<Vec<(String, std::path::PathBuf)>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).ctx("list directory", dir)? {
        let e = e.ctx("list directory", dir)?;
        out.push((e.file_name().to_string_lossy().into_owned(), e.path()));
    }
    out.sort();
    Ok(out)
}

pub(crate) fn read_campaigns(
    dir: &Path,
    cleanup: bool,
    damage: &mut Vec<Damage>,
) -> Result<BTreeMap<u32, Arc<Campaign>>> {
    let mut out = BTreeMap::new();
    for (name, path) in sorted_entries(&dir.join("campaigns"))? {
        if name.ends_with(".tmp") {
            if cleanup {
                let _ = fs::remove_file(&path); // an unfinished create: never acknowledged
            }
            continue;
        }
        match campaign::read(&path) {
            Ok(rec) => {
                out.insert(
                    rec.no,
                    Arc::new(Campaign {
                        no: rec.no,
                        id: rec.id,
                        created_ms: rec.created_ms,
                        body: rec.body,
                        sealed: AtomicBool::new(false),
                    }),
                );
            }
            Err(why) => damage.push(Damage {
                path,
                what: format!(
                    "campaign file unreadable ({why}); its recipients cannot be rendered"
                ),
                lost: Vec::new(),
                campaigns: Vec::new(),
            }),
        }
    }
    Ok(out)
}

/// Applies a replayed entry to the index and summary.
pub(crate) fn replay_entry(
    index: &mut Index,
    sealed: &mut BTreeSet<u32>,
    e: &Entry,
    pos: u64,
) -> bool {
    match e.kind {
        Kind::CampaignSealed => {
            sealed.insert(e.campaign);
            true
        }
        Kind::Appended => {
            if let Ok(counts) = journal::decode_domain_counts(&e.detail) {
                for (d, c) in counts {
                    index.summary.add(e.campaign, d, State::Queued, c.queued);
                }
            }
            index.summary.saw_row(e.campaign, e.next_ms as u32);
            index.apply_mark(e, pos);
            true
        }
        Kind::SegmentRetired => {
            if let Ok(counts) = journal::decode_domain_counts(&e.detail) {
                for (d, c) in counts {
                    if let Some(dc) = index.summary.domains.get_mut(d) {
                        for s in State::ALL {
                            dc.sub(s, c.get(s));
                        }
                    }
                }
                index.summary.forget_empty_domains();
            }
            index.apply_mark(e, pos);
            true
        }
        Kind::SegmentCreated | Kind::SegmentSealed => {
            index.apply_mark(e, pos);
            true
        }
        Kind::Deferred | Kind::Delivered | Kind::Bounced | Kind::Failed => {
            index.apply(e, pos, true)
        }
    }
}

fn lose(
    index: &mut Index,
    no: u32,
    i: u32,
    lost: &mut Vec<RecipientId>,
    campaigns: &mut BTreeSet<u32>,
) {
    let Some(seg) = index.segs.get_mut(&no) else {
        return;
    };
    let Some(slot) = seg.states.get_mut(i as usize) else {
        return;
    };
    let prev = State::from_u8(*slot);
    if prev.is_final() {
        return;
    }
    *slot = State::Lost as u8;
    let campaign = seg.campaign_of(i).unwrap_or(0);
    if let Some(c) = index.summary.campaigns.get_mut(&campaign) {
        c.counts.sub(prev, 1);
        c.counts.add(State::Lost, 1);
    }
    index.retries.remove(&RecipientId::new(no, i));
    lost.push(RecipientId::new(no, i));
    campaigns.insert(campaign);
}

fn open(dir: &Path) -> Result<(Spool, OpenReport)> {
    let started = std::time::Instant::now();
    for sub in ["", "segments", "campaigns", "cursors", "journal"] {
        fs::create_dir_all(dir.join(sub)).ctx("create directory", &dir.join(sub))?;
    }
    let lock = take_lock(dir)?;
    let uid = match read_meta(dir)? {
        Some(u) => u,
        None => create_meta(dir)?,
    };
    let mut report = OpenReport::default();
    let campaigns = read_campaigns(dir, true, &mut report.damage)?;

    // checkpoint
    let (ckpt, problems) = checkpoint::read(dir);
    for p in problems {
        report.damage.push(Damage {
            path: dir.join("checkpoint"),
            what: format!("checkpoint unusable ({p}); using an older one or the whole journal"),
            lost: Vec::new(),
            campaigns: Vec::new(),
        });
    }
    let mut index = Index::default();
    let mut sealed: BTreeSet<u32> = BTreeSet::new();
    let mut from = 0;
    if let Some(c) = ckpt {
        from = c.position;
        sealed.extend(c.sealed_campaigns);
        for s in c.segments {
            let live = s
                .states
                .iter()
                .filter(|&&b| !State::from_u8(b).is_final())
                .count() as u64;
            index.segs.insert(
                s.no,
                Seg {
                    map: None,
                    offsets: Vec::new(),
                    states: s.states,
                    sealed: s.sealed,
                    live,
                    last_pos: s.last_pos,
                    runs: s.runs,
                },
            );
        }
        index.retries = c.retries.into_iter().collect();
        index.summary = c.summary;
        index.next_segment = c.next_segment;
    }

    // journal tail
    let mut jfiles = files::list(dir)?;
    if jfiles.is_empty() {
        files::create(dir, from)?;
        jfiles = files::list(dir)?;
    }
    let last_base = jfiles.last().map_or(0, |(b, _)| *b);
    let mut jend = last_base + files::MAGIC.len() as u64;
    let mut retired: BTreeSet<u32> = BTreeSet::new();
    for (k, (base, path)) in jfiles.iter().enumerate() {
        let next = jfiles.get(k + 1).map(|(b, _)| *b);
        if next.is_some_and(|n| n <= from) {
            continue;
        }
        let bytes = fs::read(path).ctx("read journal", path)?;
        if bytes.len() < files::MAGIC.len() || &bytes[..files::MAGIC.len()] != files::MAGIC {
            report.damage.push(Damage {
                path: path.clone(),
                what: "journal file has a bad header; its entries are skipped".into(),
                lost: Vec::new(),
                campaigns: Vec::new(),
            });
            continue;
        }
        let r = files::replay(&bytes, *base, from);
        for d in &r.damage {
            report.damage.push(Damage {
                path: path.clone(),
                what: format!(
                    "journal entry at position {} skipped: {}",
                    d.offset, d.reason
                ),
                lost: Vec::new(),
                campaigns: Vec::new(),
            });
        }
        for (pos, e) in &r.entries {
            if e.kind == Kind::SegmentRetired {
                retired.insert(e.id.segment());
            }
            if !replay_entry(&mut index, &mut sealed, e, *pos) {
                report.damage.push(Damage {
                    path: path.clone(),
                    what: format!("journal names recipient {} that no segment holds", e.id),
                    lost: Vec::new(),
                    campaigns: Vec::new(),
                });
            }
        }
        report.journal_entries += r.entries.len() as u64;
        if r.torn_bytes > 0 {
            let what = if next.is_none() {
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .ctx("open journal", path)?;
                f.set_len(r.end - base)
                    .ctx("truncate torn journal tail", path)?;
                f.sync_all().ctx("sync journal", path)?;
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
            report.damage.push(Damage {
                path: path.clone(),
                what,
                lost: Vec::new(),
                campaigns: Vec::new(),
            });
        }
        if next.is_none() {
            jend = r.end;
        }
    }

    // segments on disk
    let max_known = index
        .segs
        .keys()
        .next_back()
        .copied()
        .unwrap_or(0)
        .max(retired.iter().next_back().copied().unwrap_or(0))
        .max(index.next_segment.saturating_sub(1));
    let on_disk: Vec<(u32, std::path::PathBuf)> = sorted_entries(&dir.join("segments"))?
        .into_iter()
        .filter_map(|(n, p)| segment::parse_name(&n).map(|no| (no, p)))
        .collect();
    let last_on_disk = on_disk.last().map(|(no, _)| *no);
    let mut found_files = BTreeSet::new();
    let mut writer = None;
    for (no, path) in on_disk {
        if retired.contains(&no) || (!index.segs.contains_key(&no) && no <= max_known) {
            tracing::info!(path = %path.display(), "deleting a reclaimed segment left behind by a crash");
            let _ = fs::remove_file(&path);
            continue;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .ctx("open segment", &path)?;
        let mut map = segment::map(&file, &path)?;
        if let Err(e) = segment::check_header(&map, no, &path) {
            report.damage.push(Damage {
                path: path.clone(),
                what: format!("{e}; segment ignored"),
                lost: Vec::new(),
                campaigns: Vec::new(),
            });
            continue;
        }
        found_files.insert(no);
        index.next_segment = index.next_segment.max(no.saturating_add(1));
        let scan = segment::scan(&map);
        // the scan touched every page: drop them from this process's memory
        // (the page cache keeps them for the pass below)
        segment::release(&map);
        if scan.torn {
            let what = if Some(no) == last_on_disk {
                segment::cut_tail(&file, &path, scan.end)?;
                drop(map);
                map = segment::map(&file, &path)?;
                format!(
                    "torn tail at offset {} cut (an unacknowledged append)",
                    scan.end
                )
            } else {
                format!("unreadable data after offset {}", scan.end)
            };
            report.damage.push(Damage {
                path: path.clone(),
                what,
                lost: Vec::new(),
                campaigns: Vec::new(),
            });
        }
        let seg = index.segs.entry(no).or_default();
        let expected = seg.states.len();
        let found = scan.offsets.len();
        let mut offsets = scan.offsets;
        // records on disk the journal does not know: appended just before a
        // crash; adopted (delivered at least once)
        let mut adopted = Vec::new();
        if found > expected {
            seg.states.resize(found, State::Queued as u8);
            seg.live += (found - expected) as u64;
            adopted.extend(expected as u32..found as u32);
        }
        offsets.resize(offsets.len().max(expected), LOST);
        seg.offsets = offsets;
        seg.map = Some(map);
        let end = scan.end as u64;
        if Some(no) == last_on_disk && !seg.sealed && end < SEGMENT_BYTES {
            writer = Some(SegWriter {
                no,
                file: Arc::new(file),
                pos: end,
                count: seg.offsets.len() as u32,
            });
        }
        for i in adopted {
            if let Some(r) = seg.record(i) {
                let (c, row) = (r.campaign.to_native(), r.row.to_native());
                seg.push_run(i, c);
                index
                    .summary
                    .campaigns
                    .entry(c)
                    .or_default()
                    .counts
                    .add(State::Queued, 1);
                index.summary.saw_row(c, row);
            }
        }
        // records that fail their CRC, or that the journal says exist but
        // the file does not hold
        let mut lost = Vec::new();
        let mut lost_campaigns = BTreeSet::new();
        let bad: Vec<u32> = index.segs[&no]
            .offsets
            .iter()
            .enumerate()
            .filter(|(_, o)| **o == LOST)
            .map(|(i, _)| i as u32)
            .collect();
        for i in bad {
            lose(&mut index, no, i, &mut lost, &mut lost_campaigns);
        }
        if !lost.is_empty() {
            report.damage.push(Damage {
                path: path.clone(),
                what: format!("{} recipient record(s) damaged or missing", lost.len()),
                lost,
                campaigns: lost_campaigns.into_iter().collect(),
            });
        }
    }
    // segments the journal knows but whose file is gone
    let missing: Vec<u32> = index
        .segs
        .keys()
        .filter(|no| !found_files.contains(no))
        .copied()
        .collect();
    for no in missing {
        let mut lost = Vec::new();
        let mut lost_campaigns = BTreeSet::new();
        let n = index.segs[&no].states.len() as u32;
        for i in 0..n {
            lose(&mut index, no, i, &mut lost, &mut lost_campaigns);
        }
        if let Some(seg) = index.segs.get_mut(&no) {
            seg.offsets = vec![LOST; n as usize];
            seg.live = 0;
        }
        if !lost.is_empty() {
            report.damage.push(Damage {
                path: segment::path(dir, no),
                what: format!("segment file missing: {} recipient(s) lost", lost.len()),
                lost,
                campaigns: lost_campaigns.into_iter().collect(),
            });
        }
    }

    // one pass over the records (in parallel over segments): per-domain
    // counts, pending work, live counts
    let segs: Vec<(u32, &Seg)> = index.segs.iter().map(|(&no, s)| (no, s)).collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let chunk = segs.len().div_ceil(threads).max(1);
    let parts: Vec<RecordPass> = std::thread::scope(|scope| {
        let handles: Vec<_> = segs
            .chunks(chunk)
            .map(|part| scope.spawn(|| record_pass(part, &index.retries)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut domains: FastMap<String, Counts> = FastMap::default();
    let mut queued: FastMap<String, Vec<RecipientId>> = FastMap::default();
    let mut deferred = Vec::new();
    let mut recipients = 0u64;
    let mut live: Vec<(u32, u64)> = Vec::new();
    for part in parts {
        recipients += part.recipients;
        live.extend(part.live);
        deferred.extend(part.deferred);
        for (d, (c, ids)) in part.domains {
            let total = domains.entry(d.clone()).or_default();
            for s in State::ALL {
                total.add(s, c.get(s));
            }
            if !ids.is_empty() {
                queued.entry(d).or_default().extend(ids);
            }
        }
    }
    for (no, n) in live {
        if let Some(seg) = index.segs.get_mut(&no) {
            seg.live = n;
        }
    }
    index.summary.domains = domains;
    for c in &campaigns {
        if sealed.contains(c.0) {
            c.1.sealed.store(true, std::sync::atomic::Ordering::Release);
        }
    }
    report.campaigns = campaigns.len();
    report.segments = index.segs.len();
    report.recipients = recipients;
    for d in &report.damage {
        tracing::warn!(path = %d.path.display(), lost = d.lost.len(), campaigns = ?d.campaigns, "{}", d.what);
    }

    // writers
    let (jbase, jpath) = jfiles.last().cloned().unwrap_or((0, files::path(dir, 0)));
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
    let spool = Spool {
        dir: dir.to_path_buf(),
        uid,
        read_only: false,
        _lock: Some(lock),
        index: RwLock::new(index),
        campaigns: RwLock::new(campaigns),
        seg_writer: Mutex::new(writer),
        seg_commit: GroupCommit::new(seg_file, seg_end),
        journal: Mutex::new(files::Writer::new(dir, Arc::clone(&jfile), jbase, jend)),
        journal_commit: GroupCommit::new(jfile, jend),
        checkpoint_pos: AtomicU64::new(from),
        checkpointing: Mutex::new(()),
        pending: Mutex::new(Some(Pending {
            queued: queued.into_iter().collect(),
            deferred,
        })),
    };
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

/// What one pass over some segments' records found.
#[derive(Default)]
struct RecordPass {
    recipients: u64,
    /// Per domain: counts by state, and queued recipients in id order.
    domains: FastMap<String, (Counts, Vec<RecipientId>)>,
    deferred: Vec<(RecipientId, String, crate::Retry)>,
    /// Non-final recipients per segment.
    live: Vec<(u32, u64)>,
}

fn record_pass(
    segs: &[(u32, &Seg)],
    retries: &std::collections::HashMap<RecipientId, crate::Retry>,
) -> RecordPass {
    let mut out = RecordPass::default();
    for &(no, seg) in segs {
        let mut live = 0;
        for (i, &st) in seg.states.iter().enumerate() {
            let state = State::from_u8(st);
            out.recipients += 1;
            if !state.is_final() {
                live += 1;
            }
            let Some(r) = seg.record(i as u32) else {
                continue;
            };
            let domain = r.domain();
            let entry = match out.domains.get_mut(domain) {
                Some(e) => e,
                None => out.domains.entry(domain.to_string()).or_default(),
            };
            entry.0.add(state, 1);
            let id = RecipientId::new(no, i as u32);
            match state {
                State::Queued => entry.1.push(id),
                State::Deferred => {
                    let retry = retries.get(&id).copied().unwrap_or(crate::Retry {
                        attempts: 0,
                        next_ms: 0,
                    });
                    out.deferred.push((id, domain.to_string(), retry));
                }
                _ => {}
            }
        }
        out.live.push((no, live));
        if let Some(m) = &seg.map {
            segment::release(m);
        }
    }
    out
}
