//! The many-sites rig: a recipient list over many domains whose MX hosts
//! are distinct sites, a test DNS server ([`volley_tests::dns`]) that
//! answers for them, and the Postfix `smtp-sink`s on loopback addresses
//! 127.0.0.2–127.0.0.17 (all on one port, the engine's `smtp_port`) that
//! receive the mail.
//!
//! [`Layout`] is the pure part: `sites` distinct MX hosts `mx<h>.sites.test`
//! for `max(sites, 100)` domains `d<d>.sites.test` (domain `d` uses host
//! `d % sites`, so domains beyond `sites` share hosts round-robin), host `h`
//! on sink `h % 16`; recipient `i` is at domain `i % domains`. One site is
//! the single-site reference: a `[routes] "*"` entry to one sink, no DNS.
//! [`Sinks`] owns the receiving processes (killed when dropped) and sums
//! their counters. Only generated, trusted input; binds only loopback.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use volley_tests::PostfixSink;
use volley_tests::dns::{DnsServer, Zones};

use crate::measure::proc_cpu_secs;

/// How many `smtp-sink`s share the sites (one `smtp-sink` serves about a
/// thousand sessions at once).
pub const SINKS: usize = 16;

/// Sessions one smtp-sink serves at once (its `-m 1024`, rounded down).
pub const SESSIONS_PER_SINK: usize = 1000;

/// The DNS zone every name of the rig is under.
const ORIGIN: &str = "sites.test";

/// Loopback address of sink `k`: 127.0.0.2 + k.
pub fn sink_ip(k: usize) -> Ipv4Addr {
    let last = u8::try_from(2 + k).expect("sink index within 127.0.0.2..=255");
    Ipv4Addr::new(127, 0, 0, last)
}

/// Domains, MX hosts and sinks of a run with `sites` distinct sites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub sites: usize,
    pub domains: usize,
}

impl Layout {
    /// `sites` (at least 1) distinct sites over `max(sites, 100)` domains.
    pub fn new(sites: usize) -> Layout {
        assert!(sites >= 1, "a run needs at least one site");
        Layout {
            sites,
            domains: sites.max(100),
        }
    }

    /// One site: every domain routed to one sink (`[routes] "*"`).
    pub fn routed(&self) -> bool {
        self.sites == 1
    }

    pub fn domain(d: usize) -> String {
        format!("d{d}.{ORIGIN}")
    }

    /// The domain of recipient `i`.
    pub fn domain_of(&self, i: usize) -> usize {
        i % self.domains
    }

    /// The MX host (site) of domain `d`.
    pub fn host_of(&self, d: usize) -> usize {
        d % self.sites
    }

    pub fn host(h: usize) -> String {
        format!("mx{h}.{ORIGIN}")
    }

    /// The sink that receives the mail of host `h`.
    pub fn sink_of(&self, h: usize) -> usize {
        h % SINKS
    }

    /// Connections per site when none are asked for: 32 to the one routed
    /// site, the engine's default of 4 while all sites' connections fit
    /// in what the sinks serve at once, else 1.
    pub fn default_connections(&self) -> usize {
        if self.routed() {
            32
        } else if self.sites * 4 <= SINKS * SESSIONS_PER_SINK {
            4
        } else {
            1
        }
    }

    /// How many sinks the run uses.
    pub fn sinks(&self) -> usize {
        if self.routed() {
            1
        } else {
            self.sites.min(SINKS)
        }
    }

    /// Of `n` recipients, how many each sink receives.
    pub fn expected_per_sink(&self, n: usize) -> Vec<u64> {
        let mut v = vec![0u64; self.sinks()];
        for i in 0..n {
            let k = if self.routed() {
                0
            } else {
                self.sink_of(self.host_of(self.domain_of(i)))
            };
            v[k] += 1;
        }
        v
    }

    /// The DNS answers: `d<d> MX 10 mx<d % sites>` for every domain and
    /// `mx<h> A 127.0.0.<2 + h % 16>` for every host.
    pub fn zones(&self) -> Zones {
        let mut z = Zones::new(ORIGIN);
        for d in 0..self.domains {
            z = z.mx(&Layout::domain(d), 10, &Layout::host(self.host_of(d)));
        }
        for h in 0..self.sites {
            z = z.a(&Layout::host(h), sink_ip(self.sink_of(h)));
        }
        z
    }

