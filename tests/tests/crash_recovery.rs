//! kill -9 of `volley send` in the middle of a 20,000-recipient campaign,
//! then `volley run`: every recipient is delivered at least once and none is
//! missing; duplicates are counted (printed) and bounded by the in-flight
//! window; every event appears exactly once in the JSONL file (per
//! recipient and event type), however the kill fell.

use std::collections::HashMap;
use std::time::Duration;

use volley_tests::*;

const N: usize = 20_000;
const DOMAINS: usize = 10;
/// Every domain is routed to the one sink: one site, whose in-flight window
/// is max(4 × connections, 8, recipients_per_transaction) = 100.
const WINDOW: usize = 100;

#[test]
fn kill_9_mid_campaign_then_run_delivers_everyone() {
    let sink = PostfixSink::start();
    let fx = Fixture::new();
    let mut csv = String::from("email,n\n");
    for i in 0..N {
        csv.push_str(&format!("r{i}@crash{}.test,{i}\n", i % DOMAINS));
    }
    fx.write("list.csv", csv);
    fx.campaign("list.csv", "Number {{n}}", "Message number {{n}}\n", "");
    fx.config(
        &sink.addr(),
        "[delivery]\nconnections = 4\nmessages_per_second = 100000\n",
    );

    let mut send = spawn(
        fx.path(),
        &["send", "campaign.toml", "--config", "config.toml"],
    );
    wait_until(
        Duration::from_secs(120),
        "a few thousand deliveries",
        || sink.files().len() >= 3000,
    );
    send.kill().expect("kill -9");
    let _ = send.wait();
    let at_kill = sink.files().len();
    assert!(
        at_kill < N,
        "the kill came too late to test anything ({at_kill} delivered)"
    );

    let s = fx.status();
    assert_eq!(
        s["campaigns"][0]["complete"], true,
        "the list was completely spooled before the kill"
    );
    assert_eq!(
        s["totals"]["total"], N as u64,
        "every recipient was spooled once"
    );

    let service = spawn(fx.path(), &["run", "--config", "config.toml"]);
    wait_until(Duration::from_secs(240), "everything delivered", || {
        let t = &fx.status()["totals"];
        t["queued"] == 0 && t["deferred"] == 0
    });
    stop(service);
    let s = fx.status();
    assert_eq!(s["totals"]["delivered"], N as u64);

    wait_until(Duration::from_secs(10), "sink dumps complete", || {
        sink.recipients().len() >= N
    });
    let mut copies: HashMap<String, usize> = HashMap::new();
    for r in sink.recipients() {
        *copies.entry(r).or_default() += 1;
    }
    let missing: Vec<String> = (0..N)
        .map(|i| format!("r{i}@crash{}.test", i % DOMAINS))
        .filter(|r| !copies.contains_key(r))
        .collect();
    assert!(
        missing.is_empty(),
        "{} recipients never arrived, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(copies.len(), N, "no unknown recipients arrived");
    let duplicates: usize = copies.values().map(|c| c - 1).sum();
    let ev = fx.events();
    let deliveries = per_recipient(&ev, "Delivery");
    assert_eq!(deliveries.len(), N, "a Delivery event for every recipient");
    let sends = per_recipient(&ev, "Send");
    assert_eq!(sends.len(), N, "a Send event for every recipient");
    let mut each: HashMap<(String, String), usize> = HashMap::with_capacity(2 * N);
    for e in &ev {
        let to = e["mail"]["destination"][0].as_str().unwrap().to_string();
        let kind = e["eventType"].as_str().unwrap().to_string();
        *each.entry((to, kind)).or_default() += 1;
    }
    let dup_events: usize = each.values().map(|c| c - 1).sum();
    println!(
        "kill -9 after {at_kill} messages at the sink: {duplicates} duplicate deliveries (bound {WINDOW}), {dup_events} duplicate events"
    );
    assert!(
        duplicates <= WINDOW,
        "{duplicates} duplicates exceed the in-flight window {WINDOW}"
    );
    let twice: Vec<_> = each.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert_eq!(
        dup_events, 0,
        "every event exactly once in the file; published more than once, e.g. {twice:?}"
    );
}
