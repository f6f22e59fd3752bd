//! One SMTP connection of a site: take ready messages, open (or reopen) a
//! session, send each message as a (pipelined) transaction, report outcomes.
//!
//! A connection opens lazily when it has a message: to the route, or to the
//! site's MX hosts by preference, equal preferences in random order (each
//! host's addresses in turn, the next on any failure, at most
//! [`MAX_ADDRESSES`] tries). With `tls = "opportunistic"` a
//! failed TLS handshake is retried once in plain text on the same address.
//! It sends up to `messages_per_connection` transactions per session, then
//! says QUIT and reopens; it reconnects after a session error; it closes
//! when its site has nothing in flight for the idle period, when the site's
//! connection limit was lowered below the connections open (throttling), or
//! at shutdown. When a session cannot be opened, the message in hand gets
//! that failure's outcome. If other sessions of the site are open, this
//! connection closes and leaves them the rest; if none is, the failure
//! counts toward the site being down (see [`super::health`]), and once it
//! is, every ready message is deferred with that one decision and the
//! connection closes. No session is opened for a down site except by a
//! [`probe`]. Every reply is fed to the site's throttle. Exposure: talks to
//! remote servers through [`crate::smtp`]; all failures become outcomes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::Ready;
use super::dest::Dest;
use super::shard::ShardCtx;
use super::site::Hosts;
use crate::config::{Config, TlsPolicy};
use crate::outcome::{self, Outcome};
use crate::smtp::{ConnectKind, Session, SessionError, Timeouts, TlsMode, client};

/// Most addresses one attempt to open a session tries.
pub const MAX_ADDRESSES: usize = 8;

fn tls_mode(p: TlsPolicy) -> TlsMode {
    match p {
        TlsPolicy::Required => TlsMode::Required,
        TlsPolicy::Opportunistic => TlsMode::Opportunistic,
        TlsPolicy::Disabled => TlsMode::Disabled,
    }
}

/// Opens a session at one address (plain-text retry for opportunistic TLS).
async fn open_at(
    ctx: &ShardCtx,
    config: &Config,
    mode: TlsMode,
    addr: SocketAddr,
    name: &str,
) -> Result<Session, SessionError> {
    let t = Timeouts::from(&config.delivery.timeouts);
    let helo = &config.delivery.helo;
    match client::open(addr, helo, &ctx.tls, mode, name, &t).await {
        Err(SessionError::Tls(e)) if mode == TlsMode::Opportunistic => {
            tracing::info!(%addr, error = %e, "TLS handshake failed; retrying in plain text (tls = \"opportunistic\")");
            client::open(addr, helo, &ctx.tls, TlsMode::Disabled, name, &t).await
        }
        r => r,
    }
}

/// Opens a session to the first destination address that answers.
async fn open(ctx: &ShardCtx, dest: &Dest) -> Result<Session, SessionError> {
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
            if tries == MAX_ADDRESSES {
                return Err(last);
            }
            tries += 1;
            match open_at(ctx, &config, mode, addr, &host).await {
                Ok(s) => return Ok(s),
                Err(e) => {
                    tracing::debug!(site = %dest.key, %host, %addr, error = %e, "session failed to open; trying the next address");
                    last = e;
                }
            }
        }
    }
    Err(last)
}

enum Next {
    Msg(Ready),
    Exit,
}

/// Waits for the next ready message, or decides to close.
async fn next(ctx: &ShardCtx, dest: &Dest, ready: &async_channel::Receiver<Ready>) -> Next {
    let mut shutdown = ctx.shutdown.clone();
    loop {
        if *shutdown.borrow() {
            return Next::Exit;
        }
        let idle = ctx.config().delivery.timeouts.idle;
        tokio::select! {
            r = ready.recv() => return match r { Ok(r) => Next::Msg(r), Err(_) => Next::Exit },
            _ = tokio::time::sleep(idle) => {
                if dest.in_flight() == 0 {
                    return Next::Exit;
                }
            }
            _ = shutdown.changed() => return Next::Exit,
        }
    }
}

/// Leaves the pool if more connections are open than the site's current
/// limit allows; true when this connection should close.
fn surplus(dest: &Dest) -> bool {
    let max = dest.max_conns();
    dest.conn_tasks
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |l| {
            (l > max).then(|| l - 1)
        })
        .is_ok()
}

