//! Segment files: preallocated, append-only files of framed recipient records,
//! read through a memory map.
//!
//! Layout: a 16-byte header (magic, segment number), then frames (see
//! [`crate::frame`]). Each file is created at its full size (sparse zeros), so
//! one read-only map covers every record ever appended to it and appends made
//! with `pwrite` are visible through the map at once. The first zero header
//! ends the written region. Scanning at open finds each record's offset and
//! what is damaged; it never panics on any content. Exposure: file contents
//! may be torn or damaged.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, IoContext, Result};
use crate::frame;
use crate::record::MAX_RECORD;

/// Size every segment file is created with.
pub const SEGMENT_BYTES: u64 = 8 << 20;
pub(crate) const HEADER: usize = 16;
const MAGIC: &[u8; 8] = b"VLYSEG01";
/// Offset value marking a record lost to damage.
pub(crate) const LOST: u32 = u32::MAX;

pub(crate) fn path(dir: &Path, no: u32) -> PathBuf {
    dir.join("segments").join(format!("{no:08}.seg"))
}

/// Parses a segment file name back into its number.
pub(crate) fn parse_name(name: &str) -> Option<u32> {
    name.strip_suffix(".seg")?.parse().ok()
}

/// What scanning a segment found.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Frame offset of each record, in order; [`LOST`] for a damaged one.
    pub(crate) offsets: Vec<u32>,
    /// End of the last good frame (where appends continue).
    pub(crate) end: usize,
    /// Bytes after `end` that are not zero (a torn append).
    pub(crate) torn: bool,
}

/// Finds the records of a mapped segment (pure).
pub(crate) fn scan(bytes: &[u8]) -> Scan {
    let mut scan = Scan {
        end: HEADER,
        ..Scan::default()
    };
    let mut pos = HEADER;
    loop {
        match frame::read(bytes, pos, MAX_RECORD) {
            frame::Read::Frame { next, .. } => {
                scan.offsets.push(pos as u32);
                pos = next;
                scan.end = pos;
            }
            frame::Read::BadCrc { next } => {
                if matches!(
                    frame::read(bytes, next, MAX_RECORD),
                    frame::Read::Frame { .. }
                ) {
                    scan.offsets.push(LOST);
                    pos = next;
                    scan.end = pos;
                } else {
                    scan.torn = true;
                    break;
                }
            }
            frame::Read::Truncated => {
                scan.torn = true;
                break;
            }
            frame::Read::End => break,
        }
    }
    scan
}

/// Checks the header of a mapped segment.
pub(crate) fn check_header(bytes: &[u8], no: u32, path: &Path) -> Result<()> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC || bytes[8..12] != no.to_le_bytes() {
        return Err(Error::BadMagic {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// Creates a new, empty, durable segment file (removed again if any step
/// fails, e.g. on a full disk).
pub(crate) fn create(dir: &Path, no: u32) -> Result<Arc<File>> {
    let p = path(dir, no);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&p)
        .ctx("create segment", &p)?;
    let mut header = [0u8; HEADER];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&no.to_le_bytes());
    let made = (|| -> Result<()> {
        file.set_len(SEGMENT_BYTES).ctx("size segment", &p)?;
        file.write_all_at(&header, 0)
            .ctx("write segment header", &p)?;
        file.sync_all().ctx("sync segment", &p)?;
        crate::fsync_dir(&dir.join("segments"))
    })();
    if let Err(e) = made {
        let _ = std::fs::remove_file(&p);
        return Err(e);
    }
    Ok(Arc::new(file))
}

/// Maps a segment file read-only.
pub(crate) fn map(file: &File, p: &Path) -> Result<memmap2::Mmap> {
    // SAFETY: the map is read-only and the spool never truncates a mapped
    // region below the data it hands out; torn-tail repair happens before
    // the file is mapped for reading. Other processes writing the file
    // concurrently (which the lock prevents) could change bytes under us,
    // which is why every read is CRC-checked and validated.
    unsafe { memmap2::Mmap::map(file) }.ctx("map segment", p)
}

/// Releases a map's resident pages (they are read again from the page
/// cache when next touched), so a scan over a large spool does not stay in
/// the process's memory.
pub(crate) fn release(map: &memmap2::Mmap) {
    // SAFETY: the map is a shared, read-only file mapping; MADV_DONTNEED
    // only drops this process's page references, and later reads fault the
    // same file contents back in. No reference into the map is invalidated.
    if let Err(e) = unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) } {
        tracing::debug!(error = %e, "madvise(DONTNEED) failed");
    }
}

/// Records found past a damaged region: the first 8-aligned position after
/// `from` where valid frames start and continue, every one intact, to the
/// end of the written region.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Resync {
    /// Where the damaged region ends (the first record found after it).
    pub(crate) at: usize,
    pub(crate) offsets: Vec<u32>,
    /// End of the last frame.
    pub(crate) end: usize,
}

/// Looks past damage at `from` for intact records (pure). `None` when no
/// position after `from` starts an intact run of frames to the end.
pub(crate) fn resync(bytes: &[u8], from: usize) -> Option<Resync> {
    let mut at = from.next_multiple_of(frame::ALIGN) + frame::ALIGN;
    while at + frame::HEADER <= bytes.len() {
        if let frame::Read::Frame { .. } = frame::read(bytes, at, MAX_RECORD) {
            let mut offsets = Vec::new();
            let mut pos = at;
            let whole = loop {
                match frame::read(bytes, pos, MAX_RECORD) {
                    frame::Read::Frame { next, .. } => {
                        offsets.push(pos as u32);
                        pos = next;
                    }
                    frame::Read::End => break true,
                    _ => break false,
                }
            };
            if whole {
                return Some(Resync {
                    at,
                    offsets,
                    end: pos,
                });
            }
        }
        at += frame::ALIGN;
    }
    None
}

/// Discards a torn tail: zero everything from `end` to the end of the file.
pub(crate) fn cut_tail(file: &File, p: &Path, end: usize) -> Result<()> {
    let len = file.metadata().ctx("stat segment", p)?.len();
    file.set_len(end as u64)
        .ctx("truncate torn segment tail", p)?;
    file.set_len(len.max(SEGMENT_BYTES))
        .ctx("resize segment", p)?;
    file.sync_all().ctx("sync segment", p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg_bytes(payloads: &[&[u8]]) -> Vec<u8> {
        let mut b = vec![0u8; HEADER];
        for p in payloads {
            frame::encode(&mut b, p);
        }
        b.extend_from_slice(&[0u8; 64]);
        b
    }

    #[test]
    fn scan_finds_records_and_damage() {
        let b = seg_bytes(&[b"one record", b"two record", b"three"]);
        let s = scan(&b);
        assert_eq!(s.offsets, vec![16, 40, 64]);
        assert!(!s.torn);

        let mut mid = b.clone();
        mid[45] ^= 0xff; // inside record two
        let s = scan(&mid);
        assert_eq!(s.offsets, vec![16, LOST, 64]);

        let mut tail = b.clone();
        tail[70] ^= 0xff; // inside the last record: a torn tail
        let s = scan(&tail);
        assert_eq!(s.offsets, vec![16, 40]);
        assert!(s.torn);
        assert_eq!(s.end, 64);

        for cut in 0..b.len() {
            let _ = scan(&b[..cut]);
        }
    }
}
