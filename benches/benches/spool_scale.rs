//! The spool at campaign scale: durable ingest rate from a CSV, spool bytes
//! per recipient, `volley status` time, and `volley run` with the whole
//! campaign queued: time from start to the first delivery (first start, and
//! restart after kill -9) and resident memory.
//!
//! `cargo bench -p volley-benches --bench spool_scale`
//! Environment: VOLLEY_BENCH_SPOOL_N (recipients, default 10,000,000),
//! VOLLEY_BENCH_RUN_SECS (how long `run` delivers before memory is read,
//! default 5).

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use volley_tests::scripted::ScriptedServer;
use volley_tests::{Fixture, free_port, volley};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn allocated(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(m) = e.metadata() else { continue };
        total += if m.is_dir() {
            allocated(&e.path())
        } else {
            m.blocks() * 512
        };
    }
    total
}

/// (current, peak) resident memory of a process, in MiB.
fn rss(pid: u32) -> (f64, f64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (kb("VmRSS:"), kb("VmHWM:"))
}

fn timed(dir: &Path, args: &[&str]) -> (f64, String) {
    let start = Instant::now();
    let out = Command::new(volley())
        .args(args)
        .current_dir(dir)
        .env("VOLLEY_LOG", "warn")
        .output()
        .expect("running volley");
    let secs = start.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "volley {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (secs, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Starts `volley run`; returns it and the seconds until the server got its
/// first message.
fn start_run(dir: &Path, server: &ScriptedServer) -> (Child, f64) {
    let before = server.received_count();
    let start = Instant::now();
    let child = Command::new(volley())
        .args(["run", "--config", "config.toml"])
        .current_dir(dir)
        .env("VOLLEY_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting volley run");
    while server.received_count() == before {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no delivery within 120 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    (child, start.elapsed().as_secs_f64())
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: u64 = env_or("VOLLEY_BENCH_SPOOL_N", 10_000_000);
    let run_secs: u64 = env_or("VOLLEY_BENCH_RUN_SECS", 5);
    let fx = Fixture::new();
    let server = ScriptedServer::accept_all(true);

    // the list: ~40 bytes of variables per row
    let list = fx.path().join("list.csv");
    let mut w =
        std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&list).expect("list"));
    writeln!(w, "email,first_name,last_name,city,plan").expect("write");
    let mut payload = 0u64;
    for i in 0..n {
        let email = format!("u{i:010}@d{:03}.bench.test", i % 1000);
        let vars = format!(
            "First{:07},Last{:08},City{:04},premium",
            i % 9_999_991,
            i % 77_777_777,
            i % 9973
        );
        payload += (email.len() + vars.len() - 3) as u64; // values without commas
        writeln!(w, "{email},{vars}").expect("write");
    }
    w.flush().expect("flush");
    // on disk before measuring, so its write-back does not overlap the ingest
    w.get_ref().sync_all().expect("sync list");
    drop(w);
    let list_mb = std::fs::metadata(&list).map_or(0, |m| m.len()) / (1 << 20);
    fx.write("body.txt", "Hello {{first_name}} {{last_name}}\n");
    fx.write(
        "campaign.toml",
        "id = \"scale\"\nfrom = \"Bench <news@bench.test>\"\nsubject = \"Hi {{first_name}}\"\ntext = \"body.txt\"\nrecipients = \"list.csv\"\n",
    );
    fx.write(
        "config.toml",
        format!(
            "[spool]\ndir = \"spool\"\n[events]\njsonl = \"events.jsonl\"\n[http]\nlisten = \"127.0.0.1:{}\"\n[delivery]\nmessages_per_second = 1000000\nconnections = 2\n[routes]\n\"*\" = \"{}\"\n",
            free_port(),
            server.addr
        ),
    );

    // 1. durable ingest
    let (ingest_secs, out) = timed(
        fx.path(),
        &["enqueue", "campaign.toml", "--config", "config.toml"],
    );
    let spool_bytes = allocated(&fx.path().join("spool"));
    let per = spool_bytes as f64 / n as f64;
    let data_per = payload as f64 / n as f64;

    // 2. status
    let (status_secs, _) = timed(fx.path(), &["status", "--config", "config.toml"]);

    // 3. run with everything queued: first start, memory, restart after kill -9
    let (mut child, first) = start_run(fx.path(), &server);
    std::thread::sleep(Duration::from_secs(run_secs));
    let (rss_now, rss_peak) = rss(child.id());
    child.kill().expect("kill -9");
    let _ = child.wait();
    let delivered_first = server.received_count();
    let (mut child, restart) = start_run(fx.path(), &server);
    std::thread::sleep(Duration::from_secs(run_secs));
    let (rss2_now, rss2_peak) = rss(child.id());
    let (status2_secs, _) = timed(fx.path(), &["status", "--config", "config.toml"]);
    // SAFETY: kill(2) on our own child's pid; SIGTERM stops it cleanly.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let _ = child.wait();

    println!(
        "spool at scale: {n} recipients (list {list_mb} MiB, ~{data_per:.0} bytes of address + variables per row)"
    );
    println!("  {}", out.trim());
    println!(
        "  durable ingest: {:.2} s = {:.0} recipients/s (volley enqueue, start to exit)",
        ingest_secs,
        n as f64 / ingest_secs
    );
    println!(
        "  spool size: {:.1} MiB = {per:.1} bytes per recipient = {:.1} bytes beyond its address and variables",
        spool_bytes as f64 / (1 << 20) as f64,
        per - data_per
    );
    println!(
        "  volley status: {:.3} s (queued), {:.3} s (while run delivers)",
        status_secs, status2_secs
    );
    println!(
        "  volley run, first start: first delivery after {first:.2} s; RSS {rss_now:.0} MiB (peak {rss_peak:.0} MiB) after {run_secs} s ({delivered_first} delivered)"
    );
    println!(
        "  volley run, restart after kill -9: first delivery after {restart:.2} s; RSS {rss2_now:.0} MiB (peak {rss2_peak:.0} MiB) after {run_secs} s"
    );
}
