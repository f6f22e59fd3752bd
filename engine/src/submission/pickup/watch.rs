//! Waiting for files in `pickup/new/`: inotify (a rename into the
//! directory or a file closed there wakes the waiter at once), with a
//! polling fallback when inotify is not available (the waiter then just
//! sleeps its timeout). A direct libc binding: one watch, one `poll(2)`
//! with a timeout, nothing a crate would add.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

/// A watch on one directory.
pub struct Watch {
    fd: Option<OwnedFd>,
}

impl Watch {
    /// Watches `dir` (without inotify the waits are plain sleeps).
    pub fn new(dir: &Path) -> Watch {
        use std::os::unix::ffi::OsStrExt;
        let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
            return Watch { fd: None };
        };
        // SAFETY: inotify_init1 takes flags only and returns a new fd or -1.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            tracing::warn!("inotify unavailable: polling the drop directory");
            return Watch { fd: None };
        }
        // SAFETY: `raw` is a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mask = libc::IN_MOVED_TO | libc::IN_CLOSE_WRITE | libc::IN_CREATE;
        // SAFETY: a valid fd and a NUL-terminated path that outlives the call.
        let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), mask) };
        if wd < 0 {
            tracing::warn!(dir = %dir.display(), "cannot watch the drop directory: polling it");
            return Watch { fd: None };
        }
        Watch { fd: Some(fd) }
    }

    /// Whether changes wake the waiter (else it polls).
    pub fn is_inotify(&self) -> bool {
        self.fd.is_some()
    }

    /// Waits until something happens in the directory or `timeout` passes.
    pub fn wait(&self, timeout: Duration) {
        let Some(fd) = &self.fd else {
            std::thread::sleep(timeout);
            return;
        };
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd, count 1.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n > 0 {
            // drain the events: what changed is read from the directory
            let mut buf = [0u8; 4096];
            loop {
                // SAFETY: reading into a buffer we own, within its length.
                let r = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if r <= 0 {
                    break;
                }
            }
        }
    }
}
