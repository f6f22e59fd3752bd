//! CPU per message, by stage and for the whole process, for three
//! campaigns ([`Workload`]: the personalized newsletter, a message made
//! mostly of recipient data, a non-personalized message shared by many
//! recipients), DKIM-signed (`VOLLEY_BENCH_ALG`, default ed25519).
//!
//! 1. Stages, in this process, one after another over the same
//!    `VOLLEY_BENCH_STAGE_N` recipients (default 2,000), each timed by the
//!    process's user + system CPU (getrusage): reading the record and its
//!    variables, rendering, MIME, the body hash (signing the message less
//!    signing its headers alone), the signature (with the headers'
//!    canonicalization), the DATA payload (dot-stuffing, the headers kept
//!    for events), the SMTP transactions to Postfix's `smtp-sink` on one
//!    loopback session, streamed as the engine sends them (each message
//!    followed by the next transaction's commands), the journal (outcome entries committed
//!    64 at a time, as the recorder batches them) and the events (the
//!    journal read back, SES events written to a JSONL file and the cursor
//!    stored, 512 outcomes a batch, as the pump publishes them). Figures
//!    are µs per recipient.
//! 2. The whole process: the release `volley send` (`VOLLEY_BIN`) of
//!    `VOLLEY_BENCH_N` recipients (default 20,000, over 100 domains, 32
//!    connections to one `smtp-sink`), its CPU per recipient from `wait4`
//!    and its rate, with `VOLLEY_BIN_BEFORE` (a build of an earlier commit)
//!    run alternately in the same rounds (`VOLLEY_BENCH_ROUNDS`, default 2)
//!    when given.
//! 3. The same runs by thread: each thread's CPU sampled from /proc every
//!    20 ms and grouped by name into ingest, production, the runtime's
//!    workers (the SMTP sessions), recorder, event pump and the rest (see
//!    `volley_benches::threads`; builds before ingest's threads were
//!    named count ingest with the runtime's workers), with what the
//!    samples missed.
//!
//! This process allocates with mimalloc, as the `volley` binary does.
//!
//! `cargo bench -p volley-benches --bench per_message`
//! (`VOLLEY_BENCH_WORKLOADS=newsletter,variables,shared` picks campaigns).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use volley_benches::measure::{self, Limits};
use volley_benches::newsletter::{self, Alg};
use volley_benches::threads::{self, Threads};
use volley_benches::workloads::Workload;
use volley_benches::{env_or, stages};
use volley_tests::{Fixture, PostfixSink, volley};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One `volley send` run.
struct Run {
    /// Recipients a second.
    rate: f64,
    /// The process's CPU, µs per recipient (`wait4`).
    cpu: f64,
    /// The sink's CPU, µs per recipient.
    sink_cpu: f64,
    /// CPU µs per recipient of each of [`threads::PARTS`], from samples.
    parts: Vec<f64>,
}

/// How often a run's threads are sampled: what a thread does in its last
/// interval is not seen.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);

/// One `volley send` run of `w` to `n` recipients.
fn whole(bin: &Path, w: Workload, n: usize, alg: Alg) -> Run {
    let fx = Fixture::new();
    newsletter::write_key(&fx, alg);
    w.write(&fx, n, |i| format!("d{}.bench.test", i % 100));
    let sink = PostfixSink::counting(&[]);
    fx.write(
        "config.toml",
        format!(
            "[spool]\ndir = \"spool\"\n[events]\njsonl = \"events.jsonl\"\n[delivery]\nhelo = \"bench.test\"\nmessages_per_second = 1000000\nconnections = 32\n[routes]\n\"*\" = \"127.0.0.1:{}\"\n{}",
            sink.port,
            newsletter::dkim_config(alg)
        ),
    );
    let mut cmd = Command::new(bin);
    cmd.args(["send", "campaign.toml", "--config", "config.toml"])
        .current_dir(fx.path())
        .env("VOLLEY_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let sink_cpu = measure::proc_cpu_secs(sink.pid()).unwrap_or(0.0);
    let limits = Limits {
        time: Duration::from_secs(120 + n as u64 / 50),
        stall: Duration::from_secs(60),
        max_rss_kib: 8 << 20,
    };
    let mut threads = Threads::new();
    let m = measure::run_watched(
        cmd,
        limits,
        || sink.counted(),
        SAMPLE_EVERY,
        |pid| threads.sample(pid),
    );
    std::thread::sleep(Duration::from_millis(300));
    let sink_cpu = measure::proc_cpu_secs(sink.pid()).unwrap_or(0.0) - sink_cpu;
    let counted = sink.counted();
    // a shared message counts once at the sink however many recipients
    let expected = if w.shared() { counted.max(1) } else { n as u64 };
    assert!(
        m.code == Some(0) && m.stopped.is_none() && counted == expected,
        "{}: volley send ended {:?} {:?} with {counted} messages at the sink",
        w.name(),
        m.code,
        m.stopped
    );
    let n = n as f64;
    Run {
        rate: n / m.wall.as_secs_f64(),
        cpu: m.cpu.as_secs_f64() * 1e6 / n,
        sink_cpu: sink_cpu * 1e6 / n,
        parts: threads
            .by_part()
            .into_iter()
            .map(|(_, secs)| secs * 1e6 / n)
            .collect(),
    }
}

/// The median of `v` (0 when empty).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        l if l % 2 == 1 => v[l / 2],
        l => (v[l / 2 - 1] + v[l / 2]) / 2.0,
    }
}