/// Leaves the pool (no message to serve); true when it must stay after
/// all: work was dispatched while it decided and no other connection is
/// left to serve it.
fn leave_or_stay(ctx: &ShardCtx, dest: &Dest, ready: &async_channel::Receiver<Ready>) -> bool {
    dest.conn_tasks.fetch_sub(1, Ordering::AcqRel);
    !*ctx.shutdown.borrow()
        && !ready.is_closed()
        && !dest.is_down()
        && dest.in_flight() > 0
        && dest
            .conn_tasks
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
}

/// Runs one connection until it is idle, closed or shut down. The caller
/// has already counted it in `dest.conn_tasks`.
pub async fn run(ctx: Arc<ShardCtx>, dest: Arc<Dest>, ready: async_channel::Receiver<Ready>) {
    serve(&ctx, &dest, &ready).await;
    ctx.stats.connection_tasks.fetch_sub(1, Ordering::AcqRel);
}

/// Probes a down site: opens a session and, when it opens, says QUIT at
/// once. The verdict goes to the site's health (see [`super::health`]).
pub async fn probe(ctx: Arc<ShardCtx>, dest: Arc<Dest>) {
    let mut shutdown = ctx.shutdown.clone();
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
        Err(e) => {
            observe_error(&ctx, &dest, &e);
            dest.open_failed(&e, &outcome::from_session_error(&e));
        }
    }
}

/// An open session and how many transactions it has carried.
struct Open {
    session: Session,
    sent: u32,
}

async fn close(ctx: &ShardCtx, dest: &Dest, open: Open, quit: bool) {
    if quit {
        open.session.quit().await;
    }
    dest.sessions.fetch_sub(1, Ordering::AcqRel);
    ctx.metrics.connections.dec();
    dest.m.connections.dec();
}

/// What became of an attempt to open a session for a message.
enum Opening {
    /// The session is open; send the message on it.
    Open(Box<(Open, Ready)>),
    /// It failed and the message got the failure's outcome; try again with
    /// the next message.
    Again,
    /// This connection leaves (it has left the site's count already).
    Leave,
    /// Shutting down while opening (the message stays queued in the spool).
    Shutdown,
}

/// Opens a session for `msg`. A failure is the message's outcome and, when
/// no other session of the site is open, counts toward the site being
/// down; once the site is down, the ready messages are deferred with it
/// and the connection leaves (the shard defers the rest of the queue).
async fn open_for(
    ctx: &ShardCtx,
    dest: &Dest,
    msg: Ready,
    ready: &async_channel::Receiver<Ready>,
) -> Opening {
    if dest.is_down() {
        dest.defer_ready(ctx, msg);
        dest.conn_tasks.fetch_sub(1, Ordering::AcqRel);
        return Opening::Leave;
    }
    // opening waits for the remote server; a shutdown does not
    let mut shutdown = ctx.shutdown.clone();
    let opened = tokio::select! {
        r = open(ctx, dest) => r,
        _ = shutdown.wait_for(|stop| *stop) => return Opening::Shutdown,
    };
    let e = match opened {
        Ok(session) => {
            dest.sessions.fetch_add(1, Ordering::AcqRel);
            ctx.metrics.connections.inc();
            dest.m.connections.inc();
            dest.m.session_opened(session.caps().tls);
            dest.opened();
            return Opening::Open(Box::new((Open { session, sent: 0 }, msg)));
        }
        Err(e) => e,
    };
    observe_error(ctx, dest, &e);
    let outcome = outcome::from_session_error(&e);
    dest.report(ctx, msg, std::slice::from_ref(&outcome));
    if dest.sessions.load(Ordering::Acquire) > 0 {
        // other sessions serve the site, so it is up: leave the rest to
        // them (a refusal here is often "too many connections")
        tracing::debug!(site = %dest.key, error = %e, "cannot open another session; this connection closes");
        dest.conn_tasks.fetch_sub(1, Ordering::AcqRel);
        return Opening::Leave;
    }
    dest.open_failed(&e, &outcome);
    if !dest.is_down() {
        tracing::debug!(site = %dest.key, error = %e, "cannot open a session");
        return Opening::Again;
    }
    // the site is down: what is ready goes with this decision
    while let Ok(r) = ready.try_recv() {
        dest.defer_ready(ctx, r);
    }
    dest.conn_tasks.fetch_sub(1, Ordering::AcqRel);
    Opening::Leave
}

