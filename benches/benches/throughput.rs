//! End-to-end throughput: a personalized campaign (the example newsletter,
//! ~20 KB HTML + text) with RSA-2048 DKIM, sent by the release `volley send`
//! to Postfix's smtp-sink on loopback, next to the DKIM-sign-only rate of
//! the same messages on all cores, measured in the same run.
//!
//! `cargo bench -p volley-benches --bench throughput`
//! Environment: VOLLEY_BENCH_N (recipients, default 100000),
//! VOLLEY_BENCH_DOMAINS (default 100), VOLLEY_BENCH_CONNS (connections to
//! the sink, default 32: every domain is routed there, so they share one
//! site), VOLLEY_BENCH_ALG (rsa | ed25519, default rsa),
//! VOLLEY_BENCH_SIGN_SECS (default 5).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use volley_benches::env_or;
use volley_benches::newsletter::{self, Alg, def};
use volley_engine::config::{DkimAlgorithm, DkimConfig};
use volley_engine::message::dkim::Signers;
use volley_engine::message::mime;
use volley_engine::template::Templates;
use volley_tests::{Fixture, PostfixSink, volley};

/// Signatures per second over all cores, signing a rendered message.
fn sign_rate(key: &Path, alg: DkimAlgorithm, secs: u64) -> (f64, usize, usize) {
    let signers = Arc::new(
        Signers::load(&[DkimConfig {
            domain: newsletter::FROM_DOMAIN.into(),
            selector: "b".into(),
            key: key.to_path_buf(),
            algorithm: alg,
        }])
        .expect("key loads"),
    );
    let d = def();
    let t = Templates::compile(d.template_sources()).expect("templates");
    let r = t
        .render(serde_json::json!({"first_name": "Ada", "month": "June", "plan": "team", "city": "Lisbon", "email": "ada@x.test"}))
        .expect("render");
    let msg =
        Arc::new(mime::build(&d, "ada@x.test", &r, "id@bench.test", 1_700_000_000).expect("mime"));
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (signers, msg, count) =
                (Arc::clone(&signers), Arc::clone(&msg), Arc::clone(&count));
            std::thread::spawn(move || {
                while start.elapsed() < Duration::from_secs(secs) {
                    signers.sign("bench.test", &msg).expect("sign");
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("signing thread");
    }
    (
        count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64(),
        threads,
        msg.len(),
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` probes benches with --list
    }
    let n: usize = env_or("VOLLEY_BENCH_N", 100_000);
    let domains: usize = env_or("VOLLEY_BENCH_DOMAINS", 100);
    let conns: usize = env_or("VOLLEY_BENCH_CONNS", 32);
    let sign_secs: u64 = env_or("VOLLEY_BENCH_SIGN_SECS", 5);
    let alg = Alg::from_env(Alg::Rsa);

    let fx = Fixture::new();
    let key = newsletter::write_key(&fx, alg);
    let bin = volley();

    // 1. the signing ceiling
    let (sign, threads, size) = sign_rate(&key, alg.dkim(), sign_secs);

    // 2. end to end
    newsletter::write_campaign(&fx, n, |i| format!("d{}.bench.test", i % domains));
    let sink = PostfixSink::counting(&[]);
    let port = sink.port;
    fx.write(
        "config.toml",
        format!(
            "[spool]\ndir = \"spool\"\n[events]\njsonl = \"events.jsonl\"\n[delivery]\nhelo = \"bench.test\"\nmessages_per_second = 1000000\nconnections = {conns}\n[routes]\n\"*\" = \"127.0.0.1:{port}\"\n{}",
            newsletter::dkim_config(alg)
        ),
    );
    let start = Instant::now();
    let out = Command::new(&bin)
        .args(["send", "campaign.toml", "--config", "config.toml"])
        .current_dir(fx.path())
        .env("VOLLEY_LOG", "warn")
        .stderr(Stdio::null())
        .output()
        .expect("running volley send");
    let secs = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(300));
    let at_sink = sink.counted();
    drop(sink);
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "volley send failed: {summary}");
    let rate = n as f64 / secs;
    println!(
        "workload: {n} recipients over {domains} domains, {conns} connections to the sink, {size}-byte messages, {}",
        alg.name()
    );
    println!("volley send: {}", summary.trim());
    println!(
        "end to end: {n} messages in {secs:.2} s = {rate:.0} messages/s (smtp-sink counted {at_sink})"
    );
    println!("DKIM sign only ({threads} threads): {sign:.0} signatures/s");
    println!("delivery / signing ceiling: {:.0}%", 100.0 * rate / sign);
}
