//! Sink cursors: per sink, the journal position it has published up to
//! and the sink's own state at that point (e.g. the length of its output
//! file), so a sink can undo output written after the cursor. Each is a
//! small file `cursors/<name>` of two checksummed slots in different disk
//! sectors, written in turn in place (see [`Spool::set_cursor`]). As
//! cursors rise, the journal's pages every sink has read are let go
//! (`journal::floor`). Exposure: cursor bytes come from disk; a damaged
//! slot is ignored.

use std::fs;
use std::os::unix::fs::FileExt;

use crate::Spool;
use crate::error::{IoContext, Result};
use crate::spool::lock;

/// Where a sink has published to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    /// Journal position published up to.
    pub position: u64,
    /// The sink's own state at that position.
    pub sink_state: u64,
}

impl Spool {
    /// Where the sink `name` has published to; `None` if it never stored a
    /// cursor (or the cursor is unreadable).
    pub fn cursor(&self, name: &str) -> Option<Cursor> {
        read_cursor(&self.dir.join("cursors").join(name)).map(|(_, c)| c)
    }

    /// The names of the stored sink cursors, sorted.
    pub fn cursor_names(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(self.dir.join("cursors")) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        names
    }

    /// Forgets the cursor of a sink that is gone, so the journal it held
    /// can be retired; no error when there is none.
    pub fn remove_cursor(&self, name: &str) -> Result<()> {
        let dir = self.dir.join("cursors");
        let p = dir.join(name);
        lock(&self.journal_floor).removed(name);
        match fs::remove_file(&p) {
            Ok(()) => crate::fsync_dir(&dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).ctx("remove cursor", &p),
        }
    }

    /// The lowest position any sink has published to (0 without sinks).
    pub(crate) fn min_cursor(&self) -> u64 {
        let dir = self.dir.join("cursors");
        let Ok(entries) = fs::read_dir(&dir) else {
            return 0;
        };
        let positions: Vec<u64> = entries
            .filter_map(|e| e.ok())
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(|e| read_cursor(&e.path()).map(|(_, c)| c.position))
            .collect();
        positions.into_iter().min().unwrap_or(0)
    }

    /// Durably stores where the sink `name` has published to.
    ///
    /// The cursor file has two slots in different disk sectors, written in
    /// turn in place (no new blocks are needed, so this works on a full
    /// disk); a torn write spoils one slot and the other is still valid.
    /// A sink's first cursor needs a new file: when the disk is full, the
    /// spool's cursor reserve (`cursors/.reserve`) gives its space up for it.
    pub fn set_cursor(&self, name: &str, c: Cursor) -> Result<()> {
        self.check_writable()?;
        let stored = match self.write_cursor(name, c) {
            Err(e)
                if e.is_no_space()
                    && std::fs::remove_file(crate::layout::cursor_reserve(&self.dir)).is_ok() =>
            {
                tracing::warn!(
                    sink = name,
                    "the disk is full: the cursor reserve makes room for this sink's first cursor"
                );
                self.write_cursor(name, c)
            }
            r => r,
        };
        if stored.is_ok() {
            self.floor_moved(name, c.position);
        }
        stored
    }

    /// A sink's cursor is at `position`: the journal's pages every sink
    /// has read are let go (see [`crate::journal::floor`]).
    fn floor_moved(&self, name: &str, position: u64) {
        let mut floor = lock(&self.journal_floor);
        if floor.unloaded() {
            let names = self.cursor_names();
            floor.load(
                names
                    .into_iter()
                    .filter_map(|n| self.cursor(&n).map(|c| (n, c.position))),
            );
        }
        floor.moved(&self.dir, name, position);
    }

    fn write_cursor(&self, name: &str, c: Cursor) -> Result<()> {
        let dir = self.dir.join("cursors");
        let p = dir.join(name);
        let (seq, _) = read_cursor_slots(&p)
            .into_iter()
            .flatten()
            .max_by_key(|(s, _)| *s)
            .unwrap_or((0, Cursor::default()));
        let seq = seq + 1;
        let mut slot = Vec::with_capacity(SLOT);
        slot.extend_from_slice(&seq.to_le_bytes());
        slot.extend_from_slice(&c.position.to_le_bytes());
        slot.extend_from_slice(&c.sink_state.to_le_bytes());
        let crc = crc32fast::hash(&slot);
        slot.extend_from_slice(&crc.to_le_bytes());
        let existed = p.exists();
        let f = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&p)
            .ctx("open cursor", &p)?;
        if !existed {
            let sized = f
                .set_len(2 * SLOT_STRIDE)
                .and_then(|()| f.write_all_at(&[0u8; 2 * SLOT_STRIDE as usize], 0))
                .and_then(|()| f.sync_all());
            if let Err(e) = sized {
                // no half-made cursor file is left behind
                let _ = fs::remove_file(&p);
                return Err(e).ctx("write cursor", &p);
            }
        }
        f.write_all_at(&slot, (seq % 2) * SLOT_STRIDE)
            .ctx("write cursor", &p)?;
        f.sync_data().ctx("sync cursor", &p)?;
        if !existed {
            crate::fsync_dir(&dir)?;
        }
        Ok(())
    }
}

const SLOT: usize = 28;
const SLOT_STRIDE: u64 = 512;

fn read_cursor_slots(p: &std::path::Path) -> [Option<(u64, Cursor)>; 2] {
    let Ok(b) = fs::read(p) else {
        return [None, None];
    };
    let slot = |k: usize| {
        let s = b.get(k * SLOT_STRIDE as usize..k * SLOT_STRIDE as usize + SLOT)?;
        let crc = u32::from_le_bytes([s[24], s[25], s[26], s[27]]);
        if crc32fast::hash(&s[..24]) != crc {
            return None;
        }
        let u = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&s[i..i + 8]);
            u64::from_le_bytes(a)
        };
        let seq = u(0);
        (seq > 0).then(|| {
            (
                seq,
                Cursor {
                    position: u(8),
                    sink_state: u(16),
                },
            )
        })
    };
    [slot(0), slot(1)]
}

/// The newest valid slot of a cursor file, with its sequence number.
fn read_cursor(p: &std::path::Path) -> Option<(u64, Cursor)> {
    let slots = read_cursor_slots(p);
    let best = slots.into_iter().flatten().max_by_key(|(s, _)| *s);
    if best.is_none() && p.exists() {
        tracing::warn!(path = %p.display(), "cursor file unreadable; the sink starts over (at-least-once)");
    }
    best
}
