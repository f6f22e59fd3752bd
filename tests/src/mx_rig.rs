//! Loopback MX rig: receiving servers on their own loopback addresses
//! `127.91.<test>.<host>`, all on one port (the engine's `smtp_port`), a
//! config pointing MX lookups at the in-process DNS server ([`crate::dns`]),
//! and checks on what arrived where.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use crate::dns::DnsServer;
use crate::scripted::{Options, ScriptedServer};
use crate::{Fixture, free_port, per_recipient};

/// `127.91.<test>.<host>`: each test has its own /24.
pub fn ip(test: u8, host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 91, test, host))
}

pub fn v4(ip: IpAddr) -> Ipv4Addr {
    match ip {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => panic!("{ip} is not IPv4"),
    }
}

/// A port free on every one of `ips`, that nothing else takes before the
/// servers bind it (see [`crate::port_free_on`]).
pub fn common_port(ips: &[IpAddr]) -> u16 {
    crate::port_free_on(ips)
}

/// An accept-all scripted server at `addr`.
pub fn server_at(addr: SocketAddr) -> ScriptedServer {
    ScriptedServer::start_with(
        Options {
            pipelining: true,
            bind: Some(addr),
            ..Options::default()
        },
        Arc::new(|_: &str, _: u32| "250 2.1.5 Ok".to_string()),
    )
}

/// Accept-all scripted servers on `ips`, all on one port (returned).
pub fn servers(ips: &[IpAddr]) -> (u16, Vec<ScriptedServer>) {
    let port = common_port(ips);
    let s = ips
        .iter()
        .map(|ip| server_at(SocketAddr::new(*ip, port)))
        .collect();
    (port, s)
}

/// Writes `config.toml`: MX lookups at `dns`, MX hosts on `smtp_port`;
/// `delivery` goes into `[delivery]`, `extra` at the end. Retries are far
/// off, so that `send` ends with deferred recipients still deferred.
pub fn config(fx: &Fixture, dns: &DnsServer, smtp_port: u16, delivery: &str, extra: &str) {
    fx.write(
        "config.toml",
        format!(
            "[spool]\ndir = \"spool\"\n[events]\njsonl = \"events.jsonl\"\n\
             [http]\nlisten = \"127.0.0.1:{http}\"\n\
             [dns]\nnameservers = [\"{dns}\"]\nallow_internal = true\n\
             [delivery]\nsmtp_port = {smtp_port}\nmessages_per_second = 1000\nconnections = 2\n\
             retry_first = \"60s\"\n{delivery}\n\
             [delivery.timeouts]\nconnect = \"2s\"\n{extra}\n",
            http = free_port(),
            dns = dns.addr,
        ),
    );
}

/// Writes the campaign for `rcpts`.
pub fn campaign(fx: &Fixture, rcpts: &[String]) {
    let mut csv = String::from("email,name\n");
    for (i, r) in rcpts.iter().enumerate() {
        csv.push_str(&format!("{r},N{i}\n"));
    }
    fx.write("list.csv", csv);
    fx.campaign("list.csv", "Hello {{name}}", "Hi {{name}}\n", "");
}

/// `n` recipients at `domain`.
pub fn rcpts(domain: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user{i}@{domain}")).collect()
}

/// Every recipient a server accepted a message for, sorted.
pub fn got(s: &ScriptedServer) -> Vec<String> {
    let mut v: Vec<String> = s.received().into_iter().flat_map(|m| m.rcpts).collect();
    v.sort();
    v
}

pub fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}

/// Events of `kind` for the recipients, by recipient.
pub fn by_rcpt<'a>(
    ev: &'a [serde_json::Value],
    kind: &str,
) -> BTreeMap<String, Vec<&'a serde_json::Value>> {
    let mut out: BTreeMap<String, Vec<&serde_json::Value>> = BTreeMap::new();
    for e in ev.iter().filter(|e| e["eventType"] == kind) {
        let to = e["mail"]["destination"][0].as_str().expect("destination");
        out.entry(to.to_string()).or_default().push(e);
    }
    out
}

/// Exactly one Delivery for each of `rcpts`, and no other outcome for them.
pub fn assert_delivered_once(ev: &[serde_json::Value], rcpts: &[String]) {
    let delivered = per_recipient(ev, "Delivery");
    let bounced = per_recipient(ev, "Bounce");
    let delayed = per_recipient(ev, "DeliveryDelay");
    for r in rcpts {
        assert_eq!(delivered.get(r), Some(&1), "one Delivery for {r}");
        assert!(!bounced.contains_key(r), "{r} bounced");
        assert!(!delayed.contains_key(r), "{r} deferred");
    }
}
