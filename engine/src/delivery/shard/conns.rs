//! A shard's connections: how many its site's work wants, and starting
//! their tasks. The first connection's budget slot is waited for by the
//! shard itself (a site waiting for a slot costs no task); further ones
//! wait for their slots in their own tasks. No shard starts a connection
//! past its site's cap over all sources (`site_limits.rs`). Exposure: none
//! (internal).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::super::budget::Slot;
use super::super::connection;
use super::Shard;

impl Shard {
    /// Starts connection tasks while the site has work for more: one when
    /// anything is queued or in flight, more as the messages in flight
    /// grow, up to the site's connection limit.
    pub(super) fn ensure_connections(&mut self) {
        let dest = &self.dest;
        let in_flight = dest.in_flight();
        let wanted = if self.queue.len > 0 {
            in_flight.max(1)
        } else {
            in_flight.min(1)
        }
        .min(dest.max_conns());
        if wanted <= dest.conn_tasks.load(Ordering::Acquire) {
            dest.share.set_waiting(&mut self.cap_waiting, false);
            return;
        }
        if dest.conn_tasks.load(Ordering::Acquire) == 0 {
            // the site's other sources may have all the connections its
            // cap allows (or others wait before this one): the shard waits
            // for one to end
            if self.acquiring.is_none() {
                let room = dest.share.has_room() && (self.cap_waiting || !dest.share.others_wait());
                if room {
                    dest.want_slot(&self.ctx.budget);
                    let budget = Arc::clone(&self.ctx.budget);
                    self.acquiring = Some(Box::pin(async move { budget.acquire().await }));
                } else {
                    dest.share.set_waiting(&mut self.cap_waiting, true);
                }
            }
            return;
        }
        while self.dest.conn_tasks.load(Ordering::Acquire) < wanted {
            if !self.start_connection(None) {
                break;
            }
        }
    }

    /// The slot for the site's first connection came: its task starts on
    /// it (the shard's own "wanting" ends; the task's begins).
    pub(super) fn first_connection(&mut self, slot: Option<Slot>) {
        if let Some(slot) = slot {
            // refused when the site's cap was reached meanwhile: the
            // slot then goes back to the budget
            self.start_connection(Some(slot));
        }
        self.dest.unwant_slot(&self.ctx.budget);
    }

    /// Starts one connection task (on `slot`, or waiting for one), if
    /// the site-wide cap leaves room; whether it did.
    fn start_connection(&mut self, slot: Option<Slot>) -> bool {
        let share = Arc::clone(&self.dest.share);
        if !share.try_add(self.cap_waiting) {
            share.set_waiting(&mut self.cap_waiting, true);
            return false;
        }
        share.set_waiting(&mut self.cap_waiting, false);
        self.dest.conn_tasks.fetch_add(1, Ordering::AcqRel);
        self.ctx
            .stats
            .connection_tasks
            .fetch_add(1, Ordering::AcqRel);
        tokio::spawn(connection::run(
            Arc::clone(&self.ctx),
            Arc::clone(&self.dest),
            connection::Queue {
                rx: self.ready_rx.clone(),
                back: self.ready_tx.downgrade(),
            },
            slot,
        ));
        true
    }
}
