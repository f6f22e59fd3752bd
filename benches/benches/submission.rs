//! Producers into a running service, against Postfix, side by side in one
//! run (parts chosen with VOLLEY_BENCH_PARTS, default `smtp,pickup,handover`):
//!
//! - **smtp**: Postfix's `smtp-source` (20 sessions, 20 KB messages, one
//!   recipient each, connections kept) against Volley's submission
//!   listener (loopback trusted, no TLS: smtp-source has none) and against
//!   Postfix's own `smtpd` (a private instance putting every message on
//!   hold, so both only accept and queue durably), alternating rounds.
//!   Durable acceptances per second, machine CPU per message, and the time
//!   from the end of DATA to the `250` (p50, p99) measured by one more
//!   session in this process sending the same messages meanwhile.
//! - **pickup**: FILES small `.eml` files. Volley: renamed into
//!   `pickup/new/` of the running service, timed until every one is
//!   accepted (the directory empty). Postfix: dropped with its `sendmail`
//!   (postdrop) while stopped (not timed), then timed from `postfix start`
//!   until all are on hold.
//! - **handover**: a LIST-recipient campaign spooled by `volley enqueue`
//!   alone, and handed to a running `volley run` (delivery held in both),
//!   alternating rounds.
//!
//! Delivery is held in all of them (a rate of 0.001 messages per second):
//! what is measured is acceptance.
//!
//! `cargo bench -p volley-benches --bench submission` (as root; needs
//! Debian's postfix). Environment: VOLLEY_BENCH_N (smtp messages per round,
//! default 20000), VOLLEY_BENCH_ROUNDS (default 2), VOLLEY_BENCH_FILES
//! (default 100000), VOLLEY_BENCH_LIST (default 100000).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use volley_benches::env_or;
use volley_benches::postfix_smtpd::PostfixSmtpd;
use volley_tests::{Fixture, PostfixSink, free_port, spawn, stop, volley};

const SIZE: usize = 20_000;
const SESSIONS: usize = 20;

/// Machine CPU time (all cores), in seconds, from /proc/stat.
fn machine_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = stat.lines().next().unwrap_or("");
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let busy: f64 = f.iter().sum::<f64>() - f.get(3).unwrap_or(&0.0) - f.get(4).unwrap_or(&0.0);
    // SAFETY: sysconf(3) reads a constant.
    busy / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// A Volley service with submission on `port`, delivery held.
fn volley_service(fx: &Fixture, port: u16, sink: &PostfixSink) -> volley_tests::process::Running {
    volley_service_config_only(fx, port, sink);
    let service = spawn(fx.path(), &["run", "--config", "config.toml"]);
    for _ in 0..600 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    service
}

/// One session sending messages one after another until `until` says
/// stop; returns the end-of-DATA → reply times.
fn probe(port: u16, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Vec<Duration> {
    let mut lat = Vec::new();
    let Ok(s) = TcpStream::connect(("127.0.0.1", port)) else {
        return lat;
    };
    let _ = s.set_nodelay(true);
    let mut w = s.try_clone().expect("clone");
    let mut r = BufReader::new(s);
    let mut line = String::new();
    let reply = |r: &mut BufReader<TcpStream>, line: &mut String| -> bool {
        loop {
            line.clear();
            if r.read_line(line).unwrap_or(0) == 0 {
                return false;
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return line.starts_with('2') || line.starts_with('3');
            }
        }
    };
    if !reply(&mut r, &mut line) {
        return lat;
    }
    let _ = w.write_all(b"EHLO probe.test\r\n");
    reply(&mut r, &mut line);
    let body = format!(
        "From: probe@example.com\r\nTo: p@d1.test\r\nSubject: probe\r\n\r\n{}",
        format!("{}\r\n", "x".repeat(78)).repeat(SIZE / 80)
    );
    let mut i = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        i += 1;
        let _ = write!(
            w,
            "MAIL FROM:<probe@example.com>\r\nRCPT TO:<p{i}@d1.test>\r\nDATA\r\n"
        );
        if !(reply(&mut r, &mut line) && reply(&mut r, &mut line) && reply(&mut r, &mut line)) {
            break;
        }
        let _ = w.write_all(body.as_bytes());
        let t = Instant::now();
        let _ = w.write_all(b".\r\n");
        let ok = reply(&mut r, &mut line);
        lat.push(t.elapsed());
        if !ok {
            eprintln!("probe: {}", line.trim());
            break;
        }
    }
    let _ = w.write_all(b"QUIT\r\n");
    lat
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort();
    let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
    v[i].as_secs_f64() * 1000.0
}