    /// The engine's config: the sinks on `port` reached by MX lookups at
    /// `dns` (or by a route to the first sink for one site), `connections`
    /// per site, a rate limit far above what is measured, and `dkim` (the
    /// `[[dkim]]` table).
    pub fn config(
        &self,
        dns: Option<SocketAddr>,
        port: u16,
        connections: usize,
        dkim: &str,
    ) -> String {
        let mut c = String::from("[spool]\ndir = \"spool\"\n[events]\njsonl = \"events.jsonl\"\n");
        if let Some(dns) = dns.filter(|_| !self.routed()) {
            c.push_str(&format!(
                "[dns]\nnameservers = [\"{dns}\"]\nallow_internal = true\n"
            ));
        }
        c.push_str(&format!(
            "[delivery]\nhelo = \"bench.test\"\nsmtp_port = {port}\nmessages_per_second = 1000000\nconnections = {connections}\n"
        ));
        if self.routed() {
            c.push_str(&format!("[routes]\n\"*\" = \"{}:{port}\"\n", sink_ip(0)));
        }
        c.push_str(dkim);
        c
    }
}

/// The DNS server answering for `layout` (none for a routed layout).
pub fn dns(layout: &Layout) -> Option<DnsServer> {
    (!layout.routed()).then(|| DnsServer::start(layout.zones()))
}

/// Counting `smtp-sink`s on 127.0.0.2.. sharing one port; killed when
/// dropped.
pub struct Sinks {
    sinks: Vec<PostfixSink>,
    pub port: u16,
}

impl Sinks {
    /// Starts `count` sinks on a port free on all their addresses.
    pub fn start(count: usize) -> Sinks {
        let ips: Vec<IpAddr> = (0..count).map(|k| IpAddr::V4(sink_ip(k))).collect();
        let port = volley_tests::port_free_on(&ips);
        let sinks = ips
            .iter()
            .map(|ip| PostfixSink::counting_at(SocketAddr::new(*ip, port), &[]))
            .collect();
        Sinks { sinks, port }
    }

    /// Messages each sink counted so far, in sink order.
    pub fn counted(&self) -> Vec<u64> {
        self.sinks.iter().map(PostfixSink::counted).collect()
    }

    pub fn total(&self) -> u64 {
        self.counted().iter().sum()
    }

    /// CPU seconds the sinks used since they started.
    pub fn cpu_secs(&self) -> f64 {
        self.sinks
            .iter()
            .filter_map(|s| proc_cpu_secs(s.pid()))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_hosts_one_per_site_spread_over_the_sinks() {
        for sites in [2, 16, 100, 1000, 10_000] {
            let l = Layout::new(sites);
            assert_eq!(l.domains, sites.max(100));
            let hosts: std::collections::BTreeSet<usize> =
                (0..l.domains).map(|d| l.host_of(d)).collect();
            assert_eq!(hosts.len(), sites, "one MX host per site");
            let sinks: std::collections::BTreeSet<usize> =
                hosts.iter().map(|&h| l.sink_of(h)).collect();
            assert_eq!(sinks.len(), l.sinks());
            let per_sink = l.expected_per_sink(10_000);
            assert_eq!(per_sink.iter().sum::<u64>(), 10_000);
            assert!(per_sink.iter().all(|&c| c > 0), "{sites}: {per_sink:?}");
        }
    }

    #[test]
    fn one_site_is_a_route_to_one_sink_without_dns() {
        let l = Layout::new(1);
        assert!(l.routed());
        assert_eq!(l.domains, 100);
        assert_eq!(l.expected_per_sink(500), vec![500]);
        assert!(dns(&l).is_none());
    }

    #[test]
    fn config_is_accepted_by_the_engine() {
        use volley_engine::config::Config;
        let dns: SocketAddr = "127.0.0.1:5300".parse().unwrap();
        let parse = |l: Layout| {
            let text = l.config(Some(dns), 2600, 4, "");
            Config::parse(
                &text,
                std::path::Path::new("config.toml"),
                std::path::Path::new("/"),
            )
            .unwrap_or_else(|e| panic!("{e}: {text}"))
        };
        let one = parse(Layout::new(1));
        assert_eq!(
            one.routes.get("*").map(String::as_str),
            Some("127.0.0.2:2600")
        );
        assert!(one.dns.nameservers.is_empty());
        let many = parse(Layout::new(100));
        assert!(many.routes.is_empty());
        assert_eq!(many.dns.nameservers, vec!["127.0.0.1:5300".to_string()]);
        assert_eq!(many.delivery.smtp_port, 2600);
    }

    #[test]
    fn connections_per_site_fit_the_sinks() {
        let c = |s| Layout::new(s).default_connections();
        assert_eq!(
            [c(1), c(100), c(1000), c(4000), c(4001), c(10_000)],
            [32, 4, 4, 4, 1, 1]
        );
    }

    #[test]
    fn sinks_are_on_127_0_0_2_to_17() {
        assert_eq!(sink_ip(0), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(sink_ip(SINKS - 1), Ipv4Addr::new(127, 0, 0, 17));
    }
}
