//! The event pump: reads the durable journal from the sink's cursor, turns
//! entries into SES events and hands them to the sink; advances the cursor
//! only after the sink accepted them.
//!
//! Exactly once, from the first event: the pump never publishes without a
//! stored cursor. On a first start (no cursor yet, or one that does not
//! belong to this journal) it stores one before anything else: the journal
//! position it starts from and the sink's state then. After a crash the
//! sink goes back to the state stored with the cursor (the JSONL sink cuts
//! lines written after it) and the entries since are published again, so
//! a sink that can undo output publishes each event once; others get
//! at-least-once.
//!
//! One pump runs per sink: the `[events] jsonl` file (every event) and
//! each enabled event destination ([`Select`]: the events of its
//! configuration set, of its event types, whose mail has its tags), each
//! with its own cursor, so a slow destination holds back no other. A
//! destination's pump without a cursor yet starts at the journal end (a new
//! destination starts from now) unless it replays from the oldest entry.
//! Each event carries its [`EventKey`] (entry position and place), its
//! stable id.
//!
//! Runs on its own thread, woken by the recorder after each commit (and
//! every 200 ms), publishing at most one batch per [`GATHER`] while
//! outcomes trickle in. A slow or failing sink delays only events, never delivery.
//! Keeps its lag gauges current ([`Lag`]).
//! Exposure: journal bytes (disk); damage is logged and counted, never
//! fatal.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use volley_spool::journal::files::Reader;
use volley_spool::{Cursor, Entry, Spool};

mod start;

use start::{retry, starting_cursor};

use super::id::EventKey;
use super::lag::Lag;
use super::model::{self, Context, Event, HeadersCache, Identity, Sender};
use super::sink::NotificationSink;
use crate::campaign::CampaignDef;
use crate::config::Destination;
use crate::message::{campaign_message_id, message_id};
use crate::metrics::{DestinationMetrics, Metrics};

/// Most journal entries turned into events and published at once.
const BATCH: usize = 4096;
/// The least time between two batches while entries trickle in: one
/// sink sync and one cursor write then serve every outcome of that time
/// rather than one recorder commit's (events are seconds behind delivery
/// in SES too).
const GATHER: Duration = Duration::from_millis(100);

/// What the pump needs.
pub struct PumpCtx {
    pub spool: Arc<Spool>,
    pub metrics: Arc<Metrics>,
    pub reporting_mta: String,
    /// The account and identity ARN events name.
    pub identity: Identity,
    /// Set to finish: the pump drains what is journaled, then returns.
    pub stop: Arc<AtomicBool>,
    /// Journal offset up to which events are published.
    pub position: Arc<AtomicU64>,
    /// Which events this pump publishes; `None`: every event.
    pub select: Option<Select>,
    /// Where to start without a stored cursor: 0 (the oldest entry kept),
    /// or for a new destination the journal end when the engine started.
    pub start_at: u64,
    /// Published, failed tries, lag.
    pub counts: DestinationMetrics,
}

/// The events of one destination: its configuration set's, of its event
/// types, whose mail has its tags.
#[derive(Debug, Clone)]
pub struct Select {
    pub set: String,
    pub destination: Destination,
}

impl Select {
    /// Whether events of a campaign's mail can go to the destination.
    fn campaign(&self, def: &CampaignDef) -> bool {
        def.configuration_set.as_deref() == Some(self.set.as_str())
            && self.destination.matches_tags(&model::tags(def))
    }
}

