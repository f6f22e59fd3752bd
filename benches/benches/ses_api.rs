//! The SES v2 API of the release `volley run` (`VOLLEY_BIN`):
//!
//! 1. **Acceptance**: `VOLLEY_BENCH_CLIENTS` (default 64) concurrent
//!    clients, each on its own kept-alive connection, send small signed
//!    `SendEmail` requests (one recipient, ~300-byte text body) for
//!    `VOLLEY_BENCH_SECS` seconds (default 10) after a 1 s warm-up:
//!    accepted requests per second and the latency from the request's
//!    first byte to its `MessageId` (durable), p50 / p99 / max. Delivery is
//!    held (a rate of 0.001 messages per second), as in the submission
//!    bench: what is measured is durable acceptance. The machine's CPU per
//!    request (the load generator included) is reported too.
//! 2. **Transactional latency**: on an idle service delivering to a local
//!    SMTP server, `VOLLEY_BENCH_SINGLE` (default 200) messages one after
//!    another: time from `SendEmail` to the server's `250` for the message
//!    (p50 / p99).
//!
//! Requests are signed with `volley_engine::api::sigv4::sign` (the tests
//! check Volley against boto3's signatures). Rounds: `VOLLEY_BENCH_ROUNDS`
//! (default 2). `cargo bench -p volley-benches --bench ses_api`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use volley_benches::env_or;
use volley_benches::measure::CpuTimes;
use volley_engine::api::sigv4;
use volley_tests::scripted::ScriptedServer;
use volley_tests::*;

const KEY: &str = "AKIABENCH";
const SECRET: &str = "bench-secret";

