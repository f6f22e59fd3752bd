//! Event destinations under the throughput workload: the example
//! newsletter campaign (personalized, ~20 KB, DKIM-signed) delivered by
//! `volley run` to Postfix's smtp-sink, with only the `[events] jsonl`
//! file (A), with a webhook to a fast receiver in this process and an
//! AMQP destination on a private RabbitMQ besides it (B), and with the
//! webhook alone (C), alternating in one run. Reports the delivery rate of
//! each, the events per second each destination took, how long after the
//! last delivery every destination's lag was back to zero (all read from
//! the service's `/metrics`, polled every 50 ms), and the CPU each process
//! used per message (Volley, smtp-sink, RabbitMQ, this process with the
//! receiver), since all of them share the machine's cores. First, with
//! nothing else running, RabbitMQ's own CPU per persistent, confirmed
//! message ([`broker_alone`]) at the size of a raw event: the floor under
//! what the `amqp` destination costs the machine.
//!
//! `cargo bench -p volley-benches --bench destinations`
//! Environment: VOLLEY_BENCH_N (recipients, default 100000),
//! VOLLEY_BENCH_ROUNDS (A/B pairs, default 2), VOLLEY_BENCH_CONNS
//! (default 32), VOLLEY_BENCH_ALG (rsa | ed25519, default rsa),
//! VOLLEY_BENCH_FORMAT (raw | sns: the destinations' body format, default
//! raw; sns signs every event with RSA-2048), VOLLEY_BENCH_VARIANTS
//! (default ABC; `R` alone: only the broker probe).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use volley_benches::newsletter::{self, Alg};
use volley_benches::{broker_alone, env_or};
use volley_tests::rabbit::Rabbit;
use volley_tests::{Fixture, PostfixSink, free_port, http_get, spawn, stop, volley};

/// An HTTP/1.1 endpoint answering 200 to every POST, counting them.
struct Receiver {
    port: u16,
    count: Arc<AtomicU64>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let count = Arc::new(AtomicU64::new(0));
        let c = Arc::clone(&count);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let c = Arc::clone(&c);
                std::thread::spawn(move || serve(stream, &c));
            }
        });
        Receiver { port, count }
    }
}

