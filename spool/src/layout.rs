//! The spool directory's small files and listings: the directory tree,
//! the lock, the `meta` file (magic and the spool's random uid), sorted
//! directory listings, and reading every campaign file.
//!
//! A second process gets [`Error::Locked`]. Exposure: `meta` and campaign
//! files may be damaged or foreign; a bad `meta` is an error naming the
//! file, a damaged campaign file is reported as [`Damage`] and skipped.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::campaign::{self, Campaign};
use crate::error::{Error, IoContext, Result};
use crate::report::Damage;

const META_MAGIC: &[u8; 8] = b"VLYSPOOL";

/// Creates the directories, takes the lock, reads (or creates) the
/// spool's identity.
pub(crate) fn prepare(dir: &Path) -> Result<(File, u64)> {
    for sub in ["", "segments", "campaigns", "cursors", "journal"] {
        fs::create_dir_all(dir.join(sub)).ctx("create directory", &dir.join(sub))?;
    }
    let lock = take_lock(dir)?;
    let uid = match read_meta(dir)? {
        Some(u) => u,
        None => create_meta(dir)?,
    };
    keep_cursor_reserve(dir);
    Ok((lock, uid))
}

/// Space kept for the first cursor files of sinks: a new cursor needs a
/// block, and the disk may be full by the time a sink first publishes
/// (see [`CURSOR_RESERVE`]).
pub(crate) fn cursor_reserve(dir: &Path) -> std::path::PathBuf {
    dir.join("cursors").join(".reserve")
}

/// Bytes kept in `cursors/.reserve`: the blocks of a dozen first cursors.
pub(crate) const CURSOR_RESERVE: usize = 64 * 1024;

/// Creates the cursor reserve if it is missing (best effort: on a full
/// disk it is simply not there).
fn keep_cursor_reserve(dir: &Path) {
    let p = cursor_reserve(dir);
    if p.exists() {
        return;
    }
    let made =
        fs::write(&p, vec![0u8; CURSOR_RESERVE]).and_then(|()| fs::File::open(&p)?.sync_all());
    if made.is_err() {
        let _ = fs::remove_file(&p);
    }
}

/// The spool's uid from `meta`; `None` when there is no spool here yet.
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

/// Writes a new `meta` with a random uid, durably.
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

/// Takes the lock of a spool directory (created if missing) without
/// opening the spool: for tools that change files the spool's owner also
/// keeps there (the suppression list). Held while the file is open.
pub fn lock_dir(dir: &Path) -> Result<File> {
    fs::create_dir_all(dir).ctx("create spool directory", dir)?;
    take_lock(dir)
}

/// Takes the spool's lock (`flock` on `lock`), or [`Error::Locked`].
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

/// A directory's entries (name, path), sorted by name.
pub(crate) fn sorted_entries(dir: &Path) -> Result<Vec<(String, std::path::PathBuf)>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).ctx("list directory", dir)? {
        let e = e.ctx("list directory", dir)?;
        out.push((e.file_name().to_string_lossy().into_owned(), e.path()));
    }
    out.sort();
    Ok(out)
}

/// Every readable campaign file, by number; unreadable ones are reported
/// in `damage`. With `cleanup`, unfinished creations (`.tmp`) are removed.
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
            Ok(recs) => {
                for rec in recs {
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
