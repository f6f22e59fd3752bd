//! Opening a spool: lock, read campaigns, scan segments, replay the journal,
//! repair a torn tail, and report what was damaged.
//!
//! A writable open takes the directory lock (a second process gets
//! [`Error::Locked`]) and repairs: a torn tail of the newest segment or of
//! the journal is cut off (logged). A read-only open (for `status`) takes no
//! lock and changes nothing. Exposure: every file in the directory may be
//! damaged or foreign; nothing here panics on content.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};

use crate::campaign::{self, Campaign};
use crate::commit::GroupCommit;
use crate::error::{Error, IoContext, Result};
use crate::index::Index;
use crate::journal::{self, Kind};
use crate::segment::{self, LOST};
use crate::spool::{Damage, OpenReport, SegWriter};
use crate::{RecipientId, Spool};

const META_MAGIC: &[u8; 8] = b"VLYSPOOL";

impl Spool {
    /// Opens (creating if needed) the spool in `dir` for writing.
    pub fn open(dir: &Path) -> Result<(Spool, OpenReport)> {
        open(dir, false)
    }

    /// Opens an existing spool for inspection only: no lock, no repair.
    pub fn open_read_only(dir: &Path) -> Result<(Spool, OpenReport)> {
        open(dir, true)
    }
}

fn open(dir: &Path, read_only: bool) -> Result<(Spool, OpenReport)> {
    if !read_only {
        for sub in ["", "segments", "campaigns", "cursors"] {
            fs::create_dir_all(dir.join(sub)).ctx("create directory", &dir.join(sub))?;
        }
    } else if !dir.join("meta").exists() {
        return Err(Error::Io {
            op: "open spool",
            path: dir.to_path_buf(),
            error: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no spool here (nothing has been spooled yet)",
            ),
        });
    }
    let lock = if read_only {
        None
    } else {
        Some(take_lock(dir)?)
    };
    let uid = read_or_create_meta(dir, read_only)?;
    let mut report = OpenReport::default();
    let campaigns = read_campaigns(dir, read_only, &mut report)?;
    let (mut index, writer) = read_segments(dir, read_only, &mut report)?;
    let (jfile, jend) = open_journal(dir, read_only, &mut index, &campaigns, &mut report)?;
    report.campaigns = campaigns.len();
    report.segments = index.segs.len();
    report.recipients = index.segs.values().map(|s| s.offsets.len() as u64).sum();
    for d in &report.damage {
        tracing::warn!(path = %d.path.display(), lost = d.lost.len(), "{}", d.what);
    }
    let seg_file = writer
        .as_ref()
        .map_or_else(|| Arc::clone(&jfile), |w| Arc::clone(&w.file));
    let seg_end = writer
        .as_ref()
        .map_or(0, |w| (u64::from(w.no) << 32) | w.pos);
    let journal_path = dir.join("journal.log");
    let spool = Spool {
        dir: dir.to_path_buf(),
        uid,
        read_only,
        _lock: lock,
        index: RwLock::new(index),
        campaigns: RwLock::new(campaigns),
        seg_writer: Mutex::new(writer),
        seg_commit: GroupCommit::new(seg_file, seg_end),
        journal: Mutex::new(journal::Writer::new(
            Arc::clone(&jfile),
            journal_path.clone(),
            jend,
        )),
        journal_commit: GroupCommit::new(jfile, jend),
        journal_path,
    };
    Ok((spool, report))
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

fn read_or_create_meta(dir: &Path, read_only: bool) -> Result<u64> {
    let p = dir.join("meta");
    match fs::read(&p) {
        Ok(b) if b.len() == 16 && &b[..8] == META_MAGIC => {
            let mut u = [0u8; 8];
            u.copy_from_slice(&b[8..]);
            Ok(u64::from_le_bytes(u))
        }
        Ok(_) => Err(Error::BadMagic { path: p }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !read_only => {
            let uid = fastrand::u64(..);
            let tmp = dir.join("meta.tmp");
            let mut f = File::create(&tmp).ctx("create meta", &tmp)?;
            f.write_all(META_MAGIC).ctx("write meta", &tmp)?;
            f.write_all(&uid.to_le_bytes()).ctx("write meta", &tmp)?;
            f.sync_all().ctx("sync meta", &tmp)?;
            fs::rename(&tmp, &p).ctx("rename meta", &p)?;
            crate::fsync_dir(dir)?;
            Ok(uid)
        }
        Err(e) => Err(e).ctx("read meta", &p),
    }
}

fn sorted_entries(dir: &Path) -> Result<Vec<(String, std::path::PathBuf)>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).ctx("list directory", dir)? {
        let e = e.ctx("list directory", dir)?;
        out.push((e.file_name().to_string_lossy().into_owned(), e.path()));
    }
    out.sort();
    Ok(out)
}

