//! The account-level suppression list at scale: import N generated
//! addresses from CSV (rows/s, compactions included, every batch
//! fdatasync'd), then in a fresh process: reopen time, resident memory of
//! the index (RSS before and after the open, from /proc/self/statm, and
//! the index's own byte count), and single-threaded `contains` lookups/s
//! for addresses on the list (hits) and not (misses).
//!
//! `cargo bench -p volley-benches --bench suppression`
//! Environment: SUPPRESSION_BENCH_N (addresses, default 10,000,000),
//! SUPPRESSION_BENCH_LOOKUPS (lookups of each kind, default 2,000,000).

use std::io::{self, Read};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use volley_benches::env_or;
use volley_engine::feedback::suppression::{Reason, SuppressionList};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Set in the child process: the store directory to reopen.
const CHILD: &str = "SUPPRESSION_BENCH_REOPEN";

fn address(i: u64) -> String {
    format!("user{i:010}@d{:03}.bench.test", i % 1000)
}

/// A CSV file of `n` addresses (with a header), generated as it is read.
struct Rows {
    next: u64,
    n: u64,
    buf: Vec<u8>,
    at: usize,
}

impl Read for Rows {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.buf.len() {
            if self.next == self.n {
                return Ok(0);
            }
            self.buf.clear();
            self.at = 0;
            if self.next == 0 {
                self.buf.extend_from_slice(b"email,reason\n");
            }
            let end = (self.next + 4096).min(self.n);
            for i in self.next..end {
                let reason = if i % 10 == 0 { "COMPLAINT" } else { "BOUNCE" };
                self.buf
                    .extend_from_slice(format!("{},{reason}\n", address(i)).as_bytes());
            }
            self.next = end;
        }
        let k = out.len().min(self.buf.len() - self.at);
        out[..k].copy_from_slice(&self.buf[self.at..self.at + k]);
        self.at += k;
        Ok(k)
    }
}

/// Resident memory of this process, in bytes.
fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf reads a constant of the system.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    pages * page
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

/// A pseudo-random sequence (splitmix64), the same in every run.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn lookups(s: &SuppressionList, n: u64, count: u64, hits: bool) -> f64 {
    let batch = count.min(1 << 20);
    let addrs: Vec<String> = (0..batch)
        .map(|i| {
            let r = mix(i + u64::from(hits) * (1 << 40));
            address(if hits { r % n } else { n + r % n })
        })
        .collect();
    let start = Instant::now();
    let mut found = 0u64;
    for k in 0..count {
        found += u64::from(s.contains(&addrs[(k % batch) as usize], None));
    }
    let secs = start.elapsed().as_secs_f64();
    let want = if hits { count } else { 0 };
    assert_eq!(found, want, "lookups found {found} of {count}");
    count as f64 / secs
}

/// Runs in a fresh process, so its memory figures are the open store's.
fn child(dir: &Path) {
    let n: u64 = env_or("SUPPRESSION_BENCH_N", 10_000_000);
    let count: u64 = env_or("SUPPRESSION_BENCH_LOOKUPS", 2_000_000);
    let before = rss();
    let start = Instant::now();
    let s = SuppressionList::open(dir).expect("reopen");
    let secs = start.elapsed().as_secs_f64();
    let after = rss();
    let index = s.index_bytes() as u64;
    assert_eq!(s.len(), n);
    println!("  reopen: {secs:.2} s ({} entries)", s.len());
    println!(
        "  resident: RSS {:.1} MiB -> {:.1} MiB (+{:.1} MiB = {:.2} bytes/address); index {:.1} MiB = {:.2} bytes/address",
        mib(before),
        mib(after),
        mib(after.saturating_sub(before)),
        after.saturating_sub(before) as f64 / n as f64,
        mib(index),
        index as f64 / n as f64
    );
    let hit = lookups(&s, n, count, true);
    let miss = lookups(&s, n, count, false);
    println!("  contains, one thread: hits {hit:.0}/s, misses {miss:.0}/s ({count} each)");
}

fn main() {
    if let Some(dir) = std::env::var_os(CHILD) {
        child(Path::new(&dir));
        return;
    }
    let n: u64 = env_or("SUPPRESSION_BENCH_N", 10_000_000);
    println!("suppression list, N = {n}");
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("suppression");
    let s = SuppressionList::open(&dir).expect("open");
    let rows = Rows {
        next: 0,
        n,
        buf: Vec::new(),
        at: 0,
    };
    let before = rss();
    let start = Instant::now();
    let report = s.import_csv(rows, Reason::Bounce).expect("import");
    let secs = start.elapsed().as_secs_f64();
    assert_eq!((report.added, report.rejected_count), (n, 0));
    println!(
        "  import: {secs:.2} s = {:.0} rows/s; RSS +{:.1} MiB after it (allocator keeps freed pages); index {:.2} bytes/address",
        n as f64 / secs,
        mib(rss().saturating_sub(before)),
        s.index_bytes() as f64 / n as f64
    );
    let start = Instant::now();
    s.compact().expect("compact");
    println!(
        "  compaction of the rest of the log: {:.2} s",
        start.elapsed().as_secs_f64()
    );
    let disk: u64 = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "  on disk: {:.1} MiB = {:.1} bytes/address",
        mib(disk),
        disk as f64 / n as f64
    );
    drop(s);
    let exe = std::env::current_exe().expect("own path");
    let status = Command::new(exe)
        .env(CHILD, &dir)
        .status()
        .expect("run the reopen process");
    assert!(status.success(), "reopen process failed");
}
