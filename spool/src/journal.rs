//! The journal: an append-only log of recipient state changes.
//!
//! Every outcome (deferred until T, delivered, bounced, failed to render) and
//! every campaign-level mark (ingest complete) is one framed entry. Entries
//! are group-committed like records; the in-memory state is rebuilt by
//! replaying the journal at open, and notification sinks read it with their
//! own cursor. Each entry carries an opaque `detail` (the engine's event data:
//! SMTP reply, subject, ...), so an event can be published again after a
//! crash. Encoding is little-endian and fixed-layout; decoding is total (bad
//! bytes give an error, never a panic). Exposure: bytes come from disk.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::RecipientId;
use crate::error::{IoContext, Result};
use crate::frame;

/// Magic and version at the start of the journal file.
pub(crate) const MAGIC: &[u8; 16] = b"VLYJRNL1\0\0\0\0\0\0\0\0";
/// Largest entry payload (detail is truncated to fit by the writer).
pub const MAX_ENTRY: usize = 16 * 1024;
const FIXED: usize = 32;

/// Kind of a journal entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// Temporary failure; retry at `next_ms`.
    Deferred = 1,
    /// Accepted by the receiving server (final).
    Delivered = 2,
    /// Permanently refused, or given up after the maximum age (final).
    Bounced = 3,
    /// The message could not be produced, e.g. a template error (final).
    Failed = 4,
    /// The campaign's recipient list is completely in the spool; `id` holds
    /// the campaign number in its low 32 bits.
    CampaignSealed = 16,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Deferred,
            2 => Kind::Delivered,
            3 => Kind::Bounced,
            4 => Kind::Failed,
            16 => Kind::CampaignSealed,
            _ => return None,
        })
    }
}

/// One journal entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub id: RecipientId,
    /// Delivery attempts made so far (including the one this entry reports).
    pub attempts: u32,
    /// When the change happened (ms since the Unix epoch).
    pub at_ms: u64,
    /// For `Deferred`: when to try again (ms since the Unix epoch).
    pub next_ms: u64,
    /// Opaque data for notification sinks.
    pub detail: Vec<u8>,
}

impl Entry {
    /// Appends the encoded payload of this entry to `out`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let detail = &self.detail[..self.detail.len().min(MAX_ENTRY - FIXED)];
        out.push(self.kind as u8);
        out.extend_from_slice(&[0u8; 3]);
        out.extend_from_slice(&self.attempts.to_le_bytes());
        out.extend_from_slice(&self.id.0.to_le_bytes());
        out.extend_from_slice(&self.at_ms.to_le_bytes());
        out.extend_from_slice(&self.next_ms.to_le_bytes());
        out.extend_from_slice(detail);
    }

    /// Decodes an entry payload.
    pub fn decode(p: &[u8]) -> std::result::Result<Entry, String> {
        if p.len() < FIXED {
            return Err(format!(
                "entry of {} bytes is shorter than {FIXED}",
                p.len()
            ));
        }
        let kind = Kind::from_u8(p[0]).ok_or_else(|| format!("unknown entry kind {}", p[0]))?;
        let u32_at = |i: usize| u32::from_le_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&p[i..i + 8]);
            u64::from_le_bytes(b)
        };
        Ok(Entry {
            kind,
            attempts: u32_at(4),
            id: RecipientId(u64_at(8)),
            at_ms: u64_at(16),
            next_ms: u64_at(24),
            detail: p[FIXED..].to_vec(),
        })
    }
}

/// Appends to the journal file; owned by the spool behind a mutex.
pub(crate) struct Writer {
    pub(crate) file: std::sync::Arc<File>,
    pub(crate) path: PathBuf,
    pub(crate) end: u64,
    buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn new(file: std::sync::Arc<File>, path: PathBuf, end: u64) -> Writer {
        Writer {
            file,
            path,
            end,
            buf: Vec::new(),
        }
    }

    /// Writes entries at the end of the file (not yet durable); returns the
    /// new end.
    pub(crate) fn append(&mut self, entries: &[Entry]) -> Result<u64> {
        self.buf.clear();
        let mut payload = Vec::with_capacity(128);
        for e in entries {
            payload.clear();
            e.encode(&mut payload);
            frame::encode(&mut self.buf, &payload);
        }
        self.file
            .write_all_at(&self.buf, self.end)
            .ctx("write journal", &self.path)?;
        self.end += self.buf.len() as u64;
        Ok(self.end)
    }
}

