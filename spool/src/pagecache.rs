//! Letting go of file pages in the kernel's page cache that will not be
//! read again soon (written, synced and read by everyone who reads them):
//! a spool's journal and event files grow by gigabytes, and pages kept for
//! them crowd out the segments still to be sent and make every new page
//! come from memory the machine has not used for a while (on virtual
//! machines that hand freed memory back to the host, a page's first use
//! costs many microseconds). Linux only; elsewhere nothing is done.

use std::fs::File;
use std::path::Path;

const PAGE: u64 = 4096;

/// The start of the page holding `offset`.
pub fn page_start(offset: u64) -> u64 {
    offset & !(PAGE - 1)
}

/// Asks the kernel to drop the cached pages of `file` in `from..to`, which
/// must be clean (synced). Returns where the next call should start: `to`
/// rounded down to a page (the page holding `to` may still be written to
/// or read), or `from` when the kernel refused.
#[cfg(target_os = "linux")]
pub fn let_go(file: &File, from: u64, to: u64) -> u64 {
    use std::os::fd::AsRawFd;
    let start = page_start(from);
    let end = page_start(to);
    if end <= start {
        return from;
    }
    let (Ok(offset), Ok(len)) = (
        libc::off_t::try_from(start),
        libc::off_t::try_from(end - start),
    ) else {
        return from;
    };
    // SAFETY: posix_fadvise(2) only advises the kernel about the open
    // descriptor's pages; it touches no memory of ours.
    let r =
        unsafe { libc::posix_fadvise(file.as_raw_fd(), offset, len, libc::POSIX_FADV_DONTNEED) };
    if r == 0 { end } else { from }
}

#[cfg(not(target_os = "linux"))]
pub fn let_go(_file: &File, from: u64, _to: u64) -> u64 {
    from
}

/// Writes the dirty pages of `file` in `from..to` out to the disk: starts
/// their writeback, and with `wait` waits for it (and for writeback begun
/// earlier) to end. Data only: not a substitute for fdatasync, which also
/// makes the file's size durable; it lets [`let_go`] drop the pages
/// before a whole batch is synced. False when the kernel refused.
#[cfg(target_os = "linux")]
pub fn write_out(file: &File, from: u64, to: u64, wait: bool) -> bool {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (
        libc::off64_t::try_from(from),
        libc::off64_t::try_from(to.saturating_sub(from)),
    ) else {
        return false;
    };
    let flags = if wait {
        libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER
    } else {
        libc::SYNC_FILE_RANGE_WRITE
    };
    // SAFETY: sync_file_range(2) only starts and waits for writeback of the
    // open descriptor's pages; it touches no memory of ours.
    unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, flags) == 0 }
}

#[cfg(not(target_os = "linux"))]
pub fn write_out(_file: &File, _from: u64, _to: u64, _wait: bool) -> bool {
    false
}

/// How many of the first `pages` pages of the file at `path` are in the
/// page cache (mincore); `None` when that cannot be seen.
#[cfg(target_os = "linux")]
pub fn cached_pages(path: &Path, pages: usize) -> Option<usize> {
    use std::os::fd::AsRawFd;
    if pages == 0 {
        return Some(0);
    }
    let f = File::open(path).ok()?;
    let len = pages * PAGE as usize;
    // SAFETY: a read-only shared mapping of an open file, checked and
    // unmapped below; mincore(2) writes one byte per page into `vec`,
    // which has one for each.
    unsafe {
        let at = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        if at == libc::MAP_FAILED {
            return None;
        }
        let mut vec = vec![0u8; pages];
        let r = libc::mincore(at, len, vec.as_mut_ptr());
        libc::munmap(at, len);
        (r == 0).then(|| vec.iter().filter(|b| **b & 1 == 1).count())
    }
}

#[cfg(not(target_os = "linux"))]
pub fn cached_pages(_path: &Path, _pages: usize) -> Option<usize> {
    None
}

/// Whether `dir` is on a file system known to drop clean pages when told
/// (ext4, xfs, btrfs; tmpfs keeps them: they are the file).
#[cfg(target_os = "linux")]
pub fn drops_clean_pages(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs(2) fills the struct it is given.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `c` is a NUL-terminated path.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return false;
    }
    [0xEF53_i64, 0x5846_5342, 0x9123_683E].contains(&(st.f_type as i64))
}

#[cfg(not(target_os = "linux"))]
pub fn drops_clean_pages(_dir: &Path) -> bool {
    false
}
