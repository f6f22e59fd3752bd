//! Where to connect for a destination: a `[routes]` entry, or the domain's
//! MX hosts via hickory-resolver (lowest preference first, equal preferences
//! shuffled), falling back to the domain's own A/AAAA when it has no MX.
//!
//! A null MX (RFC 7505) or a nonexistent domain is a permanent failure; any
//! other lookup failure (SERVFAIL, timeout) is temporary. Answers are cached
//! by hickory for their TTL; the MX answer's expiry is returned so that the
//! domain-to-site mapping expires with it. The resolver can be pointed at
//! given nameservers (`[dns] nameservers`). At the scale of a real
//! campaign (tens of thousands of domains) the cache holds [`DNS_CACHE`]
//! answers and lookups in flight are bounded in two lanes (`mx/lanes.rs`): a
//! lookup that turns out slow gives its place to the next, so a slow
//! nameserver does not stall unrelated domains. Each domain's lookup is
//! its own task. Exposure: DNS answers are
//! untrusted input; names are only used for lookups and as TLS names, and
//! MX hosts at internal addresses (loopback, private, link-local, the
//! special-purpose blocks of RFC 6890, ...) are refused unless
//! `[dns] allow_internal`.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver as HickoryResolver, TokioResolver};

use crate::smtp::{DnsFailure, SessionError};

/// An MX answer: hosts by preference (already ordered for trying).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxAnswer {
    /// (preference, host name without the trailing dot)
    pub hosts: Vec<(u16, String)>,
    /// Whether the hosts are the domain itself (no MX: A/AAAA fallback).
    pub implicit: bool,
    pub valid_until: Instant,
}

mod lanes;
use lanes::Lanes;

/// Lookups in flight at once, both lanes (`mx/lanes.rs`): each may hold a
/// socket (file descriptors are budgeted: see
/// `delivery::budget::RESERVED_FDS`), and the resolver answers "busy" past
/// its own per-connection limit, which is set to this.
pub const DNS_CONCURRENCY: usize = lanes::FAST + lanes::SLOW;
/// Answers the resolver caches (MX answers and mail hosts' addresses of
/// tens of thousands of domains in one campaign).
pub const DNS_CACHE: u64 = 100_000;

/// Resolves destinations.
pub struct Resolver {
    dns: Option<TokioResolver>,
    /// Bounds lookups in flight (see `mx/lanes.rs`).
    lanes: Lanes,
    /// Accept MX host addresses that are internal ([`is_internal`]):
    /// `[dns] allow_internal`, for tests on loopback and private networks.
    allow_internal: bool,
}

/// Special-purpose IPv4 blocks (RFC 6890 and the IANA registry it set up,
/// plus multicast and the reserved 240/4): no mail host on the public
/// internet is at one of these. (network, prefix length)
const INTERNAL_V4: &[([u8; 4], u8)] = &[
    ([0, 0, 0, 0], 8),       // "this network" (RFC 791)
    ([10, 0, 0, 0], 8),      // private (RFC 1918)
    ([100, 64, 0, 0], 10),   // shared address space, CGNAT (RFC 6598)
    ([127, 0, 0, 0], 8),     // loopback
    ([169, 254, 0, 0], 16),  // link-local, cloud metadata services (RFC 3927)
    ([172, 16, 0, 0], 12),   // private (RFC 1918)
    ([192, 0, 0, 0], 24),    // IETF protocol assignments (RFC 6890)
    ([192, 0, 2, 0], 24),    // documentation, TEST-NET-1 (RFC 5737)
    ([192, 88, 99, 0], 24),  // deprecated 6to4 relay anycast (RFC 7526)
    ([192, 168, 0, 0], 16),  // private (RFC 1918)
    ([198, 18, 0, 0], 15),   // benchmarking (RFC 2544)
    ([198, 51, 100, 0], 24), // documentation, TEST-NET-2 (RFC 5737)
    ([203, 0, 113, 0], 24),  // documentation, TEST-NET-3 (RFC 5737)
    ([224, 0, 0, 0], 4),     // multicast (RFC 5771)
    ([240, 0, 0, 0], 4),     // reserved, and 255.255.255.255 broadcast (RFC 1112)
];