/// Reads journal entries from an offset, up to a committed end.
pub struct Reader {
    file: File,
    path: PathBuf,
    pos: u64,
    buf: Vec<u8>,
}

/// A problem found while reading the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadDamage {
    pub offset: u64,
    pub reason: String,
}

impl Reader {
    pub(crate) fn open(path: &Path, pos: u64) -> Result<Reader> {
        let file = File::open(path).ctx("open journal", path)?;
        Ok(Reader {
            file,
            path: path.to_path_buf(),
            pos: pos.max(MAGIC.len() as u64),
            buf: Vec::new(),
        })
    }

    /// Offset of the next entry to read.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Reads up to `max` entries that end at or before `upto`. Returns each
    /// entry with the offset just after it; damaged entries are skipped and
    /// reported in `damage`.
    pub fn read(
        &mut self,
        upto: u64,
        max: usize,
        damage: &mut Vec<ReadDamage>,
    ) -> Result<Vec<(u64, Entry)>> {
        let mut out = Vec::new();
        while out.len() < max && self.pos < upto {
            let want = ((upto - self.pos) as usize).min(1 << 20);
            self.buf.resize(want, 0);
            let n = read_at_most(&self.file, &mut self.buf, self.pos)
                .ctx("read journal", &self.path)?;
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
                // Bytes below the committed end that do not frame (only
                // possible after damage): skip them so the reader never spins.
                damage.push(ReadDamage {
                    offset: self.pos,
                    reason: format!(
                        "{} unframed bytes before the committed end",
                        upto - self.pos
                    ),
                });
                self.pos = upto;
                break;
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

/// Result of replaying the journal file at open.
pub(crate) struct Replay {
    pub(crate) entries: Vec<Entry>,
    /// Offset just after the last good frame (where appends continue).
    pub(crate) end: u64,
    /// Bytes after `end` that did not form a complete frame (a torn tail).
    pub(crate) torn_bytes: u64,
    pub(crate) damage: Vec<ReadDamage>,
}

/// Reads the whole journal (pure over its bytes).
pub(crate) fn replay(bytes: &[u8]) -> Replay {
    let mut entries = Vec::new();
    let mut damage = Vec::new();
    let mut pos = MAGIC.len();
    loop {
        match frame::read(bytes, pos, MAX_ENTRY) {
            frame::Read::Frame { payload, next } => {
                match Entry::decode(payload) {
                    Ok(e) => entries.push(e),
                    Err(reason) => damage.push(ReadDamage {
                        offset: pos as u64,
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
                        offset: pos as u64,
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
    let end = pos.min(bytes.len()) as u64;
    Replay {
        entries,
        end,
        torn_bytes: bytes.len() as u64 - end,
        damage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u64) -> Entry {
        Entry {
            kind: Kind::Deferred,
            id: RecipientId(i),
            attempts: 2,
            at_ms: 1000 + i,
            next_ms: 2000 + i,
            detail: format!("451 4.3.0 try later {i}").into_bytes(),
        }
    }

    fn file_bytes(entries: &[Entry]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for e in entries {
            let mut p = Vec::new();
            e.encode(&mut p);
            frame::encode(&mut out, &p);
        }
        out
    }

    #[test]
    fn encode_decode() {
        let e = entry(42);
        let mut p = Vec::new();
        e.encode(&mut p);
        assert_eq!(Entry::decode(&p).unwrap(), e);
        assert!(Entry::decode(&p[..10]).is_err());
        p[0] = 99;
        assert!(Entry::decode(&p).is_err());
    }

    #[test]
    fn replay_stops_at_torn_tail_and_skips_mid_damage() {
        let entries: Vec<Entry> = (0..5).map(entry).collect();
        let bytes = file_bytes(&entries);
        let r = replay(&bytes);
        assert_eq!(r.entries, entries);
        assert_eq!(r.torn_bytes, 0);

        // every cut of the tail gives a prefix of the entries
        for cut in MAGIC.len()..bytes.len() {
            let r = replay(&bytes[..cut]);
            assert!(r.entries.len() <= 5);
            assert_eq!(r.entries[..], entries[..r.entries.len()]);
            assert_eq!(r.end + r.torn_bytes, cut as u64);
        }

        // a flipped byte in entry 1 loses exactly that entry
        let mut damaged = bytes.clone();
        damaged[MAGIC.len() + 64 + 20] ^= 1;
        let r = replay(&damaged);
        assert_eq!(r.entries.len(), 4);
        assert_eq!(r.damage.len(), 1);
    }
}
