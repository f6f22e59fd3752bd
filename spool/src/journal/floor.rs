//! The journal's read floor: the lowest position any sink has published
//! to. Every entry below it has been read by every sink, so its pages are
//! let go from the page cache ([`crate::pagecache::let_go`]) as the floor
//! rises (a restart or `inspect` reads them from disk). Sinks' positions
//! are those stored with their cursors, loaded at the first update.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use super::files;
use crate::pagecache;

/// Pages are let go once the floor has risen this far since the last time.
const STEP: u64 = 1 << 20;

/// The sinks' positions and how far the journal's pages were let go.
#[derive(Default)]
pub(crate) struct Floor {
    /// `None` until loaded from the stored cursors.
    positions: Option<HashMap<String, u64>>,
    /// Pages below this position were let go.
    done: u64,
}

impl Floor {
    /// Whether the stored cursors still have to be loaded.
    pub(crate) fn unloaded(&self) -> bool {
        self.positions.is_none()
    }

    /// Takes the stored cursors' positions.
    pub(crate) fn load(&mut self, stored: impl IntoIterator<Item = (String, u64)>) {
        self.positions = Some(stored.into_iter().collect());
    }

    /// The sink `name` has published to `position`; lets go of the pages
    /// of the journal files in `spool` below the new floor.
    pub(crate) fn moved(&mut self, spool: &Path, name: &str, position: u64) {
        let positions = self.positions.get_or_insert_with(HashMap::new);
        match positions.get_mut(name) {
            Some(p) => *p = position,
            None => {
                positions.insert(name.to_string(), position);
            }
        }
        let floor = positions.values().copied().min().unwrap_or(0);
        if floor < self.done.saturating_add(STEP) {
            return;
        }
        let Ok(list) = files::list(spool) else {
            return;
        };
        for (i, (base, path)) in list.iter().enumerate() {
            let next = list.get(i + 1).map_or(u64::MAX, |(b, _)| *b);
            if next <= self.done || *base >= floor {
                continue;
            }
            if let Ok(f) = File::open(path) {
                let from = self.done.max(*base) - base;
                pagecache::let_go(&f, from, floor.min(next) - base);
            }
        }
        self.done = floor;
    }

    /// The sink `name` is gone.
    pub(crate) fn removed(&mut self, name: &str) {
        if let Some(p) = self.positions.as_mut() {
            p.remove(name);
        }
    }
}
