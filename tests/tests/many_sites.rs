//! Hundreds of destinations under a low open-file limit: `volley run` with
//! `ulimit -n 256` sends to 300 domains, each with its own MX host (so 300
//! sites, 4 connections each: far more sockets than the limit allows).
//! The global connection budget (derived from the limit) makes them take
//! turns: every recipient is delivered once, none is deferred (running out
//! of file descriptors is back-pressure, never a site's outcome), and no
//! site is marked down. And an idle site's shard ends, and comes back for
//! the site's next recipient.

use std::net::IpAddr;
use std::time::Duration;

use volley_tests::dns::{DnsServer, Zones};
use volley_tests::mx_rig::*;
use volley_tests::prom::{metrics_when, samples};
use volley_tests::scripted::{Options, ScriptedServer};
use volley_tests::*;

const DOMAINS: usize = 300;
const PER_DOMAIN: usize = 10;
/// Receiving servers (on their own loopback addresses) sharing the sites.
const HOSTS: u8 = 4;

#[test]
fn hundreds_of_sites_under_a_low_file_limit_all_delivered_none_deferred() {
    let ips: Vec<IpAddr> = (1..=HOSTS).map(|h| ip(40, h)).collect();
    let (port, servers) = servers(&ips);
    let (zones, rcpts) = own_mx_sites(DOMAINS, PER_DOMAIN, &ips);
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

/// `domains` domains `d<d>.sites.test`, each with its own MX host on one
/// of `ips` (so each is a site of its own), and `per_domain` recipients
/// at each.
fn own_mx_sites(domains: usize, per_domain: usize, ips: &[IpAddr]) -> (Zones, Vec<String>) {
    let mut zones = Zones::new("sites.test");
    let mut rcpts = Vec::new();
    for d in 0..domains {
        let domain = format!("d{d}.sites.test");
        let mx = format!("mx{d}.sites.test");
        zones = zones.mx(&domain, 10, &mx).addr(&mx, ips[d % ips.len()]);
        rcpts.extend((0..per_domain).map(|i| format!("user{i}@{domain}")));
    }
    (zones, rcpts)
}

fn of_kind(ev: &[serde_json::Value], kind: &str) -> usize {
    ev.iter().filter(|e| e["eventType"] == kind).count()
}

/// A site's shard ends once the site has been idle for the connections'
/// idle period (what an idle site costs is then its DNS mapping and its
/// metrics), and the site's next recipient starts a new one: here every
/// first attempt is deferred (no throttling words), the shards end while
/// the recipients wait for their retry, and the retries are delivered.
#[test]
fn idle_sites_end_their_shards_and_their_retries_start_new_ones() {
    const SITES: usize = 40;
    let ips: Vec<IpAddr> = (1..=2).map(|h| ip(41, h)).collect();
    let port = common_port(&ips);
    let servers: Vec<ScriptedServer> = ips
        .iter()
        .map(|ip| {
            ScriptedServer::start_with(
                Options {
                    pipelining: true,
                    bind: Some(std::net::SocketAddr::new(*ip, port)),
                    ..Options::default()
                },
                std::sync::Arc::new(|_: &str, n: u32| {
                    if n == 0 {
                        "450 4.2.0 try again later".to_string()
                    } else {
                        "250 2.1.5 Ok".to_string()
                    }
                }),
            )
        })
        .collect();
    let (zones, rcpts) = own_mx_sites(SITES, 2, &ips);
    let dns = DnsServer::start(zones);
    let fx = Fixture::new();
    campaign(&fx, &rcpts);
    config(
        &fx,
        &dns,
        port,
        "",
        "idle = \"200ms\"\n[[mx]]\nsuffix = \".sites.test\"\nretry_first = \"20s\"\nretry_jitter = 0.0\n",
    );
    fx.enqueue();
    let service = spawn(fx.path(), &["run", "--config", "config.toml"]);
    wait_until(
        Duration::from_secs(60),
        "every first attempt deferred",
        || per_recipient(&fx.events(), "DeliveryDelay").len() == rcpts.len(),
    );
    // while they wait for their retry, every site's shard ends
    let idle = metrics_when(
        &fx.http_addr(),
        Duration::from_secs(15),
        "no site shard running",
        |m| samples(m, "volley_sites_active").first().map(|s| s.1) == Some(0.0),
    );
    assert!(
        of_kind(&fx.events(), "Delivery") == 0,
        "the shards ended before any retry: {idle}"
    );
    wait_until(Duration::from_secs(120), "every retry delivered", || {
        per_recipient(&fx.events(), "Delivery").len() == rcpts.len()
    });
    stop(service);
    let ev = fx.events();
    let (delivered, delayed) = (
        per_recipient(&ev, "Delivery"),
        per_recipient(&ev, "DeliveryDelay"),
    );
    for r in &rcpts {
        assert_eq!(delivered.get(r), Some(&1), "one Delivery for {r}");
        assert_eq!(delayed.get(r), Some(&1), "one deferral for {r}");
    }
    assert_eq!(of_kind(&ev, "Bounce"), 0);
    let mut received: Vec<String> = servers.iter().flat_map(got).collect();
    received.sort();
    assert_eq!(received, sorted(&rcpts), "each recipient received once");
}
