//! One transaction of a connection: the message taken, the next one sent
//! behind it when the connection goes on ([`may_follow`]), the outcomes
//! per recipient classified and reported, and the site's queue that takes
//! back a message sent ahead but never tried ([`Queue`]). Exposure:
//! replies from remote servers, classified by [`crate::outcome`].

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::Open;
use crate::delivery::Ready;
use crate::delivery::dest::Dest;
use crate::delivery::shard::ShardCtx;
use crate::outcome::{self, Outcome};
use crate::smtp::SessionError;
use crate::smtp::session::Follow;

/// The site's ready messages: taken from `rx`; a message taken but not
/// tried goes back through `back` (weak: the queue closes when the shard
/// ends, whatever its connections hold).
pub struct Queue {
    pub rx: crate::delivery::ReadyRx,
    pub back: async_channel::WeakSender<Box<Ready>>,
}

impl Queue {
    /// Gives `msg` back untried (dropped, as everything still queued,
    /// when the shard is gone).
    pub(super) fn give_back(&self, msg: Ready) {
        if let Some(tx) = self.back.upgrade() {
            let _ = tx.try_send(Box::new(msg));
        }
    }
}

/// Whether the message after the one going out may be taken and sent
/// behind it: the session streams and carries another transaction, and
/// nothing asks this connection to stop (shutdown, a lowered connection
/// limit, other sites waiting for the budget) before it.
pub(super) fn may_follow(ctx: &ShardCtx, dest: &Dest, o: &Open) -> bool {
    o.session.caps().pipelining
        && dest.streams.load(Ordering::Acquire)
        && o.sent + 1 < dest.policy().messages_per_connection
        && !*ctx.shutdown.borrow()
        && dest.conn_tasks.load(Ordering::Acquire) <= dest.max_conns()
        && !dest
            .share
            .should_yield(dest.conn_tasks.load(Ordering::Acquire))
        && !ctx
            .budget
            .should_yield(dest.slotted.load(Ordering::Acquire))
}

/// Whether `e` is a server leaving a transaction sent ahead unanswered
/// (it closed, or said nothing in time, before its first reply).
fn unanswered(e: &SessionError) -> bool {
    matches!(
        e,
        SessionError::Closed(crate::smtp::Phase::Mail)
            | SessionError::Timeout(crate::smtp::Phase::Mail)
    )
}

/// Sends one message on an open session, with `follow`'s commands behind
/// it when the session allows, and reports its outcomes. Returns whether
/// the session can carry another transaction and whether `follow`'s
/// commands went out (it must then be the next transaction). A message
/// whose commands went out ahead and got no reply at all goes back to
/// `ready` untried; when the server said nothing in time (it may drop
/// commands sent early), the site streams no more.
pub(super) async fn transact(
    ctx: &ShardCtx,
    dest: &Dest,
    o: &mut Open,
    msg: Ready,
    follow: Option<&Ready>,
    ready: &Queue,
) -> (bool, bool) {
    let announced = o.session.announced();
    // taken: the shard may produce the next message for this connection
    let mut msg = msg;
    drop(msg.ticket.take());
    o.sent += 1;
    let started = Instant::now();
    let rcpts: Vec<&str> = msg.msg.rcpts.iter().map(String::as_str).collect();
    let next_rcpts: Vec<&str> = follow
        .map(|f| f.msg.rcpts.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let next = follow.map(|f| Follow {
        from: &f.msg.mail_from,
        rcpts: &next_rcpts,
        len: f.msg.data.len(),
    });
    let result = o
        .session
        .send_then(&msg.msg.mail_from, &rcpts, &msg.msg.data.parts(), next)
        .await;
    if let Err(e) = &result
        && announced
        && unanswered(e)
    {
        if matches!(e, SessionError::Timeout(_)) {
            // it may drop what it gets early: no more streaming to it
            tracing::info!(site = %dest.key, error = %e, "the server left a transaction sent ahead unanswered: its message goes back untried, and the site's messages go out without the next one's commands behind them");
            dest.streams.store(false, Ordering::Release);
        } else {
            tracing::debug!(site = %dest.key, error = %e, "the session ended before a transaction sent ahead was answered; its message goes back untried");
        }
        ready.give_back(msg);
        return (false, false);
    }
    ctx.metrics.attempts.inc();
    dest.m.attempts.inc();
    ctx.metrics
        .transaction_latency
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok((replies, followed)) => {
            let outcomes = classify(ctx, dest, &replies, msg.works.len());
            dest.report(ctx, msg, &outcomes);
            match o.session.take_broken() {
                Some(e) => {
                    // the transaction was decided; the session is not reusable
                    tracing::debug!(site = %dest.key, error = %e, "session ended after a decided transaction");
                    observe_error(ctx, dest, &e);
                    (false, followed)
                }
                None => (true, followed),
            }
        }
        Err(e) => {
            tracing::debug!(site = %dest.key, error = %e, "session failed");
            observe_error(ctx, dest, &e);
            dest.report(ctx, msg, &[outcome::from_session_error(&e)]);
            (false, false)
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
pub(in crate::delivery) fn observe_error(ctx: &ShardCtx, dest: &Dest, e: &SessionError) {
    if let SessionError::Refused(_, reply) = e {
        let patterns = &ctx.config().delivery.throttle_patterns;
        dest.observe(Some(reply), outcome::is_throttle(reply, patterns));
    }
}
