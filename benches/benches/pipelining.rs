//! SMTP transaction throughput, pipelined (RFC 2920) next to lock-step, in
//! one run: the engine's own SMTP client (`delivery::smtp::client::open` and
//! `Session::send_then`, no rendering or DKIM) sending a fixed ~10 KB
//! message to Postfix's smtp-sink, once started normally (PIPELINING
//! offered, so the session pipelines) and once with `-p` (not offered:
//! lock-step), otherwise the same. Pipelined it runs twice: each
//! transaction on its own (`Session::send`: the command group, then the
//! message) and streamed as the engine sends a site's ready messages (the
//! next transaction's commands behind each message). Each is reached directly on loopback and through an in-process
//! delay proxy that adds a fixed one-way latency to every chunk in both
//! directions, so the round trips that pipelining saves show up.
//!
//! `cargo bench -p volley-benches --bench pipelining`
//! Environment: VOLLEY_BENCH_CONNS (sessions in parallel, default 8),
//! VOLLEY_BENCH_MSGS (transactions per session on loopback, default 1500),
//! VOLLEY_BENCH_RTT_MSGS (transactions per session through the proxy,
//! default 100), VOLLEY_BENCH_RTT_MS (round-trip time the proxy adds, half
//! each way, default 2; 0 skips the proxy), VOLLEY_BENCH_RCPTS (recipients
//! per transaction of the multi-recipient workload, default 10),
//! VOLLEY_BENCH_SIZE (message bytes before dot-stuffing, default 10240),
//! VOLLEY_BENCH_ROUNDS (runs per cell, alternating which mode goes first;
//! the median is reported, default 5).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use volley_benches::delay::{delay_proxy, probe_rtt};
use volley_engine::smtp::Phase;
use volley_engine::smtp::client::{self, Timeouts, TlsMode, TlsSettings};
use volley_engine::smtp::session::{Follow, Session, dot_stuff};
use volley_tests::PostfixSink;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------- smtp-sink

/// A counting smtp-sink and how many messages this bench has had accepted
/// by it so far.
struct Sink {
    sink: PostfixSink,
    expected: u64,
}

