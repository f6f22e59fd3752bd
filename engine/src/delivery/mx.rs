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

mod internal;
mod lanes;
pub use internal::is_internal;
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