fn serve(stream: std::net::TcpStream, count: &AtomicU64) {
    let _ = stream.set_nodelay(true);
    let mut out = stream.try_clone().expect("clone");
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    loop {
        let mut len = 0usize;
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        count.fetch_add(1, Ordering::Relaxed);
        if out
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

/// One series' value from a `/metrics` body.
fn value(body: &str, series: &str) -> f64 {
    body.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // fields after the command name (which may hold spaces)
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    // SAFETY: sysconf(3) reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / hz
}

/// Which destinations a round has besides the events file.
#[derive(Clone, Copy, PartialEq)]
enum Variant {
    A,
    B,
    C,
}

struct Round {
    rate: f64,
    /// CPU µs per message: volley, smtp-sink, broker, this process.
    cpu: [f64; 4],
    /// Per destination: (name, events, events/s, lag-to-zero after the
    /// last delivery in seconds).
    dests: Vec<(String, f64, f64, f64)>,
}

const DESTS: [&str; 2] = ["hook", "broker"];

fn labels(d: &str) -> String {
    let kind = if d == "hook" { "webhook" } else { "amqp" };
    format!("{{configuration_set=\"main\",destination=\"{d}\",kind=\"{kind}\"}}")
}

fn round(
    n: usize,
    conns: usize,
    alg: Alg,
    variant: Variant,
    rx: &Receiver,
    rabbit: &Rabbit,
    format: &str,
) -> Round {
    let fx = Fixture::new();
    newsletter::write_key(&fx, alg);
    newsletter::write_campaign(&fx, n, |i| format!("d{}.bench.test", i % 100));
    let sink = PostfixSink::counting(&[]);
    let http = format!("127.0.0.1:{}", free_port());
    let hook = format!(
        "[[configuration_sets.main.destinations]]\nname = \"hook\"\nevent_types = [\"Send\", \"Delivery\", \"Bounce\", \"DeliveryDelay\"]\nwebhook = {{ url = \"http://127.0.0.1:{}/events\", format = \"{format}\", concurrency = 16 }}\n",
        rx.port
    );
    let broker = format!(
        "[[configuration_sets.main.destinations]]\nname = \"broker\"\nevent_types = [\"Send\", \"Delivery\", \"Bounce\", \"DeliveryDelay\"]\namqp = {{ url = \"{}\", exchange = \"bench\", format = \"{format}\" }}\n",
        rabbit.url()
    );
    let (destinations, dests): (String, &[&str]) = match variant {
        Variant::A => (String::new(), &[]),
        Variant::B => (format!("{hook}{broker}"), &DESTS),
        Variant::C => (hook, &DESTS[..1]),
    };
    fx.write(
        "config.toml",
        format!(
            "[spool]\ndir = \"spool\"\n[http]\nlisten = \"{http}\"\n[events]\njsonl = \"events.jsonl\"\ndefault_configuration_set = \"main\"\n[configuration_sets.main]\n[delivery]\nhelo = \"bench.test\"\nmessages_per_second = 1000000\nconnections = {conns}\n{destinations}[routes]\n\"*\" = \"127.0.0.1:{}\"\n{}",
            sink.port,
            newsletter::dkim_config(alg)
        ),
    );
    let out = volley_tests::run(
        fx.path(),
        &["enqueue", "campaign.toml", "--config", "config.toml"],
        Duration::from_secs(600),
    );
    assert!(out.status.success(), "enqueue failed");
    let broker_pid = rabbit.pid().unwrap_or(0);
    let cpu0 = [
        cpu_secs(sink.pid()),
        cpu_secs(broker_pid),
        cpu_secs(std::process::id()),
    ];
    let start = Instant::now();
    let service = spawn(fx.path(), &["run", "--config", "config.toml"]);
    let mut delivered_at = None;
    let mut caught: Vec<Option<Instant>> = vec![None; dests.len()];
    let want_events = 2.0 * n as f64;
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let Ok((200, body)) = http_get(&http, "/metrics") else {
            continue;
        };
        let now = Instant::now();
        if delivered_at.is_none()
            && value(&body, "volley_outcomes_total{outcome=\"delivered\"}") >= n as f64
        {
            delivered_at = Some(now);
        }
        {
            for (i, d) in dests.iter().enumerate() {
                let l = labels(d);
                if caught[i].is_none()
                    && value(
                        &body,
                        &format!("volley_destination_events_published_total{l}"),
                    ) >= want_events
                    && value(&body, &format!("volley_destination_lag_entries{l}")) == 0.0
                {
                    caught[i] = Some(now);
                }
            }
        }
        let done = delivered_at.is_some() && caught.iter().all(Option::is_some);
        assert!(
            start.elapsed() < Duration::from_secs(1800),
            "the round did not finish"
        );
        if done {
            break;
        }
    }
    let per_msg = |a: f64, b: f64| (b - a) * 1e6 / n as f64;
    let cpu = [
        per_msg(0.0, cpu_secs(service.id())),
        per_msg(cpu0[0], cpu_secs(sink.pid())),
        per_msg(cpu0[1], cpu_secs(broker_pid)),
        per_msg(cpu0[2], cpu_secs(std::process::id())),
    ];
    stop(service);
    let delivered_at = delivered_at.expect("delivered");
    let secs = (delivered_at - start).as_secs_f64();
    let mut out = Round {
        rate: n as f64 / secs,
        cpu,
        dests: Vec::new(),
    };
    if !dests.is_empty() {
        for (i, d) in dests.iter().enumerate() {
            let at = caught[i].expect("caught up");
            let lag = at.saturating_duration_since(delivered_at).as_secs_f64();
            out.dests.push((
                d.to_string(),
                want_events,
                want_events / (at - start).as_secs_f64(),
                lag,
            ));
        }
        let got = rx.count.swap(0, Ordering::Relaxed);
        assert!(got as f64 >= want_events, "the receiver got {got} requests");
        if variant == Variant::B {
            let held = rabbit.purge("bench-events");
            assert!(held as f64 >= want_events, "the queue held {held} messages");
        }
    }
    drop(sink);
    out
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` probes benches with --list
    }
    let n: usize = env_or("VOLLEY_BENCH_N", 100_000);
    let rounds: usize = env_or("VOLLEY_BENCH_ROUNDS", 2);
    let conns: usize = env_or("VOLLEY_BENCH_CONNS", 32);
    let format: String = env_or("VOLLEY_BENCH_FORMAT", "raw".to_string());
    let alg = Alg::from_env(Alg::Rsa);
    let variants: String = env_or("VOLLEY_BENCH_VARIANTS", "ABC".to_string());
    let _ = volley();
    let receiver = Receiver::start();
    let rabbit = Rabbit::start();
    rabbit.declare("bench", "bench-events", "#");
    println!(
        "workload: {n} recipients over 100 domains, {conns} connections to smtp-sink, {}; destinations' format {format}",
        alg.name()
    );
    let broker_pid = rabbit.pid().unwrap_or(0);
    for batch in [256, 4096] {
        let m = 2 * n.min(20_000);
        let x = broker_alone::probe(
            &rabbit.url(),
            "bench",
            "main.Delivery",
            (m, batch, 1600),
            || cpu_secs(broker_pid),
        );
        rabbit.purge("bench-events");
        println!(
            "RabbitMQ alone: {m} persistent 1,600-byte messages, confirms per {batch}: {:.0} messages/s, {:.0} µs of the broker's CPU each",
            x.rate, x.cpu_us
        );
    }
    println!("A: events file only; B: + webhook + amqp; C: + webhook");
    println!("CPU per message in µs: volley / smtp-sink / RabbitMQ / bench process (receiver)");
    let mut rates: Vec<(char, Vec<f64>)> = Vec::new();
    for r in 0..rounds {
        for (name, v) in [('A', Variant::A), ('B', Variant::B), ('C', Variant::C)] {
            if !variants.contains(name) {
                continue;
            }
            let x = round(n, conns, alg, v, &receiver, &rabbit, &format);
            println!(
                "round {r} {name}: {:.0} messages/s; CPU {:.0} / {:.0} / {:.0} / {:.0}",
                x.rate, x.cpu[0], x.cpu[1], x.cpu[2], x.cpu[3]
            );
            for (d, events, eps, lag) in &x.dests {
                println!(
                    "  {d}: {events:.0} events, {eps:.0} events/s, lag back to zero {lag:.2} s after the last delivery"
                );
            }
            match rates.iter_mut().find(|(c, _)| *c == name) {
                Some((_, v)) => v.push(x.rate),
                None => rates.push((name, vec![x.rate])),
            }
        }
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let Some((_, a)) = rates.iter().find(|(c, _)| *c == 'A') else {
        return;
    };
    let ma = median(a);
    for (c, v) in &rates {
        let m = median(v);
        println!(
            "median {c}: {m:.0} messages/s = {:.3} of A ({:+.1}%)",
            m / ma,
            100.0 * (m / ma - 1.0)
        );
    }
}
