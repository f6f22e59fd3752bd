//! The event pump: reads the durable journal from the sink's cursor, turns
//! entries into SES events and hands them to the sink; advances the cursor
//! only after the sink accepted them (at-least-once: after a crash, events
//! since the last cursor are published again).
//!
//! Runs on its own thread, woken by the recorder after each commit (and
//! every 200 ms). A slow or failing sink delays only events, never delivery.
//! Exposure: journal bytes (disk); damage is logged and counted, never
//! fatal.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use volley_spool::{Cursor, Spool};

use super::model::{self, Context, Event};
use super::sink::NotificationSink;
use crate::campaign::CampaignDef;
use crate::message::{campaign_message_id, message_id};
use crate::metrics::Metrics;

/// What the pump needs.
pub struct PumpCtx {
    pub spool: Arc<Spool>,
    pub metrics: Arc<Metrics>,
    pub reporting_mta: String,
    /// Set to finish: the pump drains what is journaled, then returns.
    pub stop: Arc<AtomicBool>,
    /// Journal offset up to which events are published.
    pub position: Arc<AtomicU64>,
}

type Campaigns = HashMap<u32, Option<(Arc<CampaignDef>, u64)>>;

fn campaign(spool: &Spool, cache: &mut Campaigns, no: u32) -> Option<(Arc<CampaignDef>, u64)> {
    cache
        .entry(no)
        .or_insert_with(|| {
            let c = spool.campaign(no)?;
            CampaignDef::from_bytes(&c.body)
                .ok()
                .map(|d| (Arc::new(d), c.created_ms))
        })
        .clone()
}

/// Runs until `stop` is set and everything journaled is published.
pub fn run(
    ctx: &PumpCtx,
    mut sink: Box<dyn NotificationSink>,
    wake: &crossbeam_channel::Receiver<()>,
) {
    let spool = &ctx.spool;
    let mut stored = spool.cursor(sink.name());
    let mut position = stored.map_or(0, |c| c.position);
    if position > spool.journal_end() {
        // not a cursor of this journal: append, do not cut the sink back
        stored = None;
        tracing::warn!(
            cursor = position,
            end = spool.journal_end(),
            "sink cursor is past the journal end; publishing from the oldest entry kept"
        );
        position = 0;
    }
    // With a stored cursor the sink goes back to its state at that cursor
    // (undoing output written after it); without one it only appends.
    if let Some(c) = stored {
        let mut delay = Duration::from_millis(100);
        while let Err(e) = sink.resume(c.sink_state) {
            tracing::error!(error = %e, "sink cannot resume; retrying");
            if ctx.stop.load(Ordering::Acquire) {
                return;
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(10));
        }
    }
    let mut reader = match spool.journal_reader(position) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "event pump cannot read the journal; no events will be published");
            return;
        }
    };
    let mut campaigns = Campaigns::new();
    let mut damage = Vec::new();
    let mut cursor_failing = false;
    loop {
        let end = spool.journal_end();
        if reader.position() >= end {
            ctx.position.store(reader.position(), Ordering::Release);
            if ctx.stop.load(Ordering::Acquire) && reader.position() >= spool.journal_end() {
                return;
            }
            if let Err(crossbeam_channel::RecvTimeoutError::Disconnected) =
                wake.recv_timeout(Duration::from_millis(200))
            {
                // the recorder is gone (shutting down): poll instead of spinning
                std::thread::sleep(Duration::from_millis(200));
            }
            continue;
        }
        let batch = match reader.read(end, 4096, &mut damage) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "reading the journal failed; retrying");
                if ctx.stop.load(Ordering::Acquire) {
                    return;
                }
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        for d in damage.drain(..) {
            tracing::warn!(offset = d.offset, reason = %d.reason, "damaged journal entry skipped by the event pump");
            ctx.metrics.event_errors.inc();
        }
        let mut events: Vec<Event> = Vec::with_capacity(batch.len() * 2);
        for (_, e) in &batch {
            if e.kind.outcome_state().is_none() {
                continue;
            }
            // the entry carries the address and campaign: the recipient's
            // record may already be reclaimed
            let (no, email) = (e.campaign, e.email.as_str());
            let Some((def, accepted_ms)) = campaign(spool, &mut campaigns, no) else {
                tracing::warn!(recipient = %e.id, campaign = no, "campaign unreadable; event skipped");
                ctx.metrics.event_errors.inc();
                continue;
            };
            let mid = if def.personalized {
                message_id(spool.uid(), e.id)
            } else {
                campaign_message_id(spool.uid(), no)
            };
            let c = Context {
                campaign: &def,
                accepted_ms,
                email,
                message_id: &mid,
                reporting_mta: &ctx.reporting_mta,
            };
            events.extend(model::events(&c, e));
        }
        let mut delay = Duration::from_millis(100);
        while let Err(e) = sink.publish(&events) {
            tracing::error!(error = %e, "sink refused events; retrying");
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(10));
            if ctx.stop.load(Ordering::Acquire) && delay >= Duration::from_secs(10) {
                return;
            }
        }
        ctx.metrics.events_published.inc_by(events.len() as u64);
        let published = Cursor {
            position: reader.position(),
            sink_state: sink.state(),
        };
        match spool.set_cursor(sink.name(), published) {
            Ok(()) if cursor_failing => {
                cursor_failing = false;
                tracing::warn!("the sink cursor is stored again");
            }
            Ok(()) => {}
            // logged once per failing stretch, not once per batch
            Err(e) if !cursor_failing => {
                cursor_failing = true;
                tracing::error!(error = %e, "cannot store the sink cursor (events may be published twice after a restart; retried with every batch)");
            }
            Err(_) => {}
        }
        ctx.position.store(reader.position(), Ordering::Release);
    }
}
