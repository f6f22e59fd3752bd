//! Opening a session to a site: to its route, or to its MX hosts by
//! preference, equal preferences in a fresh random order on every open (so
//! a site's connections spread over them), each host's addresses in turn,
//! the next on any failure but a local one, at most [`MAX_ADDRESSES`]
//! tries. With `tls = "opportunistic"` a failed TLS handshake is retried
//! once in plain text on the same address. Under an MTA-STS policy
//! (`dest.sts`) a session must verify in `enforce` mode; in `testing` mode
//! it is first tried with verification and, when that fails, again as the
//! destination's own policy says; either way it is counted in the day's
//! TLS report. Also the [`probe`] of a down site. Exposure: talks to
//! remote servers through [`crate::smtp`]; every failure is a
//! [`SessionError`].

use std::net::SocketAddr;
use std::sync::Arc;

use super::dest::Dest;
use super::shard::ShardCtx;
use super::site::Hosts;
use super::sts::report::Failure;
use crate::config::{Config, TlsPolicy};
use crate::outcome;
use crate::smtp::{ConnectKind, Session, SessionError, Timeouts, TlsMode, client};

/// Most addresses one attempt to open a session tries.
pub const MAX_ADDRESSES: usize = 8;

fn tls_mode(p: TlsPolicy) -> TlsMode {
    match p {
        TlsPolicy::Verify => TlsMode::Verify,
        TlsPolicy::Required => TlsMode::Required,
        TlsPolicy::Opportunistic => TlsMode::Opportunistic,
        TlsPolicy::Disabled => TlsMode::Disabled,
    }
}

/// Opens a session at one address (plain-text retry for opportunistic
/// TLS), from the site's egress source if it has one (its address bound,
/// its EHLO name).
async fn open_at(
    ctx: &ShardCtx,
    config: &Config,
    dest: &Dest,
    mode: TlsMode,
    addr: SocketAddr,
    name: &str,
) -> Result<Session, SessionError> {
    let t = Timeouts::from(&config.delivery.timeouts);
    let (from, helo) = match &dest.source {
        Some(s) => (Some(s.address), s.ehlo.as_str()),
        None => (None, config.delivery.helo.as_str()),
    };
    let r = match client::open(addr, from, helo, &ctx.tls, mode, name, &t).await {
        Err(SessionError::Tls(e)) if mode == TlsMode::Opportunistic => {
            tracing::info!(%addr, error = %e, "TLS handshake failed; retrying in plain text (tls = \"opportunistic\")");
            client::open(addr, from, helo, &ctx.tls, TlsMode::Disabled, name, &t).await
        }
        r => r,
    };
    if let Some(s) = &dest.source {
        match &r {
            Ok(_) => ctx.egress.opened(s),
            Err(SessionError::Connect(ConnectKind::Source, e)) => ctx.egress.take_out(s, e),
            Err(SessionError::Refused(crate::smtp::Phase::Greeting, reply)) => {
                ctx.egress.refused(s, &dest.key, &reply.to_string());
            }
            Err(_) => {}
        }
    }
    r
}

/// Opens a session at one address under the site's MTA-STS policy, if
/// it has one, and reports it (RFC 8460): `enforce` requires verified TLS;
/// `testing` tries verified TLS to a host the policy lists first, and on a
/// TLS failure (or to a host it does not list) opens as without a policy.
/// Failures that are no verdict on TLS (connect, greeting) are not
/// reported.
async fn open_sts(
    ctx: &ShardCtx,
    config: &Config,
    dest: &Dest,
    mode: TlsMode,
    addr: SocketAddr,
    host: &str,
) -> Result<Session, SessionError> {
    let Some(sts) = &dest.sts else {
        return open_at(ctx, config, dest, mode, addr, host).await;
    };
    let report = |failure: Option<(&'static str, String)>| {
        ctx.metrics
            .mta_sts_sessions
            .get_or_create(&crate::metrics::MtaStsLabels {
                mode: sts.policy.mode.name().into(),
                result: if failure.is_some() {
                    "failed"
                } else {
                    "verified"
                }
                .into(),
            })
            .inc();
        let failure = failure.map(|(result_type, reason)| Failure {
            result_type,
            sending_ip: dest.source.as_ref().map(|s| s.address.to_string()),
            mx_host: Some(host.to_string()),
            receiving_ip: Some(addr.ip().to_string()),
            reason: Some(reason),
        });
        ctx.sts
            .reports
            .record(&sts.domain, Some(&sts.policy), failure);
    };
    let tls_failure = |e: &SessionError| {
        matches!(e, SessionError::Tls(_) | SessionError::TlsRequired(_)).then(|| {
            (
                super::sts::result_type(e),
                super::sts::reason_code(e).to_string(),
            )
        })
    };
    if !sts.enforced() && !sts.policy.allows(host) {
        report(Some(("validation-failure", "mx-not-in-policy".into())));
        return open_at(ctx, config, dest, mode, addr, host).await;
    }
    match open_at(ctx, config, dest, TlsMode::Verify, addr, host).await {
        Ok(s) => {
            report(None);
            Ok(s)
        }
        Err(e) => match tls_failure(&e) {
            Some(f) => {
                report(Some(f));
                if sts.enforced() {
                    Err(e)
                } else {
                    tracing::info!(site = %dest.key, %host, error = %e, "TLS does not verify (MTA-STS testing: reported, delivered as without a policy)");
                    open_at(ctx, config, dest, mode, addr, host).await
                }
            }
            None => Err(e),
        },
    }
}

