//! Hundreds of destinations under a low open-file limit: `volley run` with
//! `ulimit -n 256` sends to 300 domains, each with its own MX host (so 300
//! sites, 4 connections each: far more sockets than the limit allows).
//! The global connection budget (derived from the limit) makes them take
//! turns: every recipient is delivered once, none is deferred (running out
//! of file descriptors is back-pressure, never a site's outcome), and no
//! site is marked down.

use std::net::IpAddr;
use std::time::Duration;

use volley_tests::dns::{DnsServer, Zones};
use volley_tests::mx_rig::*;
use volley_tests::prom::{metrics_when, samples};
use volley_tests::*;

const DOMAINS: usize = 300;
const PER_DOMAIN: usize = 10;
/// Receiving servers (on their own loopback addresses) sharing the sites.
const HOSTS: u8 = 4;

#[test]
fn hundreds_of_sites_under_a_low_file_limit_all_delivered_none_deferred() {
    let ips: Vec<IpAddr> = (1..=HOSTS).map(|h| ip(40, h)).collect();
    let (port, servers) = servers(&ips);
    let mut zones = Zones::new("sites.test");
    let mut rcpts = Vec::new();
    for d in 0..DOMAINS {
        let domain = format!("d{d}.sites.test");
        let mx = format!("mx{d}.sites.test");
        zones = zones.mx(&domain, 10, &mx).addr(&mx, ips[d % ips.len()]);
        rcpts.extend((0..PER_DOMAIN).map(|i| format!("user{i}@{domain}")));
    }
    let dns = DnsServer::start(zones);
    let fx = Fixture::new();
    campaign(&fx, &rcpts);
    config(
        &fx,
        &dns,
        port,
        "",
        "[[mx]]\nsuffix = \".sites.test\"\nconnections = 4\nretry_first = \"1h\"\n",
    );
    fx.enqueue();
    let service = spawn_with_nofile(fx.path(), &["run", "--config", "config.toml"], 256);
    wait_until(
        Duration::from_secs(240),
        "every recipient delivered",
        || per_recipient(&fx.events(), "Delivery").len() == rcpts.len(),
    );
    let metrics = metrics_when(&fx.http_addr(), Duration::from_secs(20), "metrics", |_| {
        true
    });
    let out = stop(service);
    let ev = fx.events();
    assert_delivered_once(&ev, &rcpts);
    assert!(
        of_kind(&ev, "DeliveryDelay") == 0,
        "nobody is deferred for a local limit"
    );
    let mut received: Vec<String> = servers.iter().flat_map(got).collect();
    received.sort();
    assert_eq!(received, sorted(&rcpts), "each recipient received once");
    let down: Vec<_> = samples(&metrics, "volley_site_up")
        .into_iter()
        .filter(|(_, v)| *v != 1.0)
        .collect();
    assert!(down.is_empty(), "no site marked down: {down:?}");
    let log = text(&out.stderr);
    assert!(!log.contains("site is down"), "{log}");
}

fn of_kind(ev: &[serde_json::Value], kind: &str) -> usize {
    ev.iter().filter(|e| e["eventType"] == kind).count()
}