/// smtp-source against `port`; (rate, CPU µs per message, p50 ms, p99 ms).
fn smtp_round(port: u16, n: usize) -> (f64, f64, f64, f64) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = std::sync::Arc::clone(&stop);
    let cpu0 = machine_cpu();
    let t0 = Instant::now();
    let prober = std::thread::spawn(move || probe(port, s2));
    let out = Command::new("/usr/sbin/smtp-source")
        .args([
            "-s",
            &(SESSIONS - 1).to_string(),
            "-m",
            &n.to_string(),
            "-l",
            &SIZE.to_string(),
        ])
        .args([
            "-N",
            "-d",
            "-f",
            "bulk@example.com",
            "-t",
            "user@d1.test",
            "-M",
            "example.com",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .output()
        .expect("smtp-source");
    let secs = t0.elapsed().as_secs_f64();
    let cpu = machine_cpu() - cpu0;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut lat = prober.join().unwrap_or_default();
    if !out.status.success() {
        eprintln!("smtp-source: {}", String::from_utf8_lossy(&out.stderr));
    }
    let total = n + lat.len();
    (
        total as f64 / secs,
        cpu * 1e6 / total as f64,
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99),
    )
}

fn part_smtp(rounds: usize, n: usize) {
    println!(
        "## SMTP submission: smtp-source, {SESSIONS} sessions (19 + the probe), {SIZE}-byte messages, {n} per round"
    );
    println!("| round | server | accepted/s | machine CPU µs/msg | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|---|");
    let sink = PostfixSink::counting(&[]);
    let pf_base = tempfile::tempdir().expect("tmp");
    let pf_port = free_port();
    let pf = PostfixSmtpd::start(pf_base.path(), pf_port, 200);
    for round in 1..=rounds {
        let fx = Fixture::new();
        let port = free_port();
        let service = volley_service(&fx, port, &sink);
        let (rate, cpu, p50, p99) = smtp_round(port, n);
        let _ = stop(service);
        let status = Command::new(volley())
            .args(["status", "--config", "config.toml", "--json"])
            .current_dir(fx.path())
            .output()
            .expect("status");
        let st: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap_or_default();
        println!(
            "| {round} | volley | {rate:.0} | {cpu:.0} | {p50:.2} | {p99:.2} |  (spooled {})",
            st["totals"]["total"]
        );
        pf.purge();
        let (rate, cpu, p50, p99) = smtp_round(pf_port, n);
        println!(
            "| {round} | postfix smtpd | {rate:.0} | {cpu:.0} | {p50:.2} | {p99:.2} |  (on hold {})",
            pf.held()
        );
    }
}

fn eml(i: usize) -> String {
    format!(
        "From: app@example.com\nTo: r{i}@d{}.test\nSubject: dropped {i}\n\nbody of message {i}\n",
        i % 50
    )
}