fn read_campaigns(
    dir: &Path,
    read_only: bool,
    report: &mut OpenReport,
) -> Result<BTreeMap<u32, Arc<Campaign>>> {
    let mut out = BTreeMap::new();
    for (name, path) in sorted_entries(&dir.join("campaigns"))? {
        if name.ends_with(".tmp") {
            if !read_only {
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
            Err(why) => report.damage.push(Damage {
                path,
                what: format!("campaign file unreadable ({why}); its recipients cannot be sent"),
                lost: Vec::new(),
            }),
        }
    }
    Ok(out)
}

fn read_segments(
    dir: &Path,
    read_only: bool,
    report: &mut OpenReport,
) -> Result<(Index, Option<SegWriter>)> {
    let mut index = Index::default();
    let mut writer = None;
    let names: Vec<_> = sorted_entries(&dir.join("segments"))?
        .into_iter()
        .filter_map(|(n, p)| segment::parse_name(&n).map(|no| (no, p)))
        .collect();
    let last = names.last().map(|(no, _)| *no);
    for (no, path) in names {
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(&path)
            .ctx("open segment", &path)?;
        let mut map = segment::map(&file, &path)?;
        if let Err(e) = segment::check_header(&map, no, &path) {
            report.damage.push(Damage {
                path: path.clone(),
                what: format!("{e}; segment skipped"),
                lost: Vec::new(),
            });
            continue;
        }
        let scan = segment::scan(&map);
        let lost: Vec<RecipientId> = scan
            .offsets
            .iter()
            .enumerate()
            .filter(|(_, o)| **o == LOST)
            .map(|(i, _)| RecipientId::new(no, i as u32))
            .collect();
        if !lost.is_empty() {
            report.damage.push(Damage {
                path: path.clone(),
                what: format!("{} record(s) failed their CRC", lost.len()),
                lost,
            });
        }
        if scan.torn {
            let what = if Some(no) == last && !read_only {
                segment::cut_tail(&file, &path, scan.end)?;
                drop(map);
                map = segment::map(&file, &path)?;
                format!(
                    "torn tail at offset {} cut (an unacknowledged append)",
                    scan.end
                )
            } else {
                format!(
                    "damaged data after offset {}; later records of this segment unreadable",
                    scan.end
                )
            };
            report.damage.push(Damage {
                path: path.clone(),
                what,
                lost: Vec::new(),
            });
        }
        if Some(no) == last && !read_only {
            writer = Some(SegWriter {
                no,
                file: Arc::new(file),
                pos: scan.end as u64,
                count: scan.offsets.len() as u32,
                buf: Vec::new(),
            });
        }
        index.add_segment(no, map, scan.offsets);
    }
    Ok((index, writer))
}

fn open_journal(
    dir: &Path,
    read_only: bool,
    index: &mut Index,
    campaigns: &BTreeMap<u32, Arc<Campaign>>,
    report: &mut OpenReport,
) -> Result<(Arc<File>, u64)> {
    let p = dir.join("journal.log");
    let file = OpenOptions::new()
        .read(true)
        .write(!read_only)
        .create(!read_only)
        .truncate(false)
        .open(&p)
        .ctx("open journal", &p)?;
    let mut bytes = Vec::new();
    {
        use std::io::Read;
        (&file).read_to_end(&mut bytes).ctx("read journal", &p)?;
    }
    if bytes.is_empty() && !read_only {
        file.write_all_at(journal::MAGIC, 0)
            .ctx("write journal header", &p)?;
        file.sync_all().ctx("sync journal", &p)?;
        crate::fsync_dir(dir)?;
        bytes.extend_from_slice(journal::MAGIC);
    }
    if bytes.len() < journal::MAGIC.len() || &bytes[..journal::MAGIC.len()] != journal::MAGIC {
        return Err(Error::BadMagic { path: p });
    }
    let replay = journal::replay(&bytes);
    for d in &replay.damage {
        report.damage.push(Damage {
            path: p.clone(),
            what: format!("journal entry at offset {} skipped: {}", d.offset, d.reason),
            lost: Vec::new(),
        });
    }
    if replay.torn_bytes > 0 {
        if !read_only {
            file.set_len(replay.end)
                .ctx("truncate torn journal tail", &p)?;
            file.sync_all().ctx("sync journal", &p)?;
        }
        report.damage.push(Damage {
            path: p.clone(),
            what: format!(
                "torn journal tail of {} bytes at offset {} cut (an unacknowledged commit)",
                replay.torn_bytes, replay.end
            ),
            lost: Vec::new(),
        });
    }
    for e in &replay.entries {
        if e.kind == Kind::CampaignSealed {
            if let Some(c) = u32::try_from(e.id.0).ok().and_then(|no| campaigns.get(&no)) {
                c.sealed.store(true, std::sync::atomic::Ordering::Release);
            }
        } else if !index.apply(e) {
            report.damage.push(Damage {
                path: p.clone(),
                what: format!("journal names recipient {} that no segment holds", e.id),
                lost: vec![e.id],
            });
        }
    }
    report.journal_entries = replay.entries.len() as u64;
    Ok((Arc::new(file), replay.end))
}