/// Special-purpose IPv6 blocks without a public mail host (RFC 6890 and
/// the IANA registry). Blocks that embed an IPv4 address (IPv4-mapped,
/// NAT64, 6to4) are judged by that address instead. (network, prefix length)
const INTERNAL_V6: &[(u128, u8)] = &[
    (0, 96),                      // unspecified, loopback, IPv4-compatible (deprecated)
    (0x0064_ff9b_0001 << 80, 48), // local-use IPv4/IPv6 translation (RFC 8215)
    (0x0100 << 112, 64),          // discard-only (RFC 6666)
    (0x2001 << 112, 23),          // IETF protocol assignments, Teredo (RFC 2928, 4380)
    (0x2001_0db8 << 96, 32),      // documentation (RFC 3849)
    (0x3fff << 112, 20),          // documentation (RFC 9637)
    (0x5f00 << 112, 16),          // segment routing SIDs (RFC 9602)
    (0xfc00 << 112, 7),           // unique local, ULA (RFC 4193)
    (0xfe80 << 112, 10),          // link-local
    (0xfec0 << 112, 10),          // site-local (deprecated, RFC 3879)
    (0xff00 << 112, 8),           // multicast
];

fn in_v4(ip: std::net::Ipv4Addr, (net, len): ([u8; 4], u8)) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    u32::from(ip) & mask == u32::from_be_bytes(net) & mask
}

fn in_v6(ip: std::net::Ipv6Addr, (net, len): (u128, u8)) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    u128::from(ip) & mask == net & mask
}

/// The IPv4 address an IPv6 address stands for, where it embeds one:
/// IPv4-mapped (`::ffff:a.b.c.d`), the NAT64 well-known prefix
/// (`64:ff9b::/96`, RFC 6052) and 6to4 (`2002::/16`, RFC 3056).
fn embedded_v4(ip: std::net::Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    let n = u128::from(ip);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    if in_v6(ip, (0x0064_ff9b << 96, 96)) {
        return Some(std::net::Ipv4Addr::from(n as u32));
    }
    if in_v6(ip, (0x2002 << 112, 16)) {
        return Some(std::net::Ipv4Addr::from((n >> 80) as u32));
    }
    None
}

/// An address no mail host on the public internet has: loopback, private
/// (RFC 1918, ULA), shared (CGNAT), link-local (including cloud metadata
/// services), documentation, benchmarking, multicast, reserved, and the
/// rest of the special-purpose registries (RFC 6890). A hostile domain's MX
/// pointing here would make the engine talk to services on its own machine
/// or network.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => INTERNAL_V4.iter().any(|b| in_v4(a, *b)),
        IpAddr::V6(a) => match embedded_v4(a) {
            Some(v4) => is_internal(IpAddr::V4(v4)),
            None => INTERNAL_V6.iter().any(|b| in_v6(a, *b)),
        },
    }
}

fn fail(kind: DnsFailure, msg: String) -> SessionError {
    SessionError::Dns(kind, msg)
}

