//! Many destination sites at once: the personalized example newsletter
//! (~21 KB, Ed25519 DKIM by default) sent by the release `volley send` to
//! N recipients whose domains have 1, 100, 1,000 or 10,000 distinct MX
//! sites, answered by an in-process test DNS server and received by up to
//! 16 Postfix `smtp-sink`s on 127.0.0.2–127.0.0.17 (see
//! `volley_benches::sites`). One site is the reference: a `[routes] "*"`
//! entry to one sink. Per site count it measures `volley send` from start
//! to exit (msg/s) and the process's peak resident set (see
//! `volley_benches::measure::Measured::max_rss_kib`), checks that it exited 0 and that each sink counted the
//! messages of its sites, and tells what else was busy (the sinks' CPU,
//! the machine's). With `VOLLEY_BIN_BEFORE` each site count runs with both
//! binaries, alternating which goes first, and the table has both columns.
//!
//! `cargo bench -p volley-benches --bench many_sites`
//! Environment:
//! - VOLLEY_BENCH_N: recipients per run (default 100000)
//! - VOLLEY_BENCH_SITES: site counts, comma-separated (default
//!   1,100,1000,10000)
//! - VOLLEY_BENCH_CONNS: connections per site, `C` for every run or
//!   `S:C,...` per site count (default 32 for one site, 4 while
//!   sites × 4 ≤ 16,000 sessions (16 sinks × 1,000), else 1)
//! - VOLLEY_BENCH_ALG: ed25519 (default) or rsa (RSA-2048)
//! - VOLLEY_BIN: the binary measured (default: built here, release);
//!   VOLLEY_BIN_BEFORE: a second binary run side by side
//! - VOLLEY_BENCH_TIMEOUT_SECS (default 60 + N/100), VOLLEY_BENCH_STALL_SECS
//!   (no message arriving for this long ends a run, default 60),
//!   VOLLEY_BENCH_MAX_RSS_MB (a run is killed past it; default the smaller
//!   of 4096 and 3/4 of the memory available at start)
//! - VOLLEY_BENCH_QUIET_WAIT_SECS: before each run, wait at most this long
//!   for the machine to be at most 25% busy with other work (default 120;
//!   0 does not wait)
//! - VOLLEY_BENCH_KEEP: set to keep each run's directory (config, spool,
//!   events, `send.out`, `send.err`) for inspection

use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use volley_benches::dns_probe::Probe;
use volley_benches::env_or;
use volley_benches::measure::{self, CpuTimes, Limits};
use volley_benches::newsletter::{self, Alg};
use volley_benches::sites::{self, Layout, SINKS, Sinks};
use volley_benches::sites_report::{Run, delay_reasons, detail, table};
use volley_tests::{Fixture, volley};

/// Busy share of the machine (other work) below which a run starts
/// without waiting.
const QUIET: f64 = 0.25;

/// What the environment asks for.
struct Settings {
    n: usize,
    sites: Vec<usize>,
    conns: BTreeMap<usize, usize>,
    conns_all: Option<usize>,
    alg: Alg,
    limits: Limits,
    /// Longest wait for the machine to be quiet before a run.
    quiet_wait: Duration,
    bins: Vec<(&'static str, PathBuf)>,
}

impl Settings {
    fn from_env() -> Settings {
        let n: usize = env_or("VOLLEY_BENCH_N", 100_000);
        let sites = list("VOLLEY_BENCH_SITES", "1,100,1000,10000")
            .iter()
            .map(|s| parse::<usize>("VOLLEY_BENCH_SITES", s))
            .collect();
        let (mut conns, mut conns_all) = (BTreeMap::new(), None);
        for item in list("VOLLEY_BENCH_CONNS", "") {
            match item.split_once(':') {
                Some((s, c)) => {
                    conns.insert(
                        parse("VOLLEY_BENCH_CONNS", s),
                        parse("VOLLEY_BENCH_CONNS", c),
                    );
                }
                None => conns_all = Some(parse("VOLLEY_BENCH_CONNS", &item)),
            }
        }
        let available_mb = mem_available_kib() / 1024;
        let limits = Limits {
            time: Duration::from_secs(env_or("VOLLEY_BENCH_TIMEOUT_SECS", 60 + n as u64 / 100)),
            stall: Duration::from_secs(env_or("VOLLEY_BENCH_STALL_SECS", 60)),
            max_rss_kib: env_or("VOLLEY_BENCH_MAX_RSS_MB", 4096.min(available_mb * 3 / 4)) * 1024,
        };
        let mut bins = Vec::new();
        if let Ok(p) = std::env::var("VOLLEY_BIN_BEFORE") {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "VOLLEY_BIN_BEFORE={} is no file", p.display());
            bins.push(("before", p));
        }
        bins.push(("current", volley()));
        Settings {
            n,
            sites,
            conns,
            conns_all,
            alg: Alg::from_env(Alg::Ed25519),
            limits,
            quiet_wait: Duration::from_secs(env_or("VOLLEY_BENCH_QUIET_WAIT_SECS", 120)),
            bins,
        }
    }

    /// Connections per site for a run with `sites` sites.
    fn conns(&self, sites: usize) -> usize {
        if let Some(&c) = self.conns.get(&sites) {
            c
        } else if let Some(c) = self.conns_all {
            c
        } else {
            Layout::new(sites).default_connections()
        }
    }
}

fn list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| s.trim().replace('_', ""))
        .filter(|s| !s.is_empty())
        .collect()
}

fn parse<T: std::str::FromStr>(name: &str, s: &str) -> T {
    s.parse()
        .unwrap_or_else(|_| panic!("{name}: {s:?} is not a number"))
}

fn mem_available_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(8 << 20)
}