/// Opens a session to the first destination address that answers.
pub(super) async fn open(ctx: &ShardCtx, dest: &Dest) -> Result<Session, SessionError> {
    let config = ctx.config();
    let mode = tls_mode(dest.policy().tls);
    let mut last =
        SessionError::Connect(ConnectKind::Other, format!("no address for {}", dest.key));
    let mut tries = 0;
    let hosts: Vec<(String, u16)> = match &dest.hosts {
        Hosts::Route { host, port } => vec![(host.clone(), *port)],
        Hosts::Mx { hosts, port } => {
            // equal preferences in a fresh random order on every open, so
            // that a site's connections spread over them
            let mut hosts = hosts.clone();
            fastrand::shuffle(&mut hosts);
            hosts.sort_by_key(|(p, _)| *p);
            hosts.into_iter().map(|(_, h)| (h, *port)).collect()
        }
    };
    for (host, port) in hosts {
        let addrs = match &dest.hosts {
            Hosts::Route { .. } => ctx.resolver.route(&host, port).await,
            Hosts::Mx { .. } => ctx.resolver.addresses(&host, port).await,
        };
        let addrs = match addrs {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(site = %dest.key, %host, error = %e, "mail host lookup failed");
                last = e;
                continue;
            }
        };
        for addr in addrs {
            // a source reaches addresses of its own IP version only
            if dest
                .source
                .as_ref()
                .is_some_and(|s| s.address.is_ipv4() != addr.is_ipv4())
            {
                continue;
            }
            if tries == MAX_ADDRESSES {
                return Err(last);
            }
            tries += 1;
            match open_sts(ctx, &config, dest, mode, addr, &host).await {
                Ok(s) => return Ok(s),
                // out of sockets, or the source cannot be bound, here: the
                // next address would fail the same
                Err(e @ SessionError::Connect(ConnectKind::Local | ConnectKind::Source, _)) => {
                    return Err(e);
                }
                Err(e) => {
                    tracing::debug!(site = %dest.key, %host, %addr, error = %e, "session failed to open; trying the next address");
                    last = e;
                }
            }
        }
    }
    Err(last)
}

/// Probes a down site: with a slot of the connection budget, opens a
/// session and, when it opens, says QUIT at once. The verdict goes to the
/// site's health (see [`super::health`]); running out of a local resource
/// is no verdict (the slot leaves the budget and the probe comes again).
pub async fn probe(ctx: Arc<ShardCtx>, dest: Arc<Dest>) {
    let mut shutdown = ctx.shutdown.clone();
    let slot = tokio::select! {
        s = ctx.budget.acquire() => s,
        _ = shutdown.wait_for(|stop| *stop) => None,
    };
    let Some(slot) = slot else {
        dest.probe_abandoned();
        return;
    };
    let opened = tokio::select! {
        r = open(&ctx, &dest) => r,
        _ = shutdown.wait_for(|stop| *stop) => {
            dest.probe_abandoned();
            return;
        }
    };
    match opened {
        Ok(session) => {
            dest.opened();
            session.quit().await;
        }
        Err(SessionError::Connect(ConnectKind::Local, e)) => {
            ctx.budget.lower(slot, &e);
            tokio::time::sleep(super::connection::LOCAL_BACKOFF).await;
            dest.probe_abandoned();
        }
        Err(e) => {
            super::connection::observe_error(&ctx, &dest, &e);
            dest.open_failed(&e, &outcome::from_session_error(&e));
        }
    }
}