impl Resolver {
    /// Uses `nameservers` (`ip:port`), or the system's configuration when
    /// the list is empty; `allow_internal` accepts MX hosts at internal
    /// addresses ([`is_internal`]); `timeout`: how long one attempt waits
    /// for an answer (`None`: 2 s with `nameservers`, else the system's).
    pub fn new(
        nameservers: &[SocketAddr],
        allow_internal: bool,
        timeout: Option<Duration>,
    ) -> Resolver {
        let scale = |o: &mut hickory_resolver::config::ResolverOpts| {
            o.cache_size = DNS_CACHE;
            o.max_active_requests = DNS_CONCURRENCY;
            if let Some(t) = timeout {
                o.timeout = t;
            }
        };
        let dns = if nameservers.is_empty() {
            TokioResolver::builder_tokio().ok().and_then(|mut b| {
                scale(b.options_mut());
                b.build().ok()
            })
        } else {
            let servers = nameservers
                .iter()
                .map(|a| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = a.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = a.port();
                    let mut ns = NameServerConfig::udp_and_tcp(a.ip());
                    ns.trust_negative_responses = true;
                    ns.connections = vec![udp, tcp];
                    ns
                })
                .collect();
            let mut b = HickoryResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            );
            b.options_mut().timeout = Duration::from_secs(2);
            b.options_mut().attempts = 2;
            scale(b.options_mut());
            b.build().ok()
        };
        if dns.is_none() {
            tracing::warn!(
                "no usable DNS resolver configuration; only [routes] destinations can be reached"
            );
        }
        Resolver {
            dns,
            lanes: Lanes::default(),
            allow_internal,
        }
    }

    /// Uses the system's resolver configuration.
    pub fn system() -> Resolver {
        Resolver::new(&[], false, None)
    }

    fn dns(&self) -> Result<&TokioResolver, SessionError> {
        self.dns
            .as_ref()
            .ok_or_else(|| fail(DnsFailure::Temporary, "no DNS resolver configured".into()))
    }

    /// The MX hosts of `domain`, in the order to try them.
    pub async fn mx(&self, domain: &str) -> Result<MxAnswer, SessionError> {
        let dns = self.dns()?;
        let mut hosts: Vec<(u16, String)> = Vec::new();
        let mut valid_until = Instant::now() + Duration::from_secs(300);
        let answer = self.lanes.run(dns.mx_lookup(format!("{domain}."))).await;
        match answer {
            Ok(lookup) => {
                valid_until = lookup.valid_until();
                for rec in lookup.answers() {
                    if let RData::MX(mx) = &rec.data {
                        if mx.exchange.is_root() {
                            return Err(fail(
                                DnsFailure::NullMx,
                                format!("{domain} does not accept mail (null MX)"),
                            ));
                        }
                        hosts.push((
                            mx.preference,
                            mx.exchange
                                .to_ascii()
                                .trim_end_matches('.')
                                .to_ascii_lowercase(),
                        ));
                    }
                }
            }
            Err(e) if e.is_nx_domain() => {
                return Err(fail(
                    DnsFailure::NoDomain,
                    format!("domain {domain} does not exist"),
                ));
            }
            Err(e) if e.is_no_records_found() => {}
            Err(e) => {
                return Err(fail(
                    DnsFailure::Temporary,
                    format!("MX lookup for {domain} failed: {e}"),
                ));
            }
        }
        let implicit = hosts.is_empty();
        if implicit {
            hosts.push((0, domain.to_string()));
        }
        // lowest preference first; equal preferences in random order
        fastrand::shuffle(&mut hosts);
        hosts.sort_by_key(|(p, _)| *p);
        // a host listed more than once is one host, at its lowest
        // preference (duplicates need not be adjacent: MX 10 a, 20 b, 30 a)
        let mut seen = std::collections::HashSet::new();
        hosts.retain(|(_, h)| seen.insert(h.clone()));
        Ok(MxAnswer {
            hosts,
            implicit,
            valid_until,
        })
    }

    /// The TXT records at `name` (each record's strings joined, invalid
    /// UTF-8 replaced); none when the name or the type does not exist.
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, SessionError> {
        let dns = self.dns()?;
        match self.lanes.run(dns.txt_lookup(format!("{name}."))).await {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter_map(|rec| match &rec.data {
                    RData::TXT(t) => Some(
                        t.txt_data
                            .iter()
                            .map(|s| String::from_utf8_lossy(s))
                            .collect::<String>(),
                    ),
                    _ => None,
                })
                .collect()),
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => Err(fail(
                DnsFailure::Temporary,
                format!("TXT lookup for {name} failed: {e}"),
            )),
        }
    }

    /// Addresses of a mail host (an IP literal is its own address), without
    /// internal ones unless allowed.
    pub async fn addresses(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, SessionError> {
        let ips: Vec<IpAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => self.lookup(host).await?,
        };
        let usable: Vec<SocketAddr> = ips
            .iter()
            .filter(|ip| self.allow_internal || !is_internal(**ip))
            .map(|ip| SocketAddr::new(*ip, port))
            .collect();
        if usable.is_empty() {
            return Err(fail(
                DnsFailure::NoAddress,
                format!("mail host {host} has only internal addresses ({ips:?})"),
            ));
        }
        Ok(usable)
    }

    async fn lookup(&self, host: &str) -> Result<Vec<IpAddr>, SessionError> {
        let dns = self.dns()?;
        let answer = self.lanes.run(dns.lookup_ip(format!("{host}."))).await;
        match answer {
            Ok(ips) => Ok(ips.iter().collect()),
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => Err(fail(
                DnsFailure::NoAddress,
                format!("mail host {host} has no address"),
            )),
            Err(e) => Err(fail(
                DnsFailure::Temporary,
                format!("address lookup for {host} failed: {e}"),
            )),
        }
    }

    /// Addresses of a `[routes]` target (names through the system resolver).
    pub async fn route(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, SessionError> {
        tokio::net::lookup_host((host, port))
            .await
            .map(|a| a.collect())
            .map_err(|e| fail(DnsFailure::Temporary, format!("route {host}:{port}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses() {
        for ip in [
            "127.0.0.1",
            "127.91.3.4",
            "0.0.0.0",
            "0.1.2.3",
            "10.1.2.3",
            "100.64.0.1",
            "100.127.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.170",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "::10.0.0.1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "fc00::1",
            "fd12:3456::1",
            "2001:db8::1",
            "2001::1",
            "3fff::1",
            "100::1",
            "64:ff9b:1::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:c0a8:0101::1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.3.1",
            "192.169.0.1",
            "198.20.0.1",
            "223.255.255.255",
            "2a00:1450:4001:80b::200e",
            "2607:f8b0::1",
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
            "2002:0808:0808::1",
        ] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }
}
