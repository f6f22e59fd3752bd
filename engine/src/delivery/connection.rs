//! One SMTP connection of a site: with a slot of the global connection
//! budget, open a session (see [`super::open`]), then take ready messages
//! and send each as a (pipelined) transaction, reporting outcomes.
//!
//! A connection task starts when its site has work (see the shard). It
//! waits for a budget slot first: while it holds one, the shard has up to
//! [`super::dest::READY_PER_CONNECTION`] messages produced for it, so
//! rendered mail exists only shortly before a connection can take it. It
//! sends up to `messages_per_connection` transactions per session, then
//! says QUIT and reopens on the same slot. When another message is ready
//! as one goes out and the connection will go on, the next message's
//! commands go behind it in the same write (see [`Session::send_then`]);
//! should the session end before that next transaction's replies, or its
//! server leave them unanswered, the next message goes back to the site's
//! ready queue untried: what ended the session speaks of the message
//! before it (a site whose server let a streamed transaction time out
//! gets no more of them). It reopens after a broken
//! session while its site has work. It ends when its site has nothing in
//! flight for the idle period, when the site's connection limit was lowered
//! below the connections it has (throttling), when other sites wait for
//! slots and this site holds more than its fair share (or the site's other
//! sources wait for room under its cap: see `site_limits.rs`), at shutdown, or
//! when a session cannot be opened and either other sessions of the site
//! are open (they serve it) or the failure took the site down (every ready
//! message is then deferred with that one decision, see
//! [`super::health`]). A failure to open below that threshold is tried
//! again at once; no recipient is deferred for it. Running out of a local
//! resource (file descriptors, buffers, ports) while connecting takes the
//! slot out of the budget and waits for another: never an outcome. Every
//! reply is fed to the site's throttle. Exposure: talks to remote servers
//! through [`crate::smtp`]; all failures become outcomes.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Ready;
use super::budget::Slot;
use super::dest::Dest;
use super::open::open;
use super::shard::ShardCtx;
use crate::outcome;
use crate::smtp::{ConnectKind, Session, SessionError};

mod transact;

pub use transact::Queue;
pub(super) use transact::observe_error;
use transact::{may_follow, transact};

/// How long a connection waits after running out of a local resource
/// before it asks for a slot again.
pub const LOCAL_BACKOFF: Duration = Duration::from_millis(200);

enum Next {
    Msg(Ready),
    Exit,
}

/// While other sites wait for budget slots, how often a connection without
/// work checks whether its site has any left (it then gives its slot back
/// at once rather than after the idle period).
const IDLE_CHECK: Duration = Duration::from_millis(50);

/// `r`, unless an operator ended every one of its recipients (a cancelled
/// campaign, a bounced domain): their outcomes are then reported, nothing
/// is sent, and `None`.
fn unended(ctx: &ShardCtx, r: Ready) -> Option<Ready> {
    if ctx.endings.none() {
        return Some(r);
    }
    let set = ctx.endings.get();
    let verdicts: Vec<outcome::Outcome> = r
        .works
        .iter()
        .map_while(|(w, _)| set.verdict(&ctx.spool, w))
        .collect();
    if verdicts.len() != r.works.len() {
        return Some(r);
    }
    for ((w, permit), o) in r.works.into_iter().zip(verdicts) {
        let report = super::Report::untried(w, o, String::new(), Some(permit));
        let _ = ctx.recorder.send(report);
    }
    None
}

/// Waits for the next ready message, or decides to close: the site has had
/// nothing in flight for the idle period, or has nothing in flight while
/// other sites wait for a slot of the connection budget (or other sources
/// of the site for room under its cap).
async fn next(ctx: &ShardCtx, dest: &Dest, ready: &Queue) -> Next {
    let ready = &ready.rx;
    let mut shutdown = ctx.shutdown.clone();
    let mut idle_for = Duration::ZERO;
    loop {
        if *shutdown.borrow() {
            return Next::Exit;
        }
        let idle = ctx.config().delivery.timeouts.idle;
        // others wait for a connection: the global budget's slots, or room
        // under this site's cap over its sources
        if ctx.budget.waiting() > 0 || dest.share.others_wait() {
            if dest.in_flight() == 0 && ready.is_empty() {
                return Next::Exit;
            }
            tokio::select! {
                r = ready.recv() => match r {
                    Ok(r) => match unended(ctx, *r) {
                        Some(r) => return Next::Msg(r),
                        None => continue,
                    },
                    Err(_) => return Next::Exit,
                },
                _ = tokio::time::sleep(IDLE_CHECK) => {
                    idle_for += IDLE_CHECK;
                    if idle_for >= idle && dest.in_flight() == 0 {
                        return Next::Exit;
                    }
                }
                _ = shutdown.changed() => return Next::Exit,
            }
            continue;
        }
        tokio::select! {
            r = ready.recv() => match r {
                    Ok(r) => match unended(ctx, *r) {
                        Some(r) => return Next::Msg(r),
                        None => continue,
                    },
                    Err(_) => return Next::Exit,
                },
            _ = tokio::time::sleep(idle) => {
                if dest.in_flight() == 0 {
                    return Next::Exit;
                }
            }
            _ = shutdown.changed() => return Next::Exit,
        }
    }
}