fn part_pickup(files: usize) {
    println!("## Drop directory: {files} small files");
    let sink = PostfixSink::counting(&[]);
    // Volley: staged in tmp/, renamed into new/ of the running service
    let fx = Fixture::new();
    let port = free_port();
    let service = volley_service(&fx, port, &sink);
    let pickup = fx.path().join("spool").join("pickup");
    for i in 0..files {
        std::fs::write(pickup.join("tmp").join(format!("{i:07}.eml")), eml(i)).expect("stage");
    }
    let cpu0 = machine_cpu();
    let t0 = Instant::now();
    for i in 0..files {
        let name = format!("{i:07}.eml");
        std::fs::rename(
            pickup.join("tmp").join(&name),
            pickup.join("new").join(&name),
        )
        .expect("rename");
    }
    let new = pickup.join("new");
    let deadline = Instant::now() + Duration::from_secs(1800);
    while std::fs::read_dir(&new).map(|d| d.count()).unwrap_or(0) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = machine_cpu() - cpu0;
    let _ = stop(service);
    println!(
        "| volley pickup | {:.0} files/s | {:.0} machine CPU µs/file | {secs:.1} s |",
        files as f64 / secs,
        cpu * 1e6 / files as f64
    );
    // Postfix: sendmail (postdrop) into maildrop while stopped, then pickup
    let pf_base = tempfile::tempdir().expect("tmp");
    let pf = PostfixSmtpd::start(pf_base.path(), free_port(), 200);
    let _ = Command::new("/usr/sbin/postfix")
        .arg("-c")
        .arg(pf.etc())
        .arg("stop")
        .output();
    let staged = Instant::now();
    let etc = pf.etc();
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let etc = etc.clone();
            std::thread::spawn(move || {
                for i in (w..files).step_by(8) {
                    let mut c = Command::new("/usr/sbin/sendmail")
                        .arg("-C")
                        .arg(&etc)
                        .args(["-t", "-i"])
                        .stdin(std::process::Stdio::piped())
                        .spawn()
                        .expect("postfix sendmail");
                    let _ = c.stdin.take().expect("stdin").write_all(eml(i).as_bytes());
                    let _ = c.wait();
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    eprintln!(
        "(postfix: {files} files dropped with sendmail in {:.0} s, not timed)",
        staged.elapsed().as_secs_f64()
    );
    let cpu0 = machine_cpu();
    let t0 = Instant::now();
    let _ = Command::new("/usr/sbin/postfix")
        .arg("-c")
        .arg(pf.etc())
        .arg("start")
        .output();
    let deadline = Instant::now() + Duration::from_secs(3600);
    while pf.held() < files && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = machine_cpu() - cpu0;
    println!(
        "| postfix pickup | {:.0} files/s | {:.0} machine CPU µs/file | {secs:.1} s | (on hold {}, left in maildrop {})",
        files as f64 / secs,
        cpu * 1e6 / files as f64,
        pf.held(),
        pf.maildrop()
    );
}

fn part_handover(rounds: usize, list: usize) {
    println!(
        "## Campaign ingest: {list} recipients, `volley enqueue` alone and handed to a running service"
    );
    let sink = PostfixSink::counting(&[]);
    for round in 1..=rounds {
        for handed in [false, true] {
            let fx = Fixture::new();
            volley_benches::newsletter::write_campaign(&fx, list, |i| format!("d{}.test", i % 100));
            let port = free_port();
            let service = handed.then(|| volley_service(&fx, port, &sink));
            if !handed {
                volley_service_config_only(&fx, port, &sink);
            }
            let t0 = Instant::now();
            let out = Command::new(volley())
                .args(["enqueue", "campaign.toml", "--config", "config.toml"])
                .current_dir(fx.path())
                .output()
                .expect("enqueue");
            let secs = t0.elapsed().as_secs_f64();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            if let Some(s) = service {
                let _ = stop(s);
            }
            println!(
                "| {round} | {} | {:.0} recipients/s | {secs:.2} s |",
                if handed {
                    "handed to volley run"
                } else {
                    "volley enqueue alone"
                },
                list as f64 / secs
            );
        }
    }
}

/// The config of [`volley_service`] without starting the service.
fn volley_service_config_only(fx: &Fixture, port: u16, sink: &PostfixSink) {
    let _ = Command::new(volley())
        .args(["tls-cert", "--cert", "cert.pem", "--key", "key.pem"])
        .current_dir(fx.path())
        .output();
    fx.config(
        &sink.addr(),
        &format!(
            "[delivery]\nmessages_per_second = 0.001\n\
             [submission]\ncert = \"cert.pem\"\nkey = \"key.pem\"\ntrusted_networks = [\"127.0.0.0/8\"]\n\
             [[submission.listeners]]\naddress = \"127.0.0.1:{port}\"\ntls = \"starttls\"\n"
        ),
    );
}

fn main() {
    let parts: String = env_or("VOLLEY_BENCH_PARTS", "smtp,pickup,handover".to_string());
    let rounds: usize = env_or("VOLLEY_BENCH_ROUNDS", 2);
    if parts.contains("smtp") {
        part_smtp(rounds, env_or("VOLLEY_BENCH_N", 20_000));
    }
    if parts.contains("pickup") {
        part_pickup(env_or("VOLLEY_BENCH_FILES", 100_000));
    }
    if parts.contains("handover") {
        part_handover(rounds, env_or("VOLLEY_BENCH_LIST", 100_000));
    }
}
