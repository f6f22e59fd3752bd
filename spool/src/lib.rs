//! volley-spool: the durable store of campaigns, recipients and their states.
//!
//! # Layout of a spool directory
//! ```text
//! lock                    held (flock) by the one process that writes
//! meta                    magic + the spool's random uid (message ids use it)
//! campaigns/N.cmp         one file per campaign, stored once
//! segments/N.seg          preallocated, append-only, framed rkyv recipient records
//! journal/<position>.log  append-only framed entries: outcomes, appends, segment marks
//! checkpoint              snapshot of every recipient's state at a journal position
//! checkpoint.prev         the one before (a fallback)
//! cursors/NAME            where each notification sink has published to
//! ledger/N.ldg            a reclaimed segment's addresses, when kept (feedback)
//! ```
//!
//! # Durability contract
//! - [`Spool::append`] returns ids only after the records *and* the journal
//!   entry that describes them are on stable storage (`fdatasync`; new files
//!   and directory entries `fsync`ed). [`Spool::create_campaign`],
//!   [`Spool::seal_campaign`] and [`Spool::record`] likewise return after
//!   what they wrote is durable. "Accepted" therefore survives `kill -9` of
//!   the process and power loss of the machine, provided the disk honours
//!   flushes.
//! - Concurrent callers share fdatasyncs (group commit): a call waits for at
//!   most the sync in progress plus one more ([`Spool::sync_counts`] shows
//!   how many were issued).
//! - After a failed fdatasync the spool refuses further acknowledgements on
//!   that file (the page cache can no longer be trusted); reopen to continue.
//! - A failed append (e.g. the disk is full) acknowledges nothing of its
//!   batch and leaves everything acknowledged before intact; the journal
//!   keeps space reserved so outcomes of spooled mail can still be recorded.
//! - Recipient state, attempt count and next-attempt time are persisted
//!   exactly (journal entries and checkpoints), never inferred. Opening
//!   replays only the journal written since the newest checkpoint.
//! - Each recipient's acceptance time ([`Spool::accepted_ms`]: when its
//!   own append was accepted, not when its campaign was created) is
//!   persisted the same way, never later and less than a second earlier
//!   ([`ACCEPTED_GRANULE_MS`]): appends within a second of the records
//!   before them share their time.
//! - On open, a torn tail (an append cut short by a crash) is truncated and
//!   logged; damaged records and missing segment files are reported by
//!   recipient id and campaign ([`OpenReport`]) and those recipients become
//!   [`State::Lost`]; nothing panics on any file content.
//! - Delivery is at-least-once: an outcome not yet journaled when the process
//!   dies is attempted again.
//! - Segments whose recipients are all final and published are deleted
//!   ([`Spool::reclaim`]); journal files are deleted once a checkpoint and
//!   every sink cursor are past them; the campaign files of ready-made
//!   messages (ids with a `:`) once they are finished and every sink has
//!   published their events ([`Spool::reclaim_messages`]).
//!
//! Exposure: every byte read back from disk is treated as possibly damaged
//! (CRC per frame, validated rkyv access, bounds-checked decoders).

mod accepted;
mod append;
mod campaign;
mod census;
mod checkpoint;
mod commit;
mod cursors;
mod error;
mod frame;
#[cfg(test)]
mod fuzz;
mod index;
mod inspect;
pub mod journal;
mod layout;
mod ledger;
mod maintain;
mod messages;
pub use messages::EVERY as MESSAGES_RECLAIM_EVERY;
mod ops;
pub mod pagecache;
pub mod record;
mod recover;
mod report;
mod rescan;
mod segment;
mod spool;
mod summary;

pub use accepted::ACCEPTED_GRANULE_MS;
pub use append::StartedAppend;
pub use campaign::Campaign;
pub use checkpoint::Run;
pub use cursors::Cursor;
pub use error::{Error, Result};
pub use index::Retry;
pub use inspect::{CampaignInfo, Inspection, inspect};
pub use journal::{Entry, Kind};
pub use layout::lock_dir;
pub use record::{ArchivedRecipient, Recipient, Vars, domain_of};
pub use report::{Damage, OpenReport, Pending};
pub use segment::SEGMENT_BYTES;
pub use spool::{CHECKPOINT_EVERY, Spool};
pub use summary::{CampaignCounts, Counts, FastMap, Summary};

/// Identifies one recipient: segment number (high 32 bits) and record index
/// within the segment (low 32 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecipientId(pub u64);

impl RecipientId {
    pub fn new(segment: u32, index: u32) -> Self {
        RecipientId((u64::from(segment) << 32) | u64::from(index))
    }
    pub fn segment(self) -> u32 {
        (self.0 >> 32) as u32
    }
    pub fn index(self) -> u32 {
        self.0 as u32
    }
}

impl std::fmt::Display for RecipientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.segment(), self.index())
    }
}

/// Delivery state of a recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum State {
    Queued = 0,
    Deferred = 1,
    Delivered = 2,
    Bounced = 3,
    /// The message could not be produced (render failure).
    Failed = 4,
    /// The record was damaged on disk.
    Lost = 255,
}

impl State {
    /// Every state.
    pub const ALL: [State; 6] = [
        State::Queued,
        State::Deferred,
        State::Delivered,
        State::Bounced,
        State::Failed,
        State::Lost,
    ];

    pub(crate) fn try_from_u8(b: u8) -> Option<State> {
        Some(match b {
            0 => State::Queued,
            1 => State::Deferred,
            2 => State::Delivered,
            3 => State::Bounced,
            4 => State::Failed,
            255 => State::Lost,
            _ => return None,
        })
    }

    pub(crate) fn from_u8(b: u8) -> State {
        State::try_from_u8(b).unwrap_or(State::Lost)
    }

    /// Delivered, bounced, failed or lost: nothing more will be attempted.
    pub fn is_final(self) -> bool {
        !matches!(self, State::Queued | State::Deferred)
    }

    /// Name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Deferred => "deferred",
            State::Delivered => "delivered",
            State::Bounced => "bounced",
            State::Failed => "render-failed",
            State::Lost => "lost",
        }
    }
}

/// Where the spool reads the time (ms since the Unix epoch): [`now_ms`],
/// unless a test injects another with [`Spool::open_with_clock`].
pub type Clock = std::sync::Arc<dyn Fn() -> u64 + Send + Sync>;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(crate) fn fsync_dir(dir: &std::path::Path) -> Result<()> {
    use error::IoContext;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx("sync directory", dir)
}
