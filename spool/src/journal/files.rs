//! Journal files: `journal/<base>.log`, where `base` (16 hex digits) is the
//! journal position at which the file starts. Positions are global: a file's
//! entries lie in `[base + 16, next file's base)`, the first 16 bytes being
//! the file header. A checkpoint rotates to a new file so that older files
//! can be deleted once nothing needs them.
//!
//! The writer keeps a few megabytes preallocated (fallocate, size kept) past
//! the end of the current file, so outcomes can still be journaled when
//! segments have filled the disk. The reader follows positions across files.
//! Exposure: file contents may be torn or damaged; nothing panics on them.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Entry, MAX_ENTRY};
use crate::error::{Error, IoContext, Result};
use crate::frame;

/// Magic and version at the start of every journal file.
pub(crate) const MAGIC: &[u8; 16] = b"VLYJRNL2\0\0\0\0\0\0\0\0";
/// Bytes kept preallocated past the end of the current journal file.
pub const RESERVE: u64 = 4 << 20;

pub(crate) fn dir(spool: &Path) -> PathBuf {
    spool.join("journal")
}

pub(crate) fn path(spool: &Path, base: u64) -> PathBuf {
    dir(spool).join(format!("{base:016x}.log"))
}

/// Journal files present, by base position.
pub(crate) fn list(spool: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let d = dir(spool);
    let mut out = Vec::new();
    for e in std::fs::read_dir(&d).ctx("list journal", &d)? {
        let e = e.ctx("list journal", &d)?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(base) = name
            .strip_suffix(".log")
            .and_then(|h| u64::from_str_radix(h, 16).ok())
        {
            out.push((base, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Creates a new, durable journal file starting at `base`. The file
/// appears under its name only complete (header written and synced), so a
/// failure (e.g. a full disk) leaves nothing half made.
pub(crate) fn create(spool: &Path, base: u64) -> Result<Arc<File>> {
    let p = path(spool, base);
    let tmp = p.with_extension("log.tmp");
    let made = (|| -> Result<File> {
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .ctx("create journal file", &tmp)?;
        f.write_all(MAGIC).ctx("write journal header", &tmp)?;
        f.sync_all().ctx("sync journal file", &tmp)?;
        std::fs::rename(&tmp, &p).ctx("install journal file", &p)?;
        crate::fsync_dir(&dir(spool))?;
        Ok(f)
    })();
    if made.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    made.map(Arc::new)
}

/// Preallocates `len` bytes at `offset` without changing the file size.
/// Filesystems that cannot do it are fine: the reserve is best effort.
/// Returns false when the disk had no room for it.
pub(crate) fn reserve(file: &File, offset: u64, len: u64) -> bool {
    // SAFETY: fallocate(2) on a file descriptor we own; no memory is passed.
    let r = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_KEEP_SIZE,
            offset as libc::off_t,
            len as libc::off_t,
        )
    };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        tracing::debug!(error = %e, "journal space could not be reserved");
        return e.raw_os_error() != Some(libc::ENOSPC);
    }
    true
}

/// Appends to the current journal file.
pub(crate) struct Writer {
    pub(crate) spool: PathBuf,
    pub(crate) file: Arc<File>,
    pub(crate) base: u64,
    /// Global position of the end of the written entries.
    pub(crate) end: u64,
    reserved_to: u64,
    /// The reserve could not be topped up: the disk is full and the
    /// journal is eating into what is left of it.
    starved: bool,
    buf: Vec<u8>,
    payload: Vec<u8>,
}

impl Writer {
    pub(crate) fn new(spool: &Path, file: Arc<File>, base: u64, end: u64) -> Writer {
        let mut w = Writer {
            spool: spool.to_path_buf(),
            file,
            base,
            end,
            reserved_to: 0,
            starved: false,
            buf: Vec::new(),
            payload: Vec::with_capacity(256),
        };
        w.top_up();
        w
    }

    fn top_up(&mut self) {
        let local = self.end - self.base;
        if self.reserved_to < local + RESERVE / 2 {
            self.starved = !reserve(&self.file, local, RESERVE);
            if !self.starved {
                self.reserved_to = local + RESERVE;
            }
        }
    }

    /// Whether the disk is full and the journal lives on its reserve (a
    /// checkpoint then lets older journal files go sooner).
    pub(crate) fn starved(&self) -> bool {
        self.starved
    }

    pub(crate) fn path(&self) -> PathBuf {
        path(&self.spool, self.base)
    }

    /// Writes entries at the end (not yet durable); returns the position
    /// just after each, and the new end.
    pub(crate) fn append(&mut self, entries: &[Entry], ends: &mut Vec<u64>) -> Result<u64> {
        self.buf.clear();
        ends.clear();
        for e in entries {
            self.payload.clear();
            e.encode(&mut self.payload);
            frame::encode(&mut self.buf, &self.payload);
            ends.push(self.end + self.buf.len() as u64);
        }
        let at = self.end - self.base;
        if let Err(e) = self.file.write_all_at(&self.buf, at) {
            // Do not leave half an append behind: the next one overwrites it.
            let _ = self.file.set_len(at);
            return Err(e).ctx("write journal", &self.path());
        }
        self.end += self.buf.len() as u64;
        self.top_up();
        Ok(self.end)
    }

    /// Starts a new file at the current end; returns the new file.
    pub(crate) fn rotate(&mut self) -> Result<Arc<File>> {
        // give back the old file's unused reserve first: on a full disk
        // that is where the new file's first blocks come from
        let _ = self.file.set_len(self.end - self.base);
        let file = match create(&self.spool, self.end) {
            Ok(f) => f,
            Err(e) => {
                // the old file goes on: take its reserve back
                self.reserved_to = 0;
                self.top_up();
                return Err(e);
            }
        };
        self.base = self.end;
        self.end += MAGIC.len() as u64;
        self.file = Arc::clone(&file);
        self.reserved_to = 0;
        self.top_up();
        Ok(file)
    }
}

/// A problem found while reading the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadDamage {
    pub offset: u64,
    pub reason: String,
}

/// Reads journal entries from a position, across files, up to a committed
/// end.
pub struct Reader {
    spool: PathBuf,
    files: Vec<u64>,
    current: Option<(u64, File)>,
    pos: u64,
    buf: Vec<u8>,
}

impl Reader {
    pub(crate) fn open(spool: &Path, pos: u64) -> Result<Reader> {
        let mut r = Reader {
            spool: spool.to_path_buf(),
            files: Vec::new(),
            current: None,
            pos,
            buf: Vec::new(),
        };
        r.relist()?;
        if let Some(&first) = r.files.first() {
            r.pos = r.pos.max(first + MAGIC.len() as u64);
        }
        Ok(r)
    }

    fn relist(&mut self) -> Result<()> {
        self.files = list(&self.spool)?.into_iter().map(|(b, _)| b).collect();
        Ok(())
    }

    /// Position of the next entry to read.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Base of the file holding `pos`, and the next file's base.
    fn locate(&self) -> Option<(u64, Option<u64>)> {
        let i = self.files.partition_point(|&b| b <= self.pos);
        let base = *self.files.get(i.checked_sub(1)?)?;
        Some((base, self.files.get(i).copied()))
    }

    /// Reads up to `max` entries that end at or before `upto`. Returns each
    /// entry with the position just after it; damaged entries are skipped
    /// and reported in `damage`.
    pub fn read(
        &mut self,
        upto: u64,
        max: usize,
        damage: &mut Vec<ReadDamage>,
    ) -> Result<Vec<(u64, Entry)>> {
        let mut out = Vec::new();
        let header = MAGIC.len() as u64;
        while out.len() < max && self.pos < upto {
            let located = match self.locate() {
                Some(l) => Some(l),
                None => {
                    self.relist()?;
                    self.locate()
                }
            };
            let Some((base, next)) = located else {
                return Err(Error::Io {
                    op: "read journal",
                    path: dir(&self.spool),
                    error: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("no journal file holds position {}", self.pos),
                    ),
                });
            };
            if self.pos < base + header {
                self.pos = base + header;
                continue;
            }
            let file_end = next.unwrap_or(upto).min(upto);
            if self.pos >= file_end {
                break;
            }
            if self.current.as_ref().is_none_or(|(b, _)| *b != base) {
                let p = path(&self.spool, base);
                self.current = Some((base, File::open(&p).ctx("open journal", &p)?));
            }
            let Some((_, file)) = &self.current else {
                break;
            };
            let want = ((file_end - self.pos) as usize).min(1 << 20);
            self.buf.resize(want, 0);
            let n = read_at_most(file, &mut self.buf, self.pos - base)
                .ctx("read journal", &path(&self.spool, base))?;
            self.buf.truncate(n);
            let mut off = 0usize;
            let mut progressed = false;
            while out.len() < max {
                match frame::read(&self.buf, off, MAX_ENTRY) {
                    frame::Read::Frame { payload, next } => {
                        match Entry::decode(payload) {
                            Ok(e) => out.push((self.pos + next as u64, e)),
                            Err(reason) => damage.push(ReadDamage {
                                offset: self.pos + off as u64,
                                reason,
                            }),
                        }
                        off = next;
                        progressed = true;
                    }
                    frame::Read::BadCrc { next } => {
                        damage.push(ReadDamage {
                            offset: self.pos + off as u64,
                            reason: "CRC mismatch".into(),
                        });
                        off = next;
                        progressed = true;
                    }
                    frame::Read::End | frame::Read::Truncated => break,
                }
            }
            self.pos += off as u64;
            if !progressed {
                // The file may have been rotated since it was listed.
                let known = self.files.clone();
                self.relist()?;
                if self.files != known {
                    continue;
                }
                // Bytes below the committed end that do not frame (only
                // possible after damage): skip them so the reader never spins.
                damage.push(ReadDamage {
                    offset: self.pos,
                    reason: format!("{} unframed bytes", file_end - self.pos),
                });
                self.pos = file_end;
            }
        }
        Ok(out)
    }
}

