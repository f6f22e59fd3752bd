//! A pump's lag, for its gauges (`volley_event_sink_lag_entries` and
//! `_seconds` for the `[events] jsonl` file, `volley_destination_lag_*` for
//! a destination): journal entries not yet published, and how long the
//! oldest unpublished outcome has waited (0 when caught up).
//!
//! The pump tells it what it read and published; entries not read yet are
//! counted only when a batch stopped short of the journal end (a backlog),
//! by a second reader running ahead that reads each of them once, so a pump
//! that keeps up reads nothing twice. Exposure: journal bytes (disk),
//! counted only.

use volley_spool::Entry;
use volley_spool::journal::files::Reader;

use super::pump::PumpCtx;

/// Most entries read at once to count those not read yet.
const COUNT_BATCH: usize = 1024;

/// The sink's lag: entries not yet published are those read but not
/// published plus those not read yet.
#[derive(Default)]
pub(super) struct Lag {
    /// Entries read by the pump since it started.
    read: u64,
    published: u64,
    /// Counts entries past the pump's reader (from the same start).
    ahead: Option<Reader>,
    /// Entries `ahead` has read, numbered like `read`: `counted - read`
    /// entries lie between the pump's reader and `ahead`.
    counted: u64,
    /// Entries not read yet, as last counted.
    unread: u64,
    /// When the oldest outcome read but not published happened (ms).
    oldest_ms: Option<u64>,
}

impl Lag {
    pub(super) fn read(&mut self, batch: &[(u64, Entry)]) {
        self.read += batch.len() as u64;
        self.oldest_ms = batch
            .iter()
            .filter(|(_, e)| {
                e.kind.outcome_state().is_some() || e.kind == volley_spool::Kind::Feedback
            })
            .map(|(_, e)| e.at_ms)
            .min();
    }

    pub(super) fn published(&mut self, ctx: &PumpCtx, entries: usize) {
        self.published += entries as u64;
        self.oldest_ms = None;
        self.set_entries(ctx);
    }

    fn set_entries(&self, ctx: &PumpCtx) {
        let unpublished = self.read.saturating_sub(self.published) + self.unread;
        ctx.counts
            .lag_entries
            .set(i64::try_from(unpublished).unwrap_or(i64::MAX));
    }

    /// Sets both gauges; `at` is the pump's read position, `end` the
    /// journal end.
    pub(super) fn update(&mut self, ctx: &PumpCtx, at: u64, end: u64) {
        self.unread = if at >= end {
            0
        } else {
            self.count_unread(ctx, at, end)
        };
        self.set_entries(ctx);
        if self.read == self.published && self.unread == 0 {
            self.oldest_ms = None;
        }
        self.refresh_seconds(ctx);
    }

    pub(super) fn refresh_seconds(&self, ctx: &PumpCtx) {
        let secs = self.oldest_ms.map_or(0.0, |t| {
            volley_spool::now_ms().saturating_sub(t) as f64 / 1000.0
        });
        ctx.counts.lag_seconds.set(secs);
    }

    /// Entries between `at` (the pump's reader) and `end`.
    fn count_unread(&mut self, ctx: &PumpCtx, at: u64, end: u64) -> u64 {
        if self.ahead.as_ref().is_none_or(|r| r.position() < at) {
            match ctx.spool.journal_reader(at) {
                Ok(r) => {
                    self.ahead = Some(r);
                    self.counted = self.read;
                }
                Err(_) => return 0,
            }
        }
        let Some(ahead) = self.ahead.as_mut() else {
            return 0;
        };
        let mut damage = Vec::new();
        while ahead.position() < end {
            match ahead.read(end, COUNT_BATCH, &mut damage) {
                Ok(b) if !b.is_empty() => self.counted += b.len() as u64,
                _ => break,
            }
            damage.clear();
        }
        self.counted.saturating_sub(self.read)
    }
}
