//! What skipping duplicate addresses costs the campaign ingest, measured
//! side by side in one run (rounds alternate, so the machine's noise falls
//! on both): the address set alone (time per address, memory), and the
//! durable ingest (`ingest::run` into a fresh spool, every batch
//! fdatasync'd; wall and CPU time) with duplicates looked for and not
//! (`keep_duplicates`, which exists for this measurement).
//!
//! `cargo bench -p volley-benches --bench ingest_dedup`
//! Environment: VOLLEY_BENCH_DEDUP_N (rows, default 10,000,000),
//! VOLLEY_BENCH_DEDUP_ROUNDS (rounds of each mode, default 8; best and
//! median are reported),
//! VOLLEY_BENCH_DEDUP_EVERY (every Nth row repeats an earlier address in
//! capitals, default 100: 1% duplicates), VOLLEY_BENCH_DEDUP_ONLY
//! (`skipped` or `kept`: run only that mode, e.g. under a profiler).

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use volley_engine::campaign;
use volley_engine::ingest::seen::AddressSet;
use volley_engine::ingest::{self, BATCH};
use volley_spool::Spool;
use volley_tests::Fixture;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Row `i`'s address: unique, or (every `every`th row) in capitals the
/// address of the row `every / 2` rows before (one that is not a repeat).
fn address(i: u64, every: u64) -> String {
    if i % every == every - 1 {
        let j = i - every / 2;
        format!("U{j:010}@D{:03}.BENCH.TEST", j % 1000)
    } else {
        format!("u{i:010}@d{:03}.bench.test", i % 1000)
    }
}

/// CPU seconds this process has used (all threads, user and system).
fn cpu() -> f64 {
    let mut u = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct we own.
    let u = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, u.as_mut_ptr());
        u.assume_init()
    };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// Peak resident memory of this process, in MiB.
fn peak_rss() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn mode(keep: bool) -> &'static str {
    if keep { "kept" } else { "skipped" }
}

