//! A shard's part in the operators' holds ([`crate::delivery::holds`]):
//! whether its site is held, whether a recipient's domain or campaign is,
//! what it set aside and puts back when released, and its share of
//! `volley_held_recipients`; and what it gives back when a domain is
//! rerouted; and which recipients it holds an operator ended
//! ([`crate::delivery::endings`]). Exposure: none (internal).

use super::{Shard, ShardIn, Work};

impl Shard {
    /// Keeps `volley_held_recipients` current with this shard's share:
    /// what it set aside, and its queue while the site is held.
    pub(super) fn count_held(&mut self) {
        let held = self.parked.len() as i64
            + if self.site_held() {
                self.queue.len as i64
            } else {
                0
            };
        if held != self.held_counted {
            self.ctx
                .metrics
                .held_recipients
                .inc_by(held - self.held_counted);
            self.held_counted = held;
        }
    }

    /// Whether an operator holds this whole site (or the service drains).
    pub(super) fn site_held(&self) -> bool {
        self.ctx.draining.load(std::sync::atomic::Ordering::Acquire)
            || (!self.ctx.holds.none() && {
                let holds = self.ctx.holds.get();
                holds.site(&self.site.key) || self.site.base.as_ref().is_some_and(|b| holds.site(b))
            })
    }

    /// Whether an operator holds `w`'s domain or campaign.
    pub(super) fn held(&mut self, w: &Work) -> bool {
        let holds = &self.ctx.holds;
        if holds.none() {
            return false;
        }
        if holds.generation() != self.holds_seen {
            self.holds_seen = holds.generation();
            self.held_campaigns.clear();
        }
        let set = holds.get();
        if set.domain(&w.domain) {
            return true;
        }
        if set.campaigns.is_empty() {
            return false;
        }
        let spool = &self.ctx.spool;
        spool.campaign_of(w.id).is_some_and(|no| {
            *self
                .held_campaigns
                .entry(no)
                .or_insert_with(|| spool.campaign(no).is_some_and(|c| set.campaign(&c.id)))
        })
    }

    /// Gives the recipients of `domain` (queued or set aside) back to the
    /// scheduler: the domain was rerouted.
    pub(super) fn give_back(&mut self, domain: &str) {
        let mut keep = Vec::new();
        let mut given = Vec::new();
        while let Some(w) = self.queue.pop() {
            if w.domain.eq_ignore_ascii_case(domain) {
                given.push(w);
            } else {
                keep.push(w);
            }
        }
        let parked = std::mem::take(&mut self.parked);
        for w in parked {
            if w.domain.eq_ignore_ascii_case(domain) {
                given.push(w);
            } else {
                self.parked.push(w);
            }
        }
        if !keep.is_empty() {
            self.queue.push(ShardIn::Many(keep));
        }
        if given.is_empty() {
            return;
        }
        tracing::info!(site = %self.site.key, %domain, recipients = given.len(), "rerouted: recipients given back");
        if let Some(tx) = self.ctx.scheduler.upgrade() {
            let _ = tx.send(super::super::scheduler::SchedMsg::Work(given));
        }
    }

    /// Ends what this shard holds (queued or set aside) that an operator
    /// ended: each gets its final outcome without an attempt (a held
    /// site's queue too).
    pub(super) fn end_ended(&mut self) {
        let endings = &self.ctx.endings;
        if endings.none() {
            return;
        }
        let set = endings.get();
        let spool = &self.ctx.spool;
        let mut keep = Vec::new();
        let mut ended = 0usize;
        let mut end = |w: Work| match set.verdict(spool, &w) {
            Some(outcome) => {
                ended += 1;
                let r = super::super::Report::untried(w, outcome, String::new(), None);
                let _ = self.ctx.recorder.send(r);
                None
            }
            None => Some(w),
        };
        while let Some(w) = self.queue.pop() {
            keep.extend(end(w));
        }
        let parked: Vec<Work> = std::mem::take(&mut self.parked)
            .into_iter()
            .filter_map(&mut end)
            .collect();
        self.parked = parked;
        if !keep.is_empty() {
            self.queue.push(ShardIn::Many(keep));
        }
        if ended > 0 {
            tracing::info!(site = %self.site.key, recipients = ended, "recipients ended by an operator");
        }
    }

    /// When its egress source goes out of service: gives what it holds
    /// (queued or set aside) back to the scheduler, once, so it leaves
    /// from the pool's other sources (what then comes back, having no
    /// other source, stays).
    pub(super) fn source_check(&mut self) {
        let Some(src) = &self.dest.source else { return };
        let out = !src.in_service();
        if out == self.source_out {
            return;
        }
        self.source_out = out;
        if !out {
            return;
        }
        let mut given = Vec::new();
        while let Some(w) = self.queue.pop() {
            given.push(w);
        }
        given.append(&mut self.parked);
        if given.is_empty() {
            return;
        }
        tracing::info!(site = %self.site.key, source = %src.name, recipients = given.len(), "egress source out of service: recipients given back");
        if let Some(tx) = self.ctx.scheduler.upgrade() {
            let _ = tx.send(super::super::scheduler::SchedMsg::Work(given));
        }
    }

    /// Puts back in the queue what was set aside and is no longer held.
    pub(super) fn unpark(&mut self) {
        let parked = std::mem::take(&mut self.parked);
        let mut released = Vec::new();
        for w in parked {
            if self.held(&w) {
                self.parked.push(w);
            } else {
                released.push(w);
            }
        }
        if !released.is_empty() {
            tracing::info!(site = %self.site.key, recipients = released.len(), "held recipients released");
            self.queue.push(ShardIn::Many(released));
        }
    }
}
