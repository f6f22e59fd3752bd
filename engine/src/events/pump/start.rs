//! How a pump starts and retries: the position it publishes from (a
//! stored cursor, with the sink resumed at its state, or a first cursor
//! stored before anything is published), and the back-off with which it
//! retries a failing sink or cursor.

use std::time::Duration;

use volley_spool::Cursor;

use super::PumpCtx;
use crate::events::sink::NotificationSink;

/// The longest pause between tries of a failing sink or cursor.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Calls `f` until it succeeds, pausing 100 ms, then twice as long each
/// time up to [`MAX_BACKOFF`], and calling `waiting` about four times a
/// second while it pauses. Gives up (false) when the pump is stopping and
/// a pause has reached the longest (a destination's pump: at once).
pub(super) fn retry<E: std::fmt::Display>(
    ctx: &PumpCtx,
    what: &str,
    mut f: impl FnMut() -> Result<(), E>,
    mut waiting: impl FnMut(),
) -> bool {
    let mut delay = Duration::from_millis(100);
    loop {
        match f() {
            Ok(()) => return true,
            Err(e) => tracing::error!(error = %e, "{what}; retrying"),
        }
        // a destination gives up at once when stopping (it resumes from
        // its cursor at the next start); the events file tries on
        if ctx.stopping() && (delay >= MAX_BACKOFF || ctx.select.is_some()) {
            return false;
        }
        let mut left = delay;
        let give_up_now = || ctx.stopping() && ctx.select.is_some();
        while !left.is_zero() && !give_up_now() {
            let step = left.min(Duration::from_millis(250));
            std::thread::sleep(step);
            left -= step;
            waiting();
        }
        delay = (delay * 2).min(MAX_BACKOFF);
    }
}

/// The position to publish from, with a stored cursor for it: the stored
/// cursor (the sink resumed at its state), or a first one stored now.
/// `None` when the pump is stopping before it has one.
pub(super) fn starting_cursor(ctx: &PumpCtx, sink: &mut dyn NotificationSink) -> Option<u64> {
    let spool = &ctx.spool;
    let stored = spool.cursor(sink.name()).filter(|c| {
        let ours = c.position <= spool.journal_end();
        if !ours {
            // not a cursor of this journal: append, do not cut the sink back
            tracing::warn!(
                cursor = c.position,
                end = spool.journal_end(),
                "sink cursor is past the journal end; publishing from the oldest entry kept"
            );
        }
        ours
    });
    if let Some(c) = stored {
        // the sink goes back to its state at the cursor (undoing output
        // written after it)
        let resumed = retry(
            ctx,
            "sink cannot resume",
            || sink.resume(c.sink_state),
            || {},
        );
        return resumed.then_some(c.position);
    }
    // no cursor yet: store one before the first publish, so that a crash
    // right after it finds where the sink stood
    let first = Cursor {
        position: ctx.start_at.min(spool.journal_end()),
        sink_state: sink.state(),
    };
    let name = sink.name().to_string();
    let stored = retry(
        ctx,
        "cannot store the first sink cursor (no event is published before it is)",
        || spool.set_cursor(&name, first),
        || {},
    );
    stored.then_some(first.position)
}
