//! Where to connect for a destination domain: a `[routes]` entry, or the
//! domain's MX hosts (lowest preference first) via hickory-resolver, falling
//! back to the domain's own A/AAAA when it has no MX.
//!
//! A null MX (RFC 7505) or a nonexistent domain is a permanent failure; any
//! other lookup failure is temporary. Exposure: DNS answers are untrusted
//! input; names are only used for lookups and as TLS server names.

use std::net::SocketAddr;

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::RData;

use super::smtp::{Phase, Reply, SessionError};
use crate::config::Route;

/// Resolves destinations.
pub struct Resolver {
    dns: Option<TokioResolver>,
}

fn temp(msg: String) -> SessionError {
    SessionError::Connect(msg)
}

fn perm(code: [u8; 3], msg: String) -> SessionError {
    SessionError::Refused(Phase::Connect, Reply::new(550, code, msg))
}

impl Resolver {
    /// Uses the system's resolver configuration (if it can be read).
    pub fn system() -> Resolver {
        let dns = TokioResolver::builder_tokio()
            .ok()
            .and_then(|b| b.build().ok());
        if dns.is_none() {
            tracing::warn!(
                "no usable DNS resolver configuration; only [routes] destinations can be reached"
            );
        }
        Resolver { dns }
    }

    /// Addresses to try, in order, with the name to use for TLS.
    pub async fn resolve(
        &self,
        domain: &str,
        route: Option<&Route>,
    ) -> Result<Vec<(SocketAddr, String)>, SessionError> {
        if let Some(r) = route {
            let addrs = tokio::net::lookup_host((r.host.as_str(), r.port))
                .await
                .map_err(|e| temp(format!("route {}:{}: {e}", r.host, r.port)))?;
            return Ok(addrs.map(|a| (a, r.host.clone())).collect());
        }
        let dns = self
            .dns
            .as_ref()
            .ok_or_else(|| temp("no DNS resolver configured".into()))?;
        let mut hosts: Vec<(u16, String)> = Vec::new();
        match dns.mx_lookup(format!("{domain}.")).await {
            Ok(lookup) => {
                for rec in lookup.answers() {
                    if let RData::MX(mx) = &rec.data {
                        if mx.exchange.is_root() {
                            return Err(perm(
                                [5, 1, 10],
                                format!("{domain} does not accept mail (null MX)"),
                            ));
                        }
                        hosts.push((mx.preference, mx.exchange.to_ascii()));
                    }
                }
            }
            Err(e) if e.is_nx_domain() => {
                return Err(perm([5, 1, 2], format!("domain {domain} does not exist")));
            }
            Err(e) if e.is_no_records_found() => {}
            Err(e) => return Err(temp(format!("MX lookup for {domain} failed: {e}"))),
        }
        if hosts.is_empty() {
            hosts.push((0, domain.to_string()));
        }
        // lowest preference first; equal preferences in random order
        fastrand::shuffle(&mut hosts);
        hosts.sort_by_key(|(p, _)| *p);
        let mut out = Vec::new();
        for (_, host) in hosts {
            let host = host.trim_end_matches('.').to_string();
            match dns.lookup_ip(format!("{host}.")).await {
                Ok(ips) => out.extend(ips.iter().map(|ip| (SocketAddr::new(ip, 25), host.clone()))),
                Err(e) => tracing::debug!(%host, error = %e, "address lookup failed"),
            }
        }
        if out.is_empty() {
            return Err(temp(format!(
                "no address found for the mail hosts of {domain}"
            )));
        }
        Ok(out)
    }
}
