//! A nameserver that never answers for some domains does not stall the
//! others: 150 domains whose MX lookups go unanswered come first in the
//! list (more than the 64 places of the fast lane; each lookup would wait
//! 2 × 20 s before it fails), then 20 domains that answer. Every recipient
//! of those 20 is delivered while the silent domains' lookups are still
//! waiting: before any event for a silent domain's recipient.

use std::net::IpAddr;
use std::time::Duration;

use volley_tests::dns::{DnsServer, Zones};
use volley_tests::mx_rig::*;
use volley_tests::*;

const SILENT: usize = 150;
const ANSWERED: usize = 20;
const PER_DOMAIN: usize = 2;

#[test]
fn unanswered_lookups_do_not_hold_up_other_domains() {
    let ips: Vec<IpAddr> = (1..=2).map(|h| ip(42, h)).collect();
    let (port, servers) = servers(&ips);
    let mut zones = Zones::new("slow.test").origin("sites.test");
    let mut silent = Vec::new();
    for d in 0..SILENT {
        let domain = format!("s{d}.slow.test");
        zones = zones.silent(&domain);
        silent.push(format!("user@{domain}"));
    }
    let mut answered = Vec::new();
    for d in 0..ANSWERED {
        let domain = format!("d{d}.sites.test");
        let mx = format!("mx{d}.sites.test");
        zones = zones.mx(&domain, 10, &mx).addr(&mx, ips[d % ips.len()]);
        answered.extend(rcpts(&domain, PER_DOMAIN));
    }
    let dns = DnsServer::start(zones);
    let fx = Fixture::new();
    let all: Vec<String> = silent.iter().chain(&answered).cloned().collect();
    campaign(&fx, &all);
    config(&fx, &dns, port, "", "");
    let cfg = std::fs::read_to_string(fx.path().join("config.toml")).expect("config");
    let cfg = cfg.replace(
        "allow_internal = true\n",
        "allow_internal = true\ntimeout = \"20s\"\n",
    );
    fx.write("config.toml", cfg);
    fx.enqueue();
    let service = spawn(fx.path(), &["run", "--config", "config.toml"]);
    // well within the silent lookups' 40 s: with one lane of 64 places,
    // the answered domains would wait for two rounds of them to fail
    wait_until(
        Duration::from_secs(30),
        "the answered domains' recipients delivered",
        || {
            let delivered = per_recipient(&fx.events(), "Delivery");
            answered.iter().all(|r| delivered.contains_key(r))
        },
    );
    let ev = fx.events();
    let out = stop(service);
    assert_delivered_once(&ev, &answered);
    let about_silent: Vec<&serde_json::Value> = ev
        .iter()
        .filter(|e| {
            e["mail"]["destination"][0]
                .as_str()
                .is_some_and(|d| d.ends_with(".slow.test"))
                && e["eventType"] != "Send"
        })
        .collect();
    assert!(
        about_silent.is_empty(),
        "the silent domains were still being looked up: {about_silent:?}"
    );
    let mut received: Vec<String> = servers.iter().flat_map(got).collect();
    received.sort();
    assert_eq!(received, sorted(&answered));
    let log = text(&out.stderr);
    assert!(!log.contains("panicked"), "{log}");
}