/// Leaves the pool if more connections run than the site's current limit
/// allows; true when this connection should close (it is then no longer
/// counted).
fn surplus(dest: &Dest) -> bool {
    // a site cap lowered by a reload below the connections of all sources
    let max = if dest.share.over_cap() {
        dest.conn_tasks.load(Ordering::Acquire).saturating_sub(1)
    } else {
        dest.max_conns()
    };
    let out = dest
        .conn_tasks
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |l| {
            (l > max).then(|| l - 1)
        })
        .is_ok();
    if out {
        dest.share.remove();
    }
    out
}

/// Runs one connection task until it ends. The caller has already counted
/// it in `dest.conn_tasks`; `first` is a budget slot the caller already
/// holds for it (the shard waits for its site's first connection's slot
/// itself, so a site waiting for one costs no task).
pub async fn run(ctx: Arc<ShardCtx>, dest: Arc<Dest>, ready: Queue, first: Option<Slot>) {
    dest.want_slot(&ctx.budget);
    let counted = serve(&ctx, &dest, &ready, first).await;
    dest.unwant_slot(&ctx.budget);
    if counted {
        dest.conn_tasks.fetch_sub(1, Ordering::AcqRel);
        dest.share.remove();
    }
    ctx.stats.connection_tasks.fetch_sub(1, Ordering::AcqRel);
    // the shard starts another if its site still has work
    dest.wake.notify_one();
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

/// What became of an attempt to open a session.
enum Opening {
    Open(Box<Session>),
    /// Failed below the site's down threshold: try again.
    Again,
    /// Out of a local resource: give the slot back and wait for another.
    Local(String),
    /// The task ends: shutdown, the site is down, or other sessions serve
    /// it.
    End,
}

/// Opens a session. A failure counts toward the site being down when no
/// other session of the site is open; once the site is down, the ready
/// messages are deferred with that decision (the shard defers the rest of
/// its queue).
async fn open_session(ctx: &ShardCtx, dest: &Dest, ready: &Queue) -> Opening {
    if dest.is_down() {
        return Opening::End;
    }
    // opening waits for the remote server; a shutdown does not
    let mut shutdown = ctx.shutdown.clone();
    let opened = tokio::select! {
        r = open(ctx, dest) => r,
        _ = shutdown.wait_for(|stop| *stop) => return Opening::End,
    };
    let e = match opened {
        Ok(session) => {
            dest.sessions.fetch_add(1, Ordering::AcqRel);
            ctx.metrics.connections.inc();
            dest.m.connections.inc();
            dest.m.session_opened(session.caps().tls);
            dest.opened();
            return Opening::Open(Box::new(session));
        }
        Err(SessionError::Connect(ConnectKind::Local, e)) => return Opening::Local(e),
        Err(e) => e,
    };
    observe_error(ctx, dest, &e);
    if dest.sessions.load(Ordering::Acquire) > 0 {
        // other sessions serve the site, so it is up: leave the rest to
        // them (a refusal here is often "too many connections")
        tracing::debug!(site = %dest.key, error = %e, "cannot open another session; this connection closes");
        return Opening::End;
    }
    dest.open_failed(&e, &outcome::from_session_error(&e));
    if !dest.is_down() {
        tracing::debug!(site = %dest.key, error = %e, "cannot open a session; trying again");
        return Opening::Again;
    }
    // the site is down: what is ready goes with this decision
    while let Ok(r) = ready.rx.try_recv() {
        dest.defer_ready(ctx, *r);
    }
    Opening::End
}

/// Serves the site with budget slots until the task ends; returns whether
/// the task is still counted in `dest.conn_tasks` (a surplus connection
/// took itself out).
async fn serve(ctx: &ShardCtx, dest: &Dest, ready: &Queue, mut first: Option<Slot>) -> bool {
    let mut shutdown = ctx.shutdown.clone();
    loop {
        let slot = match first.take() {
            // the shard waited for it (a site's first connection)
            Some(s) => Some(s),
            None => tokio::select! {
                s = ctx.budget.acquire() => s,
                _ = shutdown.wait_for(|stop| *stop) => None,
            },
        };
        let Some(slot) = slot else { return true };
        let held = dest.hold_slot();
        let ended = on_slot(ctx, dest, ready, slot).await;
        drop(held);
        match ended {
            SlotEnd::Wait => tokio::time::sleep(LOCAL_BACKOFF).await,
            SlotEnd::Task(counted) => return counted,
        }
    }
}

/// How serving with one slot ended.
enum SlotEnd {
    /// The slot left the budget (out of a local resource): wait, then ask
    /// for another.
    Wait,
    /// The task ends (still counted or not).
    Task(bool),
}

/// Opens sessions on `slot` and serves them until the task ends or the
/// slot is lost.
async fn on_slot(ctx: &ShardCtx, dest: &Dest, ready: &Queue, slot: Slot) -> SlotEnd {
    loop {
        let session = match open_session(ctx, dest, ready).await {
            Opening::Open(s) => *s,
            Opening::Again => continue,
            Opening::Local(e) => {
                ctx.budget.lower(slot, &e);
                return SlotEnd::Wait;
            }
            Opening::End => return SlotEnd::Task(true),
        };
        match serve_session(ctx, dest, ready, session).await {
            Ended::Reopen => {}
            Ended::Done { counted } => return SlotEnd::Task(counted),
        }
    }
}

/// How a session ended.
enum Ended {
    /// Open another on the same slot (the per-connection limit was reached
    /// or the session broke while the site has work).
    Reopen,
    Done {
        counted: bool,
    },
}

/// Sends ready messages on an open session until it ends.
async fn serve_session(ctx: &ShardCtx, dest: &Dest, ready: &Queue, session: Session) -> Ended {
    let mut open = Open { session, sent: 0 };
    // a message whose commands went out behind the last one: sent next
    let mut ahead: Option<Ready> = None;
    loop {
        let msg = match ahead.take() {
            Some(m) => m,
            None => {
                if surplus(dest) {
                    tracing::debug!(site = %dest.key, "closing a connection: the site's connection limit was lowered");
                    close(ctx, dest, open, true).await;
                    return Ended::Done { counted: false };
                }
                match next(ctx, dest, ready).await {
                    Next::Msg(m) => m,
                    Next::Exit => {
                        close(ctx, dest, open, true).await;
                        return Ended::Done { counted: true };
                    }
                }
            }
        };
        // the next message may follow this one if the session goes on;
        // taken, it frees its place among the messages produced ahead, so
        // the one after it is rendered while this transaction runs (one
        // more message per streaming connection)
        let follow = if may_follow(ctx, dest, &open) {
            ready.rx.try_recv().ok().and_then(|mut m| {
                drop(m.ticket.take());
                unended(ctx, *m)
            })
        } else {
            None
        };
        let (alive, followed) = transact(ctx, dest, &mut open, msg, follow.as_ref(), ready).await;
        match follow {
            // its commands are out: it is the next transaction
            Some(m) if alive && followed => ahead = Some(m),
            // not sent ahead, or the session ended: back, untried
            Some(m) => ready.give_back(m),
            None => {}
        }
        if !alive {
            close(ctx, dest, open, false).await;
            return if dest.in_flight() > 0 {
                Ended::Reopen
            } else {
                Ended::Done { counted: true }
            };
        }
        if ahead.is_some() {
            continue;
        }
        if open.sent >= dest.policy().messages_per_connection {
            close(ctx, dest, open, true).await;
            // under a site cap over its sources, the room goes round
            return if dest.share.others_wait() {
                Ended::Done { counted: true }
            } else {
                Ended::Reopen
            };
        }
        if dest
            .share
            .should_yield(dest.conn_tasks.load(Ordering::Acquire))
        {
            tracing::debug!(site = %dest.key, "closing a connection: the site's other sources wait for room under its cap");
            close(ctx, dest, open, true).await;
            return Ended::Done { counted: true };
        }
        if ctx
            .budget
            .should_yield(dest.slotted.load(Ordering::Acquire))
        {
            tracing::debug!(site = %dest.key, "closing a connection: other sites wait for the connection budget");
            close(ctx, dest, open, true).await;
            return Ended::Done { counted: true };
        }
    }
}
