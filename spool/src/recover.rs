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
use crate::journal::{Kind, files};
use crate::report::{Damage, OpenReport, Pending};
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
                    journaled: s.states.len() as u32,
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
    if let Some((first, path)) = jfiles.first()
        && *first > from
    {
        // the checkpoint in use is older than the journal kept (the newest
        // one was unusable): changes in between are unknown
        report.damage.push(Damage {
            path: path.clone(),
            what: format!(
                "journal positions {from} to {first} are gone; recipients whose state changed there may be sent again"
            ),
            lost: Vec::new(),
            campaigns: Vec::new(),
        });
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
            if !index.replay(&mut sealed, e, *pos) {
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

    let writer = crate::rescan::segments(dir, &mut index, &retired, &mut report)?;

    // one pass over the records (in parallel over segments): per-domain
    // counts, pending work, live counts
    let segs: Vec<(u32, &Seg)> = index.segs.iter().map(|(&no, s)| (no, s)).collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let chunk = segs.len().div_ceil(threads).max(1);
    let parts: Vec<crate::rescan::RecordPass> = std::thread::scope(|scope| {
        let handles: Vec<_> = segs
            .chunks(chunk)
            .map(|part| scope.spawn(|| crate::rescan::record_pass(part, &index.retries)))
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