fn service(route: &str, rate: &str) -> (Fixture, process::Running, u16) {
    let fx = Fixture::new();
    let port = free_port();
    fx.config(
        route,
        &format!(
            "[delivery]\nmessages_per_second = {rate}\n[api]\nlisten = \"127.0.0.1:{port}\"\n\
             [[submission.ses_credentials]]\naccess_key_id = \"{KEY}\"\nsecret_access_key = \"{SECRET}\"\nregion = \"us-east-1\"\nidentities = [\"bench.test\"]\n"
        ),
    );
    let running = process::spawn(fx.path(), &["run", "--config", "config.toml"]);
    wait_until(Duration::from_secs(60), "the API listener", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (fx, running, port)
}

fn body(i: u64) -> String {
    format!(
        "{{\"FromEmailAddress\":\"Bench <news@bench.test>\",\"Destination\":{{\"ToAddresses\":[\"user{i}@d{}.bench.test\"]}},\"Content\":{{\"Simple\":{{\"Subject\":{{\"Data\":\"Your code {i}\"}},\"Body\":{{\"Text\":{{\"Data\":\"Hello,\\n\\nyour one-time code is {i}. It expires in ten minutes. If you did not ask for it, ignore this message; nobody can sign in without it.\\n\\n-- The bench team\\n\"}}}}}}}}}}",
        i % 100
    )
}

/// One signed `SendEmail` request's bytes.
fn request(port: u16, i: u64) -> Vec<u8> {
    let body = body(i);
    let host = format!("127.0.0.1:{port}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let date = sigv4::amz_date(now);
    let headers = [
        ("content-type", "application/json"),
        ("host", host.as_str()),
        ("x-amz-date", date.as_str()),
    ];
    let r = sigv4::Request {
        method: "POST",
        raw_path: "/v2/email/outbound-emails",
        raw_query: "",
        headers: &headers,
        body: body.as_bytes(),
    };
    let auth = sigv4::sign(&r, KEY, SECRET, "us-east-1", "ses", &date);
    format!(
        "POST /v2/email/outbound-emails HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nX-Amz-Date: {date}\r\nAuthorization: {auth}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Reads one response; its status.
async fn response(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> std::io::Result<u16> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
                buf.drain(..end + 4 + len);
                return Ok(status);
            }
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::other("connection closed"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(((v.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or(0.0)
}

/// Part 1: (requests/s, p50, p99, max ms, CPU µs per request).
fn acceptance(clients: usize, secs: u64) -> (f64, f64, f64, f64, f64) {
    let sink = PostfixSink::counting(&[]);
    let (_fx, mut running, port) = service(&sink.addr(), "0.001");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(0));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let lat = Arc::new(std::sync::Mutex::new(Vec::<f64>::new()));
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (counting, stop, next) = (counting.clone(), stop.clone(), next.clone());
            let (ok, failed, lat) = (ok.clone(), failed.clone(), lat.clone());
            rt.spawn(async move {
                let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .expect("connect");
                s.set_nodelay(true).ok();
                let mut buf = Vec::new();
                let mut mine = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let req = request(port, next.fetch_add(1, Ordering::Relaxed));
                    let t = Instant::now();
                    s.write_all(&req).await.expect("write");
                    let status = response(&mut s, &mut buf).await.expect("response");
                    if counting.load(Ordering::Relaxed) {
                        match status {
                            200 => {
                                ok.fetch_add(1, Ordering::Relaxed);
                                mine.push(t.elapsed().as_secs_f64() * 1e3);
                            }
                            _ => {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
                lat.lock().unwrap().extend(mine);
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    counting.store(true, Ordering::Relaxed);
    let (t0, cpu0) = (Instant::now(), CpuTimes::now());
    std::thread::sleep(Duration::from_secs(secs));
    counting.store(false, Ordering::Relaxed);
    let wall = t0.elapsed().as_secs_f64();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let busy = CpuTimes::now().busy_since(&cpu0) * wall * cpus;
    stop.store(true, Ordering::Relaxed);
    rt.block_on(async {
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
        }
    });
    let _ = running.kill();
    let n = ok.load(Ordering::Relaxed);
    assert_eq!(failed.load(Ordering::Relaxed), 0, "requests refused");
    let mut l = lat.lock().unwrap().clone();
    let max = l.iter().copied().fold(0.0, f64::max);
    (
        n as f64 / wall,
        pct(&mut l, 0.5),
        pct(&mut l, 0.99),
        max,
        busy * 1e6 / n.max(1) as f64,
    )
}

/// Part 2: (p50, p99 ms) from `SendEmail` to the server's 250.
fn single(n: u64) -> (f64, f64) {
    let server =
        ScriptedServer::start(true, Arc::new(|_: &str, _: u32| "250 2.1.5 Ok".to_string()));
    let (_fx, mut running, port) = service(&server.addr.to_string(), "1000");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut lat = Vec::new();
    rt.block_on(async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        s.set_nodelay(true).ok();
        let mut buf = Vec::new();
        for i in 0..n {
            let before = server.received().len();
            let req = request(port, i);
            let t = Instant::now();
            s.write_all(&req).await.expect("write");
            assert_eq!(response(&mut s, &mut buf).await.expect("response"), 200);
            let limit = Instant::now() + Duration::from_secs(10);
            while server.received().len() == before && Instant::now() < limit {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            lat.push(t.elapsed().as_secs_f64() * 1e3);
        }
    });
    let _ = running.kill();
    (pct(&mut lat.clone(), 0.5), pct(&mut lat, 0.99))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let clients: usize = env_or("VOLLEY_BENCH_CLIENTS", 64);
    let secs: u64 = env_or("VOLLEY_BENCH_SECS", 10);
    let rounds: usize = env_or("VOLLEY_BENCH_ROUNDS", 2);
    let n_single: u64 = env_or("VOLLEY_BENCH_SINGLE", 200);
    println!("1. SendEmail acceptance, {clients} clients, {secs} s a round (delivery held)");
    println!("| round | requests/s | p50 ms | p99 ms | max ms | machine CPU µs/request |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for round in 1..=rounds {
        let (rate, p50, p99, max, cpu) = acceptance(clients, secs);
        println!("| {round} | {rate:.0} | {p50:.1} | {p99:.1} | {max:.1} | {cpu:.0} |");
    }
    println!(
        "\n2. SendEmail to the server's 250, one at a time on an idle service ({n_single} messages)"
    );
    println!("| round | p50 ms | p99 ms |");
    println!("|---:|---:|---:|");
    for round in 1..=rounds {
        let (p50, p99) = single(n_single);
        println!("| {round} | {p50:.1} | {p99:.1} |");
    }
}
