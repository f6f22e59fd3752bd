//! One SMTP connection of a shard: take ready messages, open (or reopen) a
//! session, send each message as a (pipelined) transaction, report outcomes.
//!
//! A connection opens lazily when it has a message, reconnects after a
//! session error, and closes (QUIT) when its shard has nothing in flight for
//! the idle period or at shutdown. When a session cannot be opened, the
//! message in hand and every message already ready are deferred (or bounced,
//! for a permanent refusal) with that failure. Exposure: talks to remote
//! servers through [`super::smtp`]; all failures become outcomes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::shard::{Dest, ShardCtx};
use super::smtp::{Session, SessionError, client};
use super::{Ready, Report};
use crate::outcome::{self, Outcome};

fn report(ctx: &ShardCtx, r: Ready, outcome: Outcome) {
    let _ = ctx.recorder.send(Report {
        work: r.work,
        outcome,
        subject: r.msg.subject,
        at_ms: volley_spool::now_ms(),
        permit: Some(r.permit),
    });
}

/// Opens a session to the first destination address that answers.
async fn open(ctx: &ShardCtx, dest: &Dest) -> Result<Session, SessionError> {
    let targets: Vec<(SocketAddr, String)> = ctx
        .resolver
        .resolve(&dest.domain, dest.route.as_ref())
        .await?;
    let mut last = SessionError::Connect(format!("no address for {}", dest.domain));
    for (addr, name) in targets {
        match client::open(
            addr,
            &ctx.config.delivery.helo,
            &ctx.tls,
            &name,
            &ctx.timeouts,
        )
        .await
        {
            Ok(s) => return Ok(s),
            Err(e) => {
                tracing::debug!(domain = %dest.domain, %addr, error = %e, "session failed to open");
                last = e;
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
        tokio::select! {
            r = ready.recv() => return match r { Ok(r) => Next::Msg(r), Err(_) => Next::Exit },
            _ = tokio::time::sleep(ctx.idle) => {
                if dest.in_flight() == 0 {
                    return Next::Exit;
                }
            }
            _ = shutdown.changed() => return Next::Exit,
        }
    }
}

/// Runs one connection until it is idle, closed or shut down. The caller
/// has already counted it in `dest.live`.
pub async fn run(ctx: Arc<ShardCtx>, dest: Arc<Dest>, ready: async_channel::Receiver<Ready>) {
    serve(&ctx, &dest, &ready).await;
    ctx.stats.connection_tasks.fetch_sub(1, Ordering::AcqRel);
}

async fn serve(ctx: &Arc<ShardCtx>, dest: &Arc<Dest>, ready: &async_channel::Receiver<Ready>) {
    let (ctx, dest) = (&**ctx, &**dest);
    let mut session: Option<Session> = None;
    loop {
        let msg = match next(ctx, dest, ready).await {
            Next::Msg(m) => m,
            Next::Exit => {
                // Leave; but if work was dispatched while deciding and no
                // other connection is left to serve it, stay.
                dest.live.fetch_sub(1, Ordering::AcqRel);
                if !*ctx.shutdown.borrow()
                    && !ready.is_closed()
                    && dest.in_flight() > 0
                    && dest
                        .live
                        .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                {
                    continue;
                }
                break;
            }
        };
        if session.is_none() {
            // opening waits for the remote server; a shutdown does not
            let mut shutdown = ctx.shutdown.clone();
            let opened = tokio::select! {
                r = open(ctx, dest) => Some(r),
                _ = shutdown.wait_for(|stop| *stop) => None,
            };
            let Some(opened) = opened else {
                drop(msg); // stays queued in the spool
                break;
            };
            match opened {
                Ok(s) => {
                    ctx.stats.connections.fetch_add(1, Ordering::Relaxed);
                    ctx.metrics.connections.inc();
                    session = Some(s);
                }
                Err(e) => {
                    let outcome = outcome::from_session_error(&e);
                    tracing::info!(domain = %dest.domain, error = %e, "cannot open a session; deferring ready messages");
                    report(ctx, msg, outcome.clone());
                    while let Ok(r) = ready.try_recv() {
                        report(ctx, r, outcome.clone());
                    }
                    continue;
                }
            }
        }
        let Some(s) = session.as_mut() else { continue };
        ctx.metrics.attempts.inc();
        let rcpt = [msg.msg.rcpt.as_str()];
        match s.send(&msg.msg.mail_from, &rcpt, &msg.msg.data).await {
            Ok(replies) => {
                let outcome = replies
                    .first()
                    .map(|(phase, reply)| outcome::from_reply(*phase, reply))
                    .unwrap_or_else(|| {
                        outcome::from_session_error(&SessionError::Protocol(
                            client::Phase::Rcpt,
                            "no reply".into(),
                        ))
                    });
                report(ctx, msg, outcome);
            }
            Err(e) => {
                tracing::debug!(domain = %dest.domain, error = %e, "session failed");
                report(ctx, msg, outcome::from_session_error(&e));
                session = None;
                ctx.stats.connections.fetch_sub(1, Ordering::Relaxed);
                ctx.metrics.connections.dec();
            }
        }
    }
    if let Some(s) = session {
        s.quit().await;
        ctx.stats.connections.fetch_sub(1, Ordering::Relaxed);
        ctx.metrics.connections.dec();
    }
}
