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
use volley_benches::workloads::Workload;
use volley_benches::{env_or, stages};
use volley_tests::{Fixture, PostfixSink, volley};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One `volley send` run: recipients/s, CPU µs per recipient, the sink's
/// CPU µs per recipient.
fn whole(bin: &Path, w: Workload, n: usize, alg: Alg) -> (f64, f64, f64) {
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
    let m = measure::run(cmd, limits, || sink.counted());
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
    (
        n / m.wall.as_secs_f64(),
        m.cpu.as_secs_f64() * 1e6 / n,
        sink_cpu * 1e6 / n,
    )
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
    for w in &workloads {
        for round in 0..rounds {
            // alternate which binary goes first
            let order: Vec<_> = if round % 2 == 0 {
                bins.iter().collect()
            } else {
                bins.iter().rev().collect()
            };
            for (name, bin) in order {
                let (rate, cpu, sink_cpu) = whole(bin, *w, n, alg);
                println!(
                    "| {} | {name} | {} | {rate:.0} | {cpu:.0} | {sink_cpu:.0} |",
                    w.name(),
                    round + 1
                );
            }
        }
    }
    println!(
        "(whole-process runs took {:.0} s)",
        started.elapsed().as_secs_f64()
    );
}
