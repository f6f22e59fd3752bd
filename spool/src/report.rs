//! What opening a spool reports, and what it hands to delivery.

use std::path::PathBuf;

use crate::RecipientId;

/// Something found damaged or repaired while opening.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// File concerned.
    pub path: PathBuf,
    /// What was wrong and what was done about it.
    pub what: String,
    /// Recipients lost because of it.
    pub lost: Vec<RecipientId>,
    /// Campaigns those recipients belonged to.
    pub campaigns: Vec<u32>,
}

/// What opening the spool found.
#[derive(Debug, Clone, Default)]
pub struct OpenReport {
    pub campaigns: usize,
    pub segments: usize,
    pub recipients: u64,
    pub journal_entries: u64,
    pub damage: Vec<Damage>,
}

impl OpenReport {
    /// Number of recipients lost to damage found by this open.
    pub fn lost(&self) -> usize {
        self.damage.iter().map(|d| d.lost.len()).sum()
    }
}

/// Recipients waiting for delivery, as found at open.
#[derive(Debug, Default)]
pub struct Pending {
    /// Queued recipients by destination domain.
    pub queued: Vec<(String, Vec<RecipientId>)>,
    /// Deferred recipients with their domain and retry bookkeeping.
    pub deferred: Vec<(RecipientId, String, crate::Retry)>,
}

impl Damage {
    /// Damage that cost no recipient (repaired, skipped or ignored).
    pub(crate) fn note(path: &std::path::Path, what: impl Into<String>) -> Damage {
        Damage {
            path: path.to_path_buf(),
            what: what.into(),
            lost: Vec::new(),
            campaigns: Vec::new(),
        }
    }
}