async fn serve(ctx: &Arc<ShardCtx>, dest: &Arc<Dest>, ready: &async_channel::Receiver<Ready>) {
    let (ctx, dest) = (&**ctx, &**dest);
    let mut session: Option<Open> = None;
    loop {
        if surplus(dest) {
            tracing::debug!(site = %dest.key, "closing a connection: the site's connection limit was lowered");
            if let Some(o) = session.take() {
                close(ctx, dest, o, true).await;
            }
            return;
        }
        let msg = match next(ctx, dest, ready).await {
            Next::Msg(m) => m,
            Next::Exit if leave_or_stay(ctx, dest, ready) => continue,
            Next::Exit => break,
        };
        let per_connection = dest.policy().messages_per_connection;
        if let Some(o) = session.take_if(|o| o.sent >= per_connection) {
            close(ctx, dest, o, true).await;
        }
        let (mut open, msg) = match session.take() {
            Some(o) => (o, msg),
            None => match open_for(ctx, dest, msg, ready).await {
                Opening::Open(opened) => *opened,
                Opening::Again => continue,
                Opening::Leave => return,
                Opening::Shutdown => break,
            },
        };
        if transact(ctx, dest, &mut open, msg).await {
            session = Some(open);
        } else {
            close(ctx, dest, open, false).await;
        }
    }
    if let Some(o) = session {
        close(ctx, dest, o, true).await;
    }
}

/// Sends one message on an open session and reports its outcomes; false
/// when the session cannot carry another transaction.
async fn transact(ctx: &ShardCtx, dest: &Dest, o: &mut Open, msg: Ready) -> bool {
    ctx.metrics.attempts.inc();
    dest.m.attempts.inc();
    o.sent += 1;
    let started = Instant::now();
    let rcpts: Vec<&str> = msg.msg.rcpts.iter().map(String::as_str).collect();
    let result = o
        .session
        .send(&msg.msg.mail_from, &rcpts, &msg.msg.data)
        .await;
    ctx.metrics
        .transaction_latency
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(replies) => {
            let outcomes = classify(ctx, dest, &replies, msg.works.len());
            dest.report(ctx, msg, &outcomes);
            match o.session.take_broken() {
                Some(e) => {
                    // the transaction was decided; the session is not reusable
                    tracing::debug!(site = %dest.key, error = %e, "session ended after a decided transaction");
                    observe_error(ctx, dest, &e);
                    false
                }
                None => true,
            }
        }
        Err(e) => {
            tracing::debug!(site = %dest.key, error = %e, "session failed");
            observe_error(ctx, dest, &e);
            dest.report(ctx, msg, &[outcome::from_session_error(&e)]);
            false
        }
    }
}

/// One outcome per recipient from a transaction's replies, feeding the
/// site's throttle once: its first throttling reply, else a clean one.
fn classify(
    ctx: &ShardCtx,
    dest: &Dest,
    replies: &[crate::smtp::session::RcptReply],
    recipients: usize,
) -> Vec<Outcome> {
    let config = ctx.config();
    let patterns = &config.delivery.throttle_patterns;
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(replies.len());
    let mut signal = None;
    for (i, (phase, reply)) in replies.iter().enumerate() {
        if signal.is_none() && outcome::is_throttle(reply, patterns) {
            signal = Some(reply);
        }
        // accepted recipients share one reply: classify it once
        let same = i > 0 && replies[i - 1].0 == *phase && replies[i - 1].1 == *reply;
        let o = match outcomes.last() {
            Some(prev) if same => prev.clone(),
            _ => outcome::from_reply(*phase, reply),
        };
        outcomes.push(o);
    }
    dest.observe(signal.or(replies.last().map(|r| &r.1)), signal.is_some());
    if outcomes.len() != recipients {
        outcomes = vec![outcome::from_session_error(&SessionError::Protocol(
            crate::smtp::Phase::Rcpt,
            "no reply for a recipient".into(),
        ))];
    }
    outcomes
}

/// Feeds a session failure that carries a reply (e.g. 421 at greeting) to
/// the site's throttle.
fn observe_error(ctx: &ShardCtx, dest: &Dest, e: &SessionError) {
    if let SessionError::Refused(_, reply) = e {
        let patterns = &ctx.config().delivery.throttle_patterns;
        dest.observe(Some(reply), outcome::is_throttle(reply, patterns));
    }
}
