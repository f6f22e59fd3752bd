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
//!
//! Tests can hold the next sync in progress ([`GroupCommit::hold_next_sync`])
//! and see how many writers queue behind it, to prove sharing without
//! relying on timing.

use std::fs::File;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

struct State {
    written: u64,
    synced: u64,
    syncing: bool,
    current: Arc<File>,
    failed: Option<String>,
    syncs: u64,
    /// Writers waiting for a sync in progress.
    #[cfg(test)]
    waiting: usize,
}

/// A sync held in progress by a test: `started` fires once the leader is
/// inside it (its target taken), and it completes after `release`.
#[cfg(test)]
pub(crate) struct HeldSync {
    pub(crate) started: std::sync::mpsc::Receiver<()>,
    pub(crate) release: std::sync::mpsc::Sender<()>,
}

/// Shared durability point of one append-only stream of files.
pub(crate) struct GroupCommit {
    state: Mutex<State>,
    cv: Condvar,
    #[cfg(test)]
    hold: Mutex<Option<(std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>)>>,
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
                #[cfg(test)]
                waiting: 0,
            }),
            cv: Condvar::new(),
            #[cfg(test)]
            hold: Mutex::new(None),
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
                #[cfg(test)]
                {
                    s.waiting += 1;
                }
                s = self.cv.wait(s).unwrap_or_else(PoisonError::into_inner);
                #[cfg(test)]
                {
                    s.waiting -= 1;
                }
                continue;
            }
            s.syncing = true;
            let target = s.written;
            let file = Arc::clone(&s.current);
            drop(s);
            #[cfg(test)]
            self.pause_if_held();
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
impl GroupCommit {
    /// Holds the next sync in progress until released.
    pub(crate) fn hold_next_sync(&self) -> HeldSync {
        let (started_tx, started) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel();
        *self.hold.lock().unwrap_or_else(PoisonError::into_inner) = Some((started_tx, release_rx));
        HeldSync { started, release }
    }

    fn pause_if_held(&self) {
        let held = self
            .hold
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some((started, release)) = held {
            let _ = started.send(());
            let _ = release.recv();
        }
    }

    /// Writers waiting for the sync in progress.
    pub(crate) fn waiting(&self) -> usize {
        self.lock().waiting
    }

    /// Returns once `n` writers wait for the sync in progress. Panics if
    /// they have not after a minute: writers that do not queue behind a
    /// sync in progress are a broken group commit (a deadline only for a
    /// failing test to end; a passing one never waits for it).
    pub(crate) fn until_waiting(&self, n: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while self.waiting() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "{} of {n} writers queued behind the sync in progress",
                self.waiting()
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_queued_behind_a_sync_share_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let f = Arc::new(File::create(dir.path().join("f")).unwrap());
        let gc = Arc::new(GroupCommit::new(Arc::clone(&f), 0));
        let held = gc.hold_next_sync();
        gc.written(10, &f);
        let leader = {
            let gc = Arc::clone(&gc);
            std::thread::spawn(move || gc.wait(10).unwrap())
        };
        held.started.recv().unwrap(); // the first sync, of bytes up to 10
        let writers: Vec<_> = (2..=8u64)
            .map(|k| {
                let gc = Arc::clone(&gc);
                let f = Arc::clone(&f);
                std::thread::spawn(move || {
                    gc.written(10 * k, &f);
                    gc.wait(10 * k).unwrap();
                    // acknowledged only by a sync that started after the
                    // write, never by the one in progress before it
                    assert!(gc.synced() >= 10 * k);
                    assert_eq!(gc.syncs(), 2);
                })
            })
            .collect();
        gc.until_waiting(7);
        assert_eq!(gc.synced(), 0, "nothing is acknowledged during the sync");
        held.release.send(()).unwrap();
        leader.join().unwrap();
        for w in writers {
            w.join().unwrap();
        }
        assert_eq!(gc.syncs(), 2, "8 acknowledgements, 2 fdatasyncs");
        assert_eq!(gc.synced(), 80);
    }

    #[test]
    fn concurrent_writers_are_all_covered() {
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