/// Spools the campaign into a fresh spool; returns (wall, CPU) seconds,
/// recipients spooled and duplicates skipped.
fn ingest(dir: &Path, loaded: &campaign::LoadedCampaign, keep: bool) -> ((f64, f64), u64, u64) {
    let spool_dir = dir.join("spool");
    let _ = std::fs::remove_dir_all(&spool_dir);
    let (start, cpu0) = (Instant::now(), cpu());
    let (spool, _) = Spool::open(&spool_dir).expect("spool");
    let opts = ingest::Options {
        keep_duplicates: keep,
        ..Default::default()
    };
    let s = ingest::run(&spool, loaded, opts, |_, _| {}, |_| {}).expect("ingest");
    let secs = (start.elapsed().as_secs_f64(), cpu() - cpu0);
    drop(spool);
    let _ = std::fs::remove_dir_all(&spool_dir);
    (secs, s.accepted, s.duplicates)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: u64 = env_or("VOLLEY_BENCH_DEDUP_N", 10_000_000);
    let rounds: u32 = env_or("VOLLEY_BENCH_DEDUP_ROUNDS", 8);
    let every: u64 = env_or("VOLLEY_BENCH_DEDUP_EVERY", 100);
    let fx = Fixture::new();
    let list = fx.path().join("list.csv");
    let mut w =
        std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&list).expect("list"));
    writeln!(w, "email,first_name,last_name,city,plan").expect("write");
    for i in 0..n {
        writeln!(
            w,
            "{},First{:07},Last{:08},City{:04},premium",
            address(i, every),
            i % 9_999_991,
            i % 77_777_777,
            i % 9973
        )
        .expect("write");
    }
    w.flush().expect("flush");
    w.get_ref().sync_all().expect("sync list");
    drop(w);
    let list_mb = std::fs::metadata(&list).map_or(0, |m| m.len()) / (1 << 20);
    fx.write("body.txt", "Hello {{first_name}} {{last_name}}\n");
    fx.write(
        "campaign.toml",
        "id = \"dedup\"\nfrom = \"Bench <news@bench.test>\"\nsubject = \"Hi {{first_name}}\"\ntext = \"body.txt\"\nrecipients = \"list.csv\"\n",
    );
    let loaded = campaign::load(&fx.path().join("campaign.toml")).expect("campaign");
    println!(
        "ingest dedup: {n} rows (list {list_mb} MiB, 26-byte addresses, one row in {every} repeats an earlier address in capitals)"
    );

    // 1. the address set alone, fed in batches as the list reader feeds it
    let mut addresses = Vec::with_capacity(BATCH);
    let mut new = Vec::new();
    let (mut format_secs, mut set_secs, mut set_cpu) = (0.0, 0.0, 0.0);
    let rss_before = peak_rss();
    let mut set = AddressSet::new();
    // as the ingest does: sized once, from an estimate of the list's rows
    set.reserve(n as usize, 26);
    let mut dups = 0u64;
    for first in (0..n).step_by(BATCH) {
        let t = Instant::now();
        addresses.clear();
        addresses.extend((first..n.min(first + BATCH as u64)).map(|i| address(i, every)));
        format_secs += t.elapsed().as_secs_f64();
        let (t, c) = (Instant::now(), cpu());
        let refs: Vec<&str> = addresses.iter().map(String::as_str).collect();
        set.insert_all(&refs, &mut new);
        set_secs += t.elapsed().as_secs_f64();
        set_cpu += cpu() - c;
        dups += new.iter().filter(|&&x| !x).count() as u64;
    }
    let bytes = set.heap_bytes();
    println!(
        "  address set alone: {} addresses, {dups} duplicates: {:.0} ns per address ({:.0} ns CPU; making the address strings, {:.0} ns each, not counted); {:.0} MiB = {:.1} bytes per address (peak RSS {:.0} -> {:.0} MiB)",
        set.len(),
        set_secs * 1e9 / n as f64,
        set_cpu * 1e9 / n as f64,
        format_secs * 1e9 / n as f64,
        bytes as f64 / (1 << 20) as f64,
        bytes as f64 / set.len() as f64,
        rss_before,
        peak_rss()
    );
    drop(set);

    // 2. the durable ingest: duplicates skipped and kept, alternating
    let only = std::env::var("VOLLEY_BENCH_DEDUP_ONLY").ok();
    let mut runs = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        for keep in [round % 2 == 0, round % 2 != 0] {
            if only.as_deref().is_some_and(|m| m != mode(keep)) {
                continue;
            }
            let ((secs, cpu), accepted, skipped) = ingest(fx.path(), &loaded, keep);
            println!(
                "  round {round}: durable ingest, duplicates {}: {secs:.2} s = {:.0} rows/s, {cpu:.2} s CPU ({accepted} spooled, {skipped} skipped)",
                mode(keep),
                n as f64 / secs
            );
            runs[usize::from(keep)].push((secs, cpu));
        }
    }
    if only.is_some() {
        return;
    }
    let best =
        |v: &[(f64, f64)], f: fn(&(f64, f64)) -> f64| v.iter().map(f).fold(f64::INFINITY, f64::min);
    let median = |v: &[(f64, f64)], f: fn(&(f64, f64)) -> f64| {
        let mut x: Vec<f64> = v.iter().map(f).collect();
        x.sort_by(f64::total_cmp);
        match x.len() {
            0 => f64::NAN,
            k if k % 2 == 1 => x[k / 2],
            k => (x[k / 2 - 1] + x[k / 2]) / 2.0,
        }
    };
    type Pick<'a> = &'a dyn Fn(&[(f64, f64)], fn(&(f64, f64)) -> f64) -> f64;
    let picks: [(&str, Pick); 2] = [("best", &best), ("median", &median)];
    for (what, pick) in picks {
        let (on, off) = (pick(&runs[0], |r| r.0), pick(&runs[1], |r| r.0));
        let (on_cpu, off_cpu) = (pick(&runs[0], |r| r.1), pick(&runs[1], |r| r.1));
        println!(
            "  durable ingest, {what} of {rounds}: duplicates skipped {:.0} rows/s, kept {:.0} rows/s ({:+.1}% time); CPU {on_cpu:.2} s vs {off_cpu:.2} s ({:+.1}%)",
            n as f64 / on,
            n as f64 / off,
            (on / off - 1.0) * 100.0,
            (on_cpu / off_cpu - 1.0) * 100.0
        );
    }
    println!("  peak RSS of the bench process: {:.0} MiB", peak_rss());
}