fn read_at_most(file: &File, buf: &mut [u8], pos: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], pos + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Result of reading one journal file whole.
pub(crate) struct FileReplay {
    /// Entries with the global position just after each.
    pub(crate) entries: Vec<(u64, Entry)>,
    /// Global position just after the last good frame.
    pub(crate) end: u64,
    /// Bytes after `end` that did not form a complete frame.
    pub(crate) torn_bytes: u64,
    pub(crate) damage: Vec<ReadDamage>,
}

/// Reads a journal file's bytes (pure), starting at global position `from`.
pub(crate) fn replay(bytes: &[u8], base: u64, from: u64) -> FileReplay {
    let mut entries = Vec::new();
    let mut damage = Vec::new();
    let mut pos = (from.saturating_sub(base) as usize).max(MAGIC.len());
    loop {
        match frame::read(bytes, pos, MAX_ENTRY) {
            frame::Read::Frame { payload, next } => {
                match Entry::decode(payload) {
                    Ok(e) => entries.push((base + next as u64, e)),
                    Err(reason) => damage.push(ReadDamage {
                        offset: base + pos as u64,
                        reason,
                    }),
                }
                pos = next;
            }
            frame::Read::BadCrc { next } => {
                // Damage in the middle (a good frame follows) is skipped;
                // otherwise it is the torn tail of an interrupted append.
                if matches!(
                    frame::read(bytes, next, MAX_ENTRY),
                    frame::Read::Frame { .. }
                ) {
                    damage.push(ReadDamage {
                        offset: base + pos as u64,
                        reason: "CRC mismatch".into(),
                    });
                    pos = next;
                } else {
                    break;
                }
            }
            frame::Read::End | frame::Read::Truncated => break,
        }
    }
    let end = pos.min(bytes.len().max(MAGIC.len()));
    FileReplay {
        entries,
        end: base + end as u64,
        torn_bytes: (bytes.len() as u64).saturating_sub(end as u64),
        damage,
    }
}

#[cfg(test)]
mod tests;
