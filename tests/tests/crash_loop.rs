//! Crash loop: `volley send` of a 200,000-recipient campaign to Postfix's
//! smtp-sink is killed with SIGKILL at random moments, 24 times, during
//! ingest and delivery, and started again each time. In the end no
//! recipient is lost, each has exactly one final event in the JSONL file
//! and no event at all appears twice (per recipient and event type), and
//! duplicate deliveries (printed) stay within the in-flight window per
//! kill.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use volley_tests::*;

const N: usize = 200_000;
const DOMAINS: usize = 20;
const KILLS: usize = 24;
/// Every domain is routed to the one sink: one site, whose in-flight window
/// is max(4 × connections, 8, recipients_per_transaction) = 100.
const WINDOW: usize = 100;

#[test]
fn sigkill_loop_loses_nothing_and_publishes_each_final_event_once() {
    let sink = PostfixSink::start();
    let fx = Fixture::new();
    let mut csv = String::with_capacity(N * 40);
    csv.push_str("email,n\n");
    for i in 0..N {
        csv.push_str(&format!("r{i}@loop{}.test,{i}\n", i % DOMAINS));
    }
    fx.write("list.csv", csv);
    fx.campaign("list.csv", "Number {{n}}", "Message {{n}}\n", "");
    fx.config(
        &sink.addr(),
        "[delivery]\nconnections = 4\nmessages_per_second = 1000000\n",
    );

    let seed = std::env::var("VOLLEY_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(fastrand_seed);
    let mut rng = Rng(seed);
    println!("crash loop seed {seed} (set VOLLEY_CRASH_SEED to repeat)");
    let started = Instant::now();
    for k in 0..KILLS {
        let mut send = spawn(
            fx.path(),
            &["send", "campaign.toml", "--config", "config.toml"],
        );
        // early kills land in ingest and start-up, later ones in delivery
        let ms = if k < 6 {
            20 + rng.below(400)
        } else {
            200 + rng.below(1500)
        };
        std::thread::sleep(Duration::from_millis(ms));
        if let Ok(Some(status)) = send.try_wait() {
            panic!(
                "send finished before kill {k} ({status}): the campaign is too small for this test"
            );
        }
        send.kill().expect("SIGKILL");
        let _ = send.wait();
    }
    let killed_at = sink.files().len();
    println!(
        "after {KILLS} kills ({:.1} s): {killed_at} messages at the sink",
        started.elapsed().as_secs_f64()
    );
    assert!(
        killed_at < N,
        "everything was delivered before the last kill"
    );

    let out = fx.volley("send", Duration::from_secs(600));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    // nobody lost: every recipient arrived, and the spool says delivered
    wait_until(Duration::from_secs(30), "sink dumps complete", || {
        sink.recipients().len() >= N
    });
    let mut copies: HashMap<String, usize> = HashMap::with_capacity(N);
    for r in sink.recipients() {
        *copies.entry(r).or_default() += 1;
    }
    let missing = (0..N)
        .filter(|i| !copies.contains_key(&format!("r{i}@loop{}.test", i % DOMAINS)))
        .count();
    assert_eq!(missing, 0, "{missing} recipients never arrived");
    assert_eq!(copies.len(), N);
    let duplicates: usize = copies.values().map(|c| c - 1).sum();

    let s = fx.status();
    assert_eq!(
        s["campaigns"][0]["total"], N as u64,
        "every row spooled exactly once"
    );
    assert_eq!(s["campaigns"][0]["delivered"], N as u64);
    assert_eq!(s["totals"]["lost"], 0);

    // exactly one final event per recipient, and no event twice
    let ev = event_keys(&fx.path().join("events.jsonl"));
    let mut finals: HashMap<String, usize> = HashMap::with_capacity(N);
    let mut each: HashMap<(String, String), usize> = HashMap::with_capacity(2 * N);
    for (kind, to) in ev {
        if matches!(kind.as_str(), "Delivery" | "Bounce" | "Rendering Failure") {
            *finals.entry(to.clone()).or_default() += 1;
        }
        *each.entry((to, kind)).or_default() += 1;
    }
    let twice: Vec<_> = each.iter().filter(|(_, n)| **n > 1).take(5).collect();
    let twice_count = each.values().filter(|n| **n > 1).count();
    assert!(
        twice.is_empty(),
        "{twice_count} (recipient, event type) pairs published more than once, e.g. {twice:?}"
    );
    assert_eq!(finals.len(), N, "a final event for every recipient");
    let repeated: Vec<_> = finals.iter().filter(|(_, n)| **n != 1).take(5).collect();
    assert!(
        repeated.is_empty(),
        "recipients with more than one final event: {repeated:?}"
    );

    println!(
        "{KILLS} SIGKILLs: 0 lost, {duplicates} duplicate deliveries (bound {} = {KILLS} kills x {WINDOW} in flight), each recipient one final event, no event twice",
        KILLS * WINDOW
    );
    assert!(duplicates <= KILLS * WINDOW);
}

fn fastrand_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

/// A small deterministic generator (xorshift), so a failing run can be
/// repeated with its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
