//! Group commit: many writers share one fdatasync.
//!
//! Writers append bytes under their own lock and note the new logical end
//! (`written`). A writer that needs durability calls [`GroupCommit::wait`]
//! with its end: if a sync covering it is done it returns at once; if one is
//! running it waits for it; otherwise it becomes the leader, syncs the file
//! that holds the newest bytes, and wakes everyone whose bytes that sync
//! covered. Older files are synced when they are sealed, before the writer
//! moves on, so syncing the current file covers every earlier byte.
//! Invariant: `synced <= written`, and `synced` only grows.

use std::fs::File;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

struct State {
    written: u64,
    synced: u64,
    syncing: bool,
    current: Arc<File>,
    failed: Option<String>,
    syncs: u64,
}

/// Shared durability point of one append-only stream of files.
pub(crate) struct GroupCommit {
    state: Mutex<State>,
    cv: Condvar,
}

impl GroupCommit {
    pub(crate) fn new(current: Arc<File>, end: u64) -> Self {
        GroupCommit {
            state: Mutex::new(State {
                written: end,
                synced: end,
                syncing: false,
                current,
                failed: None,
                syncs: 0,
            }),
            cv: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that bytes up to logical position `end` are written to `file`
    /// (the file now receiving appends).
    pub(crate) fn written(&self, end: u64, file: &Arc<File>) {
        let mut s = self.lock();
        s.written = s.written.max(end);
        if !Arc::ptr_eq(&s.current, file) {
            s.current = Arc::clone(file);
        }
    }

    /// Logical position known durable.
    pub(crate) fn synced(&self) -> u64 {
        self.lock().synced
    }

    /// Switches to a new file after the caller synced everything up to
    /// `end` in the old one.
    pub(crate) fn switch(&self, file: &Arc<File>, end: u64) {
        let mut s = self.lock();
        s.current = Arc::clone(file);
        s.written = s.written.max(end);
        s.synced = s.synced.max(end);
        self.cv.notify_all();
    }

    /// Why this stream refuses acknowledgements, after a failed fdatasync.
    pub(crate) fn failed(&self) -> Option<String> {
        self.lock().failed.clone()
    }

    /// How many fdatasyncs this stream has issued.
    pub(crate) fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    /// Blocks until every byte up to `end` is durable.
    pub(crate) fn wait(&self, end: u64) -> std::io::Result<()> {
        let mut s = self.lock();
        loop {
            if let Some(e) = &s.failed {
                return Err(std::io::Error::other(format!(
                    "earlier fdatasync failed: {e}"
                )));
            }
            if s.synced >= end {
                return Ok(());
            }
            if s.syncing {
                s = self.cv.wait(s).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            s.syncing = true;
            let target = s.written;
            let file = Arc::clone(&s.current);
            drop(s);
            let res = file.sync_data();
            s = self.lock();
            s.syncing = false;
            s.syncs += 1;
            match res {
                Ok(()) => s.synced = s.synced.max(target),
                // After a failed fdatasync the page cache state is unknown:
                // refuse further acknowledgements on this stream.
                Err(e) => s.failed = Some(e.to_string()),
            }
            self.cv.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_writers_share_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let f = Arc::new(File::create(dir.path().join("f")).unwrap());
        let gc = Arc::new(GroupCommit::new(Arc::clone(&f), 0));
        let pos = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let gc = Arc::clone(&gc);
                let f = Arc::clone(&f);
                let pos = Arc::clone(&pos);
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let end = pos.fetch_add(10, std::sync::atomic::Ordering::SeqCst) + 10;
                        gc.written(end, &f);
                        gc.wait(end).unwrap();
                        assert!(gc.synced() >= end);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(gc.synced(), 4000);
    }
}