/// Table 3: each part's CPU per recipient, the median of the rounds, per
/// campaign and binary; and what the samples did not see (the process's
/// total less their sum).
fn print_parts(runs: &[(Workload, &str, Run)], workloads: &[Workload], bins: &[&str]) {
    println!(
        "\n3. volley send by thread (sampled every {} ms), µs of CPU per recipient, medians of the rounds",
        SAMPLE_EVERY.as_millis()
    );
    let mut cols = Vec::new();
    for &w in workloads {
        for b in bins {
            let mine: Vec<&Run> = runs
                .iter()
                .filter(|r| r.0 == w && r.1 == *b)
                .map(|r| &r.2)
                .collect();
            cols.push((format!("{} {b}", w.name()), mine));
        }
    }
    print!("| part |");
    for (name, _) in &cols {
        print!(" {name} |");
    }
    println!("\n|---|{}", "---:|".repeat(cols.len()));
    for (k, part) in threads::PARTS.iter().enumerate() {
        print!("| {part} |");
        for (_, rs) in &cols {
            print!(" {:.1} |", median(rs.iter().map(|r| r.parts[k]).collect()));
        }
        println!();
    }
    print!("| not seen (the process's total less the above) |");
    for (_, rs) in &cols {
        let gap = rs.iter().map(|r| r.cpu - r.parts.iter().sum::<f64>());
        print!(" {:.1} |", median(gap.collect()));
    }
    println!();
    print!("| the process's total (`wait4`) |");
    for (_, rs) in &cols {
        print!(" {:.1} |", median(rs.iter().map(|r| r.cpu).collect()));
    }
    println!();
}

fn workloads() -> Vec<Workload> {
    let names = std::env::var("VOLLEY_BENCH_WORKLOADS").unwrap_or_default();
    Workload::ALL
        .into_iter()
        .filter(|w| names.is_empty() || names.split(',').any(|n| n.trim() == w.name()))
        .collect()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` probes benches with --list
    }
    let alg = Alg::from_env(Alg::Ed25519);
    let stage_n: usize = env_or("VOLLEY_BENCH_STAGE_N", 2_000);
    let n: usize = env_or("VOLLEY_BENCH_N", 20_000);
    let rounds: usize = env_or("VOLLEY_BENCH_ROUNDS", 2);
    let workloads = workloads();

    println!(
        "1. stages, µs of CPU per recipient ({stage_n} recipients, {}, this process)",
        alg.name()
    );
    let sink = PostfixSink::counting(&[]);
    let tables: Vec<_> = workloads
        .iter()
        .map(|&w| stages::measure(w, stage_n, alg, sink.port))
        .collect();
    drop(sink);
    print!("| stage |");
    for w in &workloads {
        print!(" {} |", w.name());
    }
    println!();
    println!("|---|{}", "---:|".repeat(workloads.len()));
    for (k, (stage, _)) in tables[0].iter().enumerate() {
        print!("| {stage} |");
        for t in &tables {
            print!(" {:.1} |", t[k].1);
        }
        println!();
    }

    let bins: Vec<(String, std::path::PathBuf)> = std::iter::once(("this".into(), volley()))
        .chain(
            std::env::var("VOLLEY_BIN_BEFORE")
                .ok()
                .map(|b| ("before".into(), b.into())),
        )
        .collect();
    println!(
        "\n2. volley send, {n} recipients, {}, {rounds} round(s); rate in recipients/s, CPU in µs per recipient",
        alg.name()
    );
    println!("| campaign | binary | round | rate | volley CPU | smtp-sink CPU |");
    println!("|---|---|---:|---:|---:|---:|");
    let started = Instant::now();
    let mut runs = Vec::new();
    for w in &workloads {
        for round in 0..rounds {
            // alternate which binary goes first
            let order: Vec<_> = if round % 2 == 0 {
                bins.iter().collect()
            } else {
                bins.iter().rev().collect()
            };
            for (name, bin) in order {
                let r = whole(bin, *w, n, alg);
                println!(
                    "| {} | {name} | {} | {:.0} | {:.0} | {:.0} |",
                    w.name(),
                    round + 1,
                    r.rate,
                    r.cpu,
                    r.sink_cpu
                );
                runs.push((*w, name.as_str(), r));
            }
        }
    }
    println!(
        "(whole-process runs took {:.0} s)",
        started.elapsed().as_secs_f64()
    );
    if !runs.is_empty() {
        let names: Vec<&str> = bins.iter().map(|(n, _)| n.as_str()).collect();
        print_parts(&runs, &workloads, &names);
    }
}
