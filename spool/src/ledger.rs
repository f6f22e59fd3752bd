//! The ledger of finished segments: when the spool is asked to keep one
//! ([`Spool::keep_ledger`]), a segment retired by reclamation leaves
//! behind `ledger/N.ldg`, the campaign and address of each of its
//! recipients by index, kept for the configured time. Feedback that comes
//! back days after delivery (a complaint, a bounce naming no readable
//! address) names its recipient by id; this is where its address is found
//! once the records are gone.
//!
//! Format: magic `VLYLDG1\n`, the count n (u32 LE), n + 1 offsets (u32 LE,
//! from the data's start), then per recipient its campaign (u32 LE) and
//! address bytes. Written whole to a temporary file and renamed, without
//! a sync: it serves attribution only, and a ledger lost in a crash only
//! makes such feedback unattributable. Files older than the retention are
//! deleted at the next reclamation. Exposure: disk bytes; any damage reads
//! as "not found", never a panic.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{RecipientId, Spool};

const MAGIC: &[u8; 8] = b"VLYLDG1\n";

/// The ledger directory of a spool.
fn dir(spool: &Path) -> PathBuf {
    spool.join("ledger")
}

fn path(spool: &Path, segment: u32) -> PathBuf {
    dir(spool).join(format!("{segment:08}.ldg"))
}

/// Encodes the ledger of one segment: `(campaign, address)` by index.
pub(crate) fn encode(entries: &[(u32, String)]) -> Vec<u8> {
    let data: usize = entries.iter().map(|(_, e)| 4 + e.len()).sum();
    let mut out = Vec::with_capacity(12 + 4 * (entries.len() + 1) + data);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    let mut off = 0u32;
    out.extend_from_slice(&off.to_le_bytes());
    for (_, e) in entries {
        off = off.saturating_add(4 + e.len() as u32);
        out.extend_from_slice(&off.to_le_bytes());
    }
    for (c, e) in entries {
        out.extend_from_slice(&c.to_le_bytes());
        out.extend_from_slice(e.as_bytes());
    }
    out
}

/// Reads entry `index` of a ledger file.
fn read(file: &std::fs::File, index: u32) -> Option<(u32, String)> {
    let mut head = [0u8; 12];
    file.read_exact_at(&mut head, 0).ok()?;
    if &head[..8] != MAGIC {
        return None;
    }
    let n = u32::from_le_bytes(head[8..12].try_into().ok()?);
    if index >= n {
        return None;
    }
    let mut offs = [0u8; 8];
    file.read_exact_at(&mut offs, 12 + 4 * u64::from(index))
        .ok()?;
    let start = u32::from_le_bytes(offs[..4].try_into().ok()?);
    let end = u32::from_le_bytes(offs[4..].try_into().ok()?);
    let len = end.checked_sub(start)? as usize;
    if !(4..=4 + 1024).contains(&len) {
        return None;
    }
    let data = 12 + 4 * (u64::from(n) + 1);
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, data + u64::from(start)).ok()?;
    let campaign = u32::from_le_bytes(buf[..4].try_into().ok()?);
    let email = String::from_utf8(buf[4..].to_vec()).ok()?;
    Some((campaign, email))
}

impl Spool {
    /// Keeps the ledger of each segment reclaimed from now on for `keep`
    /// (see the module header). Off by default.
    pub fn keep_ledger(&self, keep: Duration) {
        *crate::spool::lock(&self.ledger_keep) = Some(keep);
    }

    /// The campaign and address of a recipient whose segment was reclaimed
    /// and whose ledger is still kept.
    pub fn ledger_lookup(&self, id: RecipientId) -> Option<(u32, String)> {
        let f = std::fs::File::open(path(&self.dir, id.segment())).ok()?;
        read(&f, id.index())
    }

    /// Writes a reclaimed segment's ledger, when one is kept, and deletes
    /// ledgers past their time. Best effort: failures are logged.
    pub(crate) fn write_ledger(&self, segment: u32, entries: &[(u32, String)]) {
        let Some(keep) = *crate::spool::lock(&self.ledger_keep) else {
            return;
        };
        let d = dir(&self.dir);
        let result = std::fs::create_dir_all(&d).and_then(|()| {
            let tmp = d.join(format!("{segment:08}.tmp"));
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&encode(entries))?;
            drop(f);
            std::fs::rename(&tmp, path(&self.dir, segment))
        });
        if let Err(e) = result {
            tracing::warn!(segment, error = %e, "cannot write a finished segment's ledger");
        }
        self.expire_ledgers(keep);
    }

    /// Deletes ledgers older than `keep` (looked for at most once an hour).
    fn expire_ledgers(&self, keep: Duration) {
        {
            let mut last = crate::spool::lock(&self.ledger_expired);
            if last.is_some_and(|t: std::time::Instant| t.elapsed() < Duration::from_secs(3600)) {
                return;
            }
            *last = Some(std::time::Instant::now());
        }
        let Ok(items) = std::fs::read_dir(dir(&self.dir)) else {
            return;
        };
        let now = std::time::SystemTime::now();
        for item in items.flatten() {
            let old = item
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > keep);
            if old {
                let _ = std::fs::remove_file(item.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_read_back_and_damage_reads_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l");
        let entries =
            [(3, "a@b.test"), (4, ""), (5, "ccc@d.test")].map(|(c, e)| (c, e.to_string()));
        std::fs::write(&p, encode(&entries)).unwrap();
        let f = std::fs::File::open(&p).unwrap();
        assert_eq!(read(&f, 0), Some((3, "a@b.test".into())));
        assert_eq!(read(&f, 2), Some((5, "ccc@d.test".into())));
        assert_eq!(read(&f, 3), None);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes.truncate(bytes.len() - 3);
        std::fs::write(&p, &bytes).unwrap();
        let f = std::fs::File::open(&p).unwrap();
        assert_eq!(read(&f, 2), None, "cut short");
        std::fs::write(&p, b"garbage").unwrap();
        let f = std::fs::File::open(&p).unwrap();
        assert_eq!(read(&f, 0), None);
    }
}