impl Sink {
    fn start(extra: &[&str]) -> Sink {
        Sink {
            sink: PostfixSink::counting(extra),
            expected: 0,
        }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.sink.port))
    }

    /// Adds `n` accepted messages and checks the sink counted as many.
    fn check(&mut self, n: u64, what: &str) {
        self.expected += n;
        let t0 = Instant::now();
        loop {
            let got = self.sink.counted();
            if got == self.expected {
                return;
            }
            assert!(
                got < self.expected && t0.elapsed() < Duration::from_secs(5),
                "{what}: smtp-sink counted {got} messages, the client had {} accepted",
                self.expected
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

// ---------------------------------------------------------------- workload

/// A ~`size`-byte plain-text message, dot-stuffed and terminated.
fn message(size: usize) -> Vec<u8> {
    let mut m = String::with_capacity(size + 128);
    m.push_str(
        "From: Bench <news@bench.test>\r\nTo: <list@bench.test>\r\nSubject: pipelining bench\r\n\
         Date: Tue, 14 Nov 2023 22:13:20 +0000\r\nMessage-ID: <pipelining@bench.test>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
    );
    let mut i = 0;
    while m.len() < size {
        // every 16th line starts with a dot, so stuffing is exercised
        let lead = if i % 16 == 0 { "." } else { "" };
        m.push_str(&format!(
            "{lead}{i:05} The quick brown fox jumps over the lazy dog; pack my box.\r\n"
        ));
        i += 1;
    }
    let mut data = Vec::new();
    dot_stuff(m.as_bytes(), &mut data);
    data
}

/// How the client sends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    LockStep,
    Pipelined,
    /// Pipelined, each message followed by the next transaction's commands.
    Streamed,
}

#[derive(Clone, Copy)]
struct Run {
    secs: f64,
    msgs: u64,
}

/// `conns` sessions to `addr`, each sending `per_conn` transactions of
/// `rcpts` recipients; times the transactions only (not connect/EHLO/QUIT).
/// Panics unless every recipient got a 250 end-of-data reply.
async fn run(
    addr: SocketAddr,
    conns: usize,
    per_conn: usize,
    rcpts: usize,
    mode: Mode,
    data: Arc<Vec<u8>>,
) -> Run {
    let pipelining = mode != Mode::LockStep;
    let opened = futures_join(
        (0..conns)
            .map(|_| {
                tokio::spawn(async move {
                    client::open(
                        addr,
                        None,
                        "bench.test",
                        &TlsSettings::disabled(),
                        TlsMode::Disabled,
                        "localhost",
                        &Timeouts::default(),
                    )
                    .await
                })
            })
            .collect(),
    )
    .await;
    let sessions: Vec<Session> = opened
        .into_iter()
        .map(|s| s.unwrap_or_else(|e| panic!("opening a session to {addr}: {e}")))
        .collect();
    for s in &sessions {
        assert_eq!(
            s.caps().pipelining,
            pipelining,
            "the server at {addr} did not offer what this run measures"
        );
    }
    let start = Instant::now();
    let tasks = sessions
        .into_iter()
        .enumerate()
        .map(|(c, mut session)| {
            let data = Arc::clone(&data);
            tokio::spawn(async move {
                let to: Vec<String> = (0..rcpts)
                    .map(|r| format!("user{r}@d{c}.bench.test"))
                    .collect();
                let to: Vec<&str> = to.iter().map(String::as_str).collect();
                for m in 0..per_conn {
                    let next = (mode == Mode::Streamed && m + 1 < per_conn).then(|| Follow {
                        from: "bounces@bench.test",
                        rcpts: &to,
                        len: data.len(),
                    });
                    let (replies, followed) = session
                        .send_then("bounces@bench.test", &to, &[&data], next)
                        .await
                        .unwrap_or_else(|e| panic!("session {c}, transaction {m}: {e}"));
                    assert_eq!(
                        followed,
                        next.is_some(),
                        "the next transaction went out behind"
                    );
                    assert_eq!(replies.len(), rcpts, "one reply per recipient");
                    for (phase, reply) in &replies {
                        assert!(
                            *phase == Phase::DataEnd && reply.code == 250,
                            "session {c}, transaction {m}: {} {reply}",
                            phase.name()
                        );
                    }
                }
                session
            })
        })
        .collect();
    let sessions = futures_join(tasks).await;
    let secs = start.elapsed().as_secs_f64();
    let quits = sessions
        .into_iter()
        .map(|s| tokio::spawn(s.quit()))
        .collect();
    futures_join(quits).await;
    Run {
        secs,
        msgs: (conns * per_conn) as u64,
    }
}

/// Awaits spawned tasks in order, propagating panics.
async fn futures_join<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        match t.await {
            Ok(v) => out.push(v),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("task failed: {e}"),
        }
    }
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Median, min and max of messages/s over the rounds.
struct Cell {
    med: f64,
    min: f64,
    max: f64,
}

impl Cell {
    fn of(runs: &[Run]) -> Cell {
        let rates: Vec<f64> = runs.iter().map(|r| r.msgs as f64 / r.secs).collect();
        Cell {
            med: median(rates.clone()),
            min: rates.iter().copied().fold(f64::INFINITY, f64::min),
            max: rates.iter().copied().fold(0.0, f64::max),
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` probes benches with --list
    }
    let conns: usize = env_or("VOLLEY_BENCH_CONNS", 8);
    let msgs: usize = env_or("VOLLEY_BENCH_MSGS", 1500);
    let rtt_msgs: usize = env_or("VOLLEY_BENCH_RTT_MSGS", 100);
    let rtt_ms: f64 = env_or("VOLLEY_BENCH_RTT_MS", 2.0);
    let many: usize = env_or("VOLLEY_BENCH_RCPTS", 10);
    let size: usize = env_or("VOLLEY_BENCH_SIZE", 10_240);
    let rounds: usize = env_or::<usize>("VOLLEY_BENCH_ROUNDS", 5).max(1);
    assert!(conns > 0 && many > 0, "CONNS and RCPTS must be positive");

    let mut sink_p = Sink::start(&[]);
    let mut sink_l = Sink::start(&["-p"]);
    let data = Arc::new(message(size));

    // the proxies run on their own runtime, so client load does not delay them
    let proxy_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("delay-proxy")
        .enable_all()
        .build()
        .expect("proxy runtime");
    let one_way = Duration::from_secs_f64(rtt_ms.max(0.0) / 2000.0);
    let proxied = |to: SocketAddr| -> SocketAddr {
        let l = proxy_rt
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("proxy listen");
        let at = l.local_addr().expect("proxy address");
        proxy_rt.spawn(delay_proxy(l, to, one_way));
        at
    };
    let mut paths = vec![(
        "loopback".to_string(),
        msgs,
        sink_p.addr(),
        sink_l.addr(),
        probe_rtt(sink_p.addr()),
    )];
    if rtt_ms > 0.0 {
        let (p, l) = (proxied(sink_p.addr()), proxied(sink_l.addr()));
        paths.push((format!("+{rtt_ms} ms RTT"), rtt_msgs, p, l, probe_rtt(p)));
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let mut rows = Vec::new();
    let t_all = Instant::now();
    for (path, per_conn, addr_p, addr_l, rtt) in &paths {
        for rcpts in [1, many] {
            let (mut pipe, mut lock, mut stream) = (Vec::new(), Vec::new(), Vec::new());
            for round in 0..rounds {
                let mut modes = [Mode::Pipelined, Mode::LockStep, Mode::Streamed];
                modes.rotate_left(round % 3);
                for mode in modes {
                    let (addr, sink) = if mode == Mode::LockStep {
                        (*addr_l, &mut sink_l)
                    } else {
                        (*addr_p, &mut sink_p)
                    };
                    let r =
                        rt.block_on(run(addr, conns, *per_conn, rcpts, mode, Arc::clone(&data)));
                    sink.check(r.msgs, &format!("{path}, {rcpts} rcpt, round {round}"));
                    match mode {
                        Mode::Pipelined => &mut pipe,
                        Mode::LockStep => &mut lock,
                        Mode::Streamed => &mut stream,
                    }
                    .push(r);
                }
            }
            rows.push((
                path.clone(),
                *rtt,
                rcpts,
                Cell::of(&pipe),
                Cell::of(&lock),
                Cell::of(&stream),
            ));
        }
    }
    let total = t_all.elapsed().as_secs_f64();

    println!(
        "workload: {conns} sessions in parallel, {}-byte message (dot-stuffed), {} transactions per session on loopback, {} through the proxy; median of {rounds} rounds (min..max in brackets); rcpt/s = msg/s x rcpt/tx",
        data.len(),
        msgs,
        rtt_msgs
    );
    println!(
        "{:<16} {:>9} {:>6}  {:>24} {:>9}  {:>24} {:>9}  {:>7}  {:>24} {:>9}",
        "path",
        "NOOP RTT",
        "rcpt/tx",
        "pipelined msg/s",
        "rcpt/s",
        "lock-step msg/s",
        "rcpt/s",
        "ratio",
        "streamed msg/s",
        "vs pipe"
    );
    for (path, rtt, rcpts, p, l, st) in &rows {
        let cell = |c: &Cell| format!("{:.0} [{:.0}..{:.0}]", c.med, c.min, c.max);
        println!(
            "{:<16} {:>6.3} ms {:>6}  {:>24} {:>9.0}  {:>24} {:>9.0}  {:>6.2}x  {:>24} {:>8.2}x",
            path,
            rtt.as_secs_f64() * 1e3,
            rcpts,
            cell(p),
            p.med * *rcpts as f64,
            cell(l),
            l.med * *rcpts as f64,
            p.med / l.med,
            cell(st),
            st.med / p.med
        );
    }
    println!(
        "all {} + {} transactions got 250 for every recipient; smtp-sink counted the same ({:.1} s in all)",
        sink_p.expected, sink_l.expected, total
    );
    println!(
        "note: messages/s of the engine's Session::send over {conns} pre-opened sessions (connect, EHLO and QUIT are not timed) to Postfix smtp-sink, which offers PIPELINING (the session then writes MAIL, all RCPTs and DATA in one write and reads the replies together: 2 round trips per transaction, the command group and the message) or, started with -p, does not (lock-step: one round trip each for MAIL, every RCPT, DATA and the message, 3 + rcpts). On loopback the round trip is microseconds, so the columns compare per-command CPU and syscall cost of client and sink; through the delay proxy (+{rtt_ms} ms RTT, measured by NOOP) the round trips dominate and the ratio approaches (3 + rcpts) / 2, i.e. {:.1}x for 1 and {:.1}x for {many} recipients. Streamed (Session::send_then, as the engine sends a site's ready messages), each message goes out with the next transaction's commands behind it: one round trip and one write per transaction, so through the proxy it approaches 2x pipelined. Throughput is whole transactions: every recipient got the 250 end-of-data reply, or the bench panics.",
        4.0 / 2.0,
        (3 + many) as f64 / 2.0
    );
}