impl PumpCtx {
    pub(super) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

/// What events need of a campaign.
struct CampaignInfo {
    def: CampaignDef,
    /// Its events go to this pump's sink.
    selected: bool,
    accepted_ms: u64,
    /// What its events' `mail` objects share.
    sender: Arc<Sender>,
}

impl CampaignInfo {
    fn new(ctx: &PumpCtx, def: CampaignDef, accepted_ms: u64) -> CampaignInfo {
        let sender = Sender::new(
            &def,
            &ctx.identity.source_arn(&def),
            &ctx.identity.account_id,
        );
        CampaignInfo {
            selected: ctx.select.as_ref().is_none_or(|s| s.campaign(&def)),
            sender: Arc::new(sender),
            def,
            accepted_ms,
        }
    }
}

/// Runs until `stop` is set and everything journaled is published.
pub fn run(ctx: &PumpCtx, sink: Box<dyn NotificationSink>, wake: &crossbeam_channel::Receiver<()>) {
    let Some(mut pump) = Pump::start(ctx, sink) else {
        return;
    };
    let mut published_at = std::time::Instant::now();
    loop {
        let end = ctx.spool.journal_end();
        if pump.reader.position() >= end {
            pump.caught_up();
            if ctx.stopping() && pump.reader.position() >= ctx.spool.journal_end() {
                return;
            }
            wait(wake);
            gather(ctx, published_at);
            continue;
        }
        published_at = std::time::Instant::now();
        let Some(batch) = pump.read(end) else {
            if ctx.stopping() {
                return;
            }
            continue;
        };
        let events = pump.events(&batch);
        if !pump.publish(&events, batch.len()) {
            return;
        }
        pump.store_cursor();
    }
}

/// Waits for the recorder's next commit, at most 200 ms.
fn wait(wake: &crossbeam_channel::Receiver<()>) {
    if let Err(crossbeam_channel::RecvTimeoutError::Disconnected) =
        wake.recv_timeout(Duration::from_millis(200))
    {
        // the recorder is gone (shutting down): poll instead of spinning
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Lets outcomes gather until [`GATHER`] after the last batch began (not
/// when stopping).
fn gather(ctx: &PumpCtx, published_at: std::time::Instant) {
    let left = GATHER.saturating_sub(published_at.elapsed());
    if !left.is_zero() && !ctx.stopping() {
        std::thread::sleep(left);
    }
}

/// A running pump's state.
struct Pump<'a> {
    ctx: &'a PumpCtx,
    sink: Box<dyn NotificationSink>,
    reader: Reader,
    campaigns: HashMap<u32, Option<Arc<CampaignInfo>>>,
    damage: Vec<volley_spool::journal::files::ReadDamage>,
    cursor_failing: bool,
    lag: Lag,
    headers: HeadersCache,
}

impl<'a> Pump<'a> {
    /// Resumes the sink (or stores its first cursor) and opens the journal
    /// at the cursor; `None` when there is nothing it can do.
    fn start(ctx: &'a PumpCtx, mut sink: Box<dyn NotificationSink>) -> Option<Pump<'a>> {
        let position = starting_cursor(ctx, sink.as_mut())?;
        let reader = match ctx.spool.journal_reader(position) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "event pump cannot read the journal; no events will be published");
                return None;
            }
        };
        Some(Pump {
            ctx,
            sink,
            reader,
            campaigns: HashMap::new(),
            damage: Vec::new(),
            cursor_failing: false,
            lag: Lag::default(),
            headers: HeadersCache::default(),
        })
    }

    /// Everything journaled is published.
    fn caught_up(&mut self) {
        let at = self.reader.position();
        self.ctx.position.store(at, Ordering::Release);
        self.lag.update(self.ctx, at, at);
    }

    /// Reads the next batch of entries (up to `end`); `None` after a read
    /// error (logged; the caller tries again).
    fn read(&mut self, end: u64) -> Option<Vec<(u64, Entry)>> {
        let batch = match self.reader.read(end, BATCH, &mut self.damage) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "reading the journal failed; retrying");
                std::thread::sleep(Duration::from_secs(1));
                return None;
            }
        };
        for d in self.damage.drain(..) {
            tracing::warn!(offset = d.offset, reason = %d.reason, "damaged journal entry skipped by the event pump");
            self.ctx.metrics.event_errors.inc();
        }
        self.lag.read(&batch);
        self.lag.update(self.ctx, self.reader.position(), end);
        Some(batch)
    }

    /// The events of a batch of entries (campaign marks have none).
    fn events(&mut self, batch: &[(u64, Entry)]) -> Vec<Event> {
        let mut events = Vec::with_capacity(batch.len() * 2);
        for (position, e) in batch {
            if e.kind.outcome_state().is_none() && e.kind != volley_spool::Kind::Feedback {
                continue;
            }
            if let Some(s) = &self.ctx.select
                && !model::event_types(e).any(|t| s.destination.matches_type(t))
            {
                continue;
            }
            // the entry carries the address and campaign: the recipient's
            // record may already be reclaimed
            let Some(info) = self.campaign(e.campaign).or_else(|| self.stand_in(e)) else {
                tracing::warn!(recipient = %e.id, campaign = e.campaign, "campaign unreadable; event skipped");
                self.ctx.metrics.event_errors.inc();
                continue;
            };
            if !info.selected {
                continue;
            }
            let spool = &self.ctx.spool;
            let mid = if info.def.personalized {
                message_id(spool.uid(), e.id)
            } else {
                campaign_message_id(spool.uid(), e.campaign)
            };
            let c = Context {
                campaign: &info.def,
                accepted_ms: info.accepted_ms,
                email: &e.email,
                message_id: &mid,
                reporting_mta: &self.ctx.reporting_mta,
                sender: &info.sender,
            };
            let made = model::events_with(&c, e, &mut self.headers);
            for (index, mut ev) in made.into_iter().enumerate() {
                let wanted = match &self.ctx.select {
                    Some(s) => s.destination.matches_type(ev.event_type),
                    None => true,
                };
                if wanted {
                    ev.key = EventKey {
                        position: *position,
                        index: index as u8,
                    };
                    events.push(ev);
                }
            }
        }
        events
    }

    /// For feedback about mail whose campaign is gone: a stand-in from
    /// what the report said (no configuration set or tags then).
    fn stand_in(&self, e: &Entry) -> Option<Arc<CampaignInfo>> {
        if e.kind != volley_spool::Kind::Feedback {
            return None;
        }
        let d = crate::events::detail::Detail::decode(&e.detail);
        let from = d.feedback.as_ref()?.from.clone().unwrap_or_default();
        let def = CampaignDef::stand_in(e.campaign, &from, &d.subject);
        let accepted_ms = d.accepted_ms.unwrap_or(e.at_ms);
        Some(Arc::new(CampaignInfo::new(self.ctx, def, accepted_ms)))
    }

    fn campaign(&mut self, no: u32) -> Option<Arc<CampaignInfo>> {
        let ctx = self.ctx;
        self.campaigns
            .entry(no)
            .or_insert_with(|| {
                let c = ctx.spool.campaign(no)?;
                let def = CampaignDef::from_bytes(&c.body).ok()?;
                Some(Arc::new(CampaignInfo::new(ctx, def, c.created_ms)))
            })
            .clone()
    }

    /// Hands the events of `entries` journal entries to the sink, retrying
    /// until it takes them; false when the pump is stopping and gave up.
    fn publish(&mut self, events: &[Event], entries: usize) -> bool {
        if !events.is_empty() {
            let (ctx, sink, lag) = (self.ctx, &mut self.sink, &self.lag);
            let published = retry(
                ctx,
                "sink refused events",
                || {
                    sink.publish(events).inspect_err(|_| {
                        ctx.counts.failed.inc();
                    })
                },
                || lag.refresh_seconds(ctx),
            );
            if !published {
                return false;
            }
            self.ctx.counts.published.inc_by(events.len() as u64);
        }
        self.lag.published(self.ctx, entries);
        true
    }

    /// Stores where the sink now stands; a failure is logged once per
    /// failing stretch and retried with the next batch.
    fn store_cursor(&mut self) {
        let published = Cursor {
            position: self.reader.position(),
            sink_state: self.sink.state(),
        };
        match self.ctx.spool.set_cursor(self.sink.name(), published) {
            Ok(()) if self.cursor_failing => {
                self.cursor_failing = false;
                tracing::warn!("the sink cursor is stored again");
            }
            Ok(()) => {}
            Err(e) if !self.cursor_failing => {
                self.cursor_failing = true;
                tracing::error!(error = %e, "cannot store the sink cursor (events may be published twice after a restart; retried with every batch)");
            }
            Err(_) => {}
        }
        self.ctx
            .position
            .store(self.reader.position(), Ordering::Release);
    }
}

#[cfg(test)]
mod tests;