/// Raises the open-file soft limit to the hard limit (inherited by the
/// engine and the sinks: thousands of sites need thousands of sockets);
/// returns the limit.
fn raise_nofile() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write `lim`.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        lim.rlim_cur = lim.rlim_max;
        let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur
    }
}

/// CPU seconds this process (the DNS server, the probe, the watcher) has
/// used so far.
fn own_cpu_secs() -> f64 {
    measure::proc_cpu_secs(std::process::id()).unwrap_or(0.0)
}

/// Runs `bin` once on `layout`.
fn run_once(
    s: &Settings,
    label: &'static str,
    bin: &Path,
    layout: Layout,
    dns: Option<SocketAddr>,
) -> Run {
    let fx = Fixture::new();
    newsletter::write_key(&fx, s.alg);
    newsletter::write_campaign(&fx, s.n, |i| Layout::domain(layout.domain_of(i)));
    let sinks = Sinks::start(layout.sinks());
    let conns = s.conns(layout.sites);
    let dkim = newsletter::dkim_config(s.alg);
    fx.write("config.toml", layout.config(dns, sinks.port, conns, &dkim));
    let mut cmd = Command::new(bin);
    cmd.args(["send", "campaign.toml", "--config", "config.toml"])
        .current_dir(fx.path())
        .env("VOLLEY_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(File::create(fx.path().join("send.out")).expect("send.out"))
        .stderr(File::create(fx.path().join("send.err")).expect("send.err"));
    let (cpu0, own0) = (CpuTimes::now(), own_cpu_secs());
    let probe = dns.map(|addr| Probe::start(addr, &Layout::host(0)));
    let m = measure::run(cmd, s.limits, || sinks.total());
    let busy = CpuTimes::now().busy_since(&cpu0);
    let own_cpu = own_cpu_secs() - own0;
    let dns_probe = probe.map(Probe::stop);
    // the sinks write their counters as each message ends: wait (bounded)
    // for the last ones to land
    let expected = layout.expected_per_sink(s.n);
    let settle = Instant::now();
    while m.code == Some(0)
        && sinks.counted() != expected
        && settle.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let counted = sinks.counted();
    let sinks_cpu = sinks.cpu_secs();
    let misrouted = if m.code == Some(0) {
        counted
            .iter()
            .zip(&expected)
            .enumerate()
            .filter(|(_, (c, e))| c != e)
            .map(|(k, (c, e))| (k, *c, *e))
            .collect()
    } else {
        Vec::new()
    };
    let out = std::fs::read_to_string(fx.path().join("send.out")).unwrap_or_default();
    let err = std::fs::read_to_string(fx.path().join("send.err")).unwrap_or_default();
    let mut summary = out.lines().last().unwrap_or("").trim().to_string();
    if m.code != Some(0) {
        let mut tail: Vec<&str> = err.lines().rev().take(3).collect();
        tail.reverse();
        summary.push_str(&format!(" | stderr: {}", tail.join(" / ")));
    }
    let deferrals = if m.code == Some(0) {
        Vec::new()
    } else {
        delay_reasons(&fx.path().join("events.jsonl"), 3)
    };
    drop(sinks);
    if std::env::var_os("VOLLEY_BENCH_KEEP").is_some() {
        summary.push_str(&format!(" | kept in {}", fx.dir.keep().display()));
    }
    Run {
        label,
        sites: layout.sites,
        conns,
        deferrals,
        dns_probe,
        delivered: counted.iter().sum(),
        misrouted,
        sinks_cpu,
        m,
        busy,
        own_cpu,
        summary,
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` probes benches with --list
    }
    let s = Settings::from_env();
    let nofile = raise_nofile();
    println!(
        "workload: {} recipients, the personalized example newsletter, {}; sites over {} smtp-sinks on {}–{}",
        s.n,
        s.alg.name(),
        SINKS,
        sites::sink_ip(0),
        sites::sink_ip(SINKS - 1)
    );
    println!(
        "machine: {} CPUs, load {:.1}, open-file limit {nofile}; limits per run: {} s, {} s without progress, {} MB",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        measure::load1(),
        s.limits.time.as_secs(),
        s.limits.stall.as_secs(),
        s.limits.max_rss_kib / 1024
    );
    for (l, b) in &s.bins {
        println!("{l}: {}", b.display());
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut runs = Vec::new();
    for (j, &sites) in s.sites.iter().enumerate() {
        let layout = Layout::new(sites);
        let started = Instant::now();
        let dns = sites::dns(&layout);
        if dns.is_some() {
            println!(
                "sites={sites}: DNS for {} domains and {sites} MX hosts ready in {:.1} s",
                layout.domains,
                started.elapsed().as_secs_f64()
            );
        }
        let mut order: Vec<&(&'static str, PathBuf)> = s.bins.iter().collect();
        if j % 2 == 1 {
            order.reverse();
        }
        for (label, bin) in order {
            let busy = measure::wait_quiet(QUIET, s.quiet_wait);
            if busy > QUIET {
                println!(
                    "  machine still {:.0}% busy with other work after {} s: measuring anyway",
                    100.0 * busy,
                    s.quiet_wait.as_secs()
                );
            }
            let r = run_once(&s, label, bin, layout, dns.as_ref().map(|d| d.addr));
            detail(&r, s.n, cpus);
            runs.push(r);
        }
    }
    println!();
    let labels: Vec<&str> = s.bins.iter().map(|(l, _)| *l).collect();
    print!(
        "{}",
        table(s.n, &s.sites, |sites| s.conns(sites), &labels, &runs)
    );
    let failed = runs.iter().filter(|r| !r.ok(s.n)).count();
    if failed > 0 {
        println!("{failed} run(s) did not deliver everything; see FAILED above");
    }
}
