//! Producers. The campaign batch job: store the campaign once, stream its
//! recipient list into the spool in durable batches, and hand each accepted
//! batch to delivery.
//!
//! A campaign sends once per address: a row whose address an earlier row
//! of the list had (ignoring ASCII case, see [`seen`]) is skipped and
//! reported as a duplicate with its line, as a bad row is reported as
//! rejected (see [`list`]).
//!
//! Resuming: if the campaign id is already in the spool but its list was not
//! completely spooled (the job was killed or stopped), the list is read
//! again from its first row; rows up to the last spooled one are not spooled
//! again (nor reported again) but still count as seen, so a duplicate of a
//! recipient spooled by the earlier run is skipped too. A completely spooled
//! campaign is not ingested again. Exposure: list files are untrusted;
//! rejected rows are reported with line and reason and the rest go on.

pub mod list;
mod pipeline;
pub mod seen;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use volley_spool::{Campaign, Recipient, RecipientId, Spool};

use crate::campaign::{CampaignDef, LoadedCampaign};
use crate::delivery::Work;
use list::{ListError, ListReader, Locator, Rejection, Start};

/// Recipients per durable batch.
pub const BATCH: usize = 16384;
/// Most bytes of addresses and variables in one batch: rows of long
/// variables (KBs each) come in smaller batches, so the batches in flight
/// (a few per stage) stay a few MiB and their memory is reused rather
/// than freshly faulted in (16,384 rows of 4 KB would be 64 MiB a batch).
pub const BATCH_BYTES: usize = 4 << 20;

/// Why ingest stopped.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    List(#[from] ListError),
    #[error("spool: {0}")]
    Spool(#[from] volley_spool::Error),
    /// The spool refused a batch (e.g. the disk is full); what was accepted
    /// before stays spooled and is delivered.
    #[error(
        "spool: {error} ({accepted} recipients of campaign {campaign} were accepted before this and are safe in the spool)"
    )]
    Append {
        campaign: String,
        accepted: u64,
        error: volley_spool::Error,
    },
    #[error("campaign {id:?} in the spool is unreadable: {reason}")]
    StoredCampaign { id: String, reason: String },
    /// A thread of the ingest pipeline ended without its result.
    #[error("ingest: the {0} thread failed")]
    Thread(&'static str),
}

/// How an ingest runs.
#[derive(Default, Clone, Copy)]
pub struct Options<'a> {
    /// Set (from any thread) to stop reading the list: the batches already
    /// read are made durable, the campaign is left unsealed, and a later
    /// ingest of it resumes after its last spooled row.
    pub stop: Option<&'a AtomicBool>,
    /// Spool duplicates too (only for measuring what finding them costs).
    pub keep_duplicates: bool,
}

/// A row whose address an earlier row of the list had.
#[derive(Clone, Copy)]
pub struct Duplicate<'a> {
    pub row: u32,
    /// The address as this row has it.
    pub email: &'a str,
    start: Start,
    locator: &'a Locator,
}

impl Duplicate<'_> {
    /// Its line (found when asked for: that reads the list file again).
    pub fn line(&self) -> u64 {
        self.locator.line(self.start)
    }
}

impl std::fmt::Debug for Duplicate<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Duplicate")
            .field("row", &self.row)
            .field("email", &self.email)
            .finish()
    }
}

/// A row of the list that was not spooled.
#[derive(Debug, Clone, Copy)]
pub enum Skipped<'a> {
    Rejected(&'a Rejection),
    Duplicate(Duplicate<'a>),
}

/// What an ingest did.
#[derive(Debug)]
pub struct Summary {
    pub campaign: Arc<Campaign>,
    pub def: CampaignDef,
    /// Recipients spooled by this run.
    pub accepted: u64,
    /// Recipients of this campaign spooled by earlier runs.
    pub earlier: u64,
    /// Rows of the list rejected (all of them: a resumed run reads the
    /// list from its start, but reports only rows after the resume point).
    pub rejected: u64,
    /// Rows of the list skipped because an earlier row had their address
    /// (counted as `rejected` is).
    pub duplicates: u64,
    /// The campaign was already completely spooled; nothing was read.
    pub already_complete: bool,
    /// Stopped (see [`Options::stop`]) before the end of the list.
    pub interrupted: bool,
}

/// Delivery work for a durable batch.
pub fn works(domains: &mut Domains, ids: &[RecipientId], recs: &[Recipient]) -> Vec<Work> {
    ids.iter()
        .zip(recs)
        .map(|(&id, r)| Work {
            id,
            domain: domains.get(volley_spool::domain_of(&r.email)),
            attempts: 0,
        })
        .collect()
}

/// The positions in `recs` of recipients on the suppression list (for
/// `topic`, when their mail belongs to one), in order; none when the list
/// is empty. In-memory lookups, overlapped across the batch.
pub fn suppressed(
    list: &crate::feedback::suppression::SuppressionList,
    recs: &[Recipient],
    topic: Option<&str>,
) -> Vec<usize> {
    if list.is_empty() {
        return Vec::new();
    }
    list.contains_many(recs.iter().map(|r| r.email.as_str()), topic)
}

/// Interns domain names so that each recipient's `Work` shares them.
#[derive(Default)]
pub struct Domains(volley_spool::FastMap<String, Arc<str>>);

impl Domains {
    pub fn get(&mut self, d: &str) -> Arc<str> {
        if let Some(a) = self.0.get(d) {
            return Arc::clone(a);
        }
        let a: Arc<str> = Arc::from(d);
        self.0.insert(d.to_string(), Arc::clone(&a));
        a
    }
}

/// Where an ingest begins.
enum Begin {
    /// The campaign's list was completely spooled before.
    Complete(Summary),
    /// Spool the rows after `skip_to` (0 for a new campaign).
    Rows {
        campaign: Arc<Campaign>,
        def: CampaignDef,
        skip_to: u32,
        earlier: u64,
    },
}

/// Spools a campaign and its list. `accepted` receives each durable batch
/// (ids and their records, see [`works`]); `skipped` each row not spooled.
pub fn run(
    spool: &Spool,
    loaded: &LoadedCampaign,
    opts: Options<'_>,
    accepted: impl FnMut(&[RecipientId], &[Recipient]) + Send,
    skipped: impl FnMut(Skipped<'_>) + Send,
) -> Result<Summary, IngestError> {
    let reader = ListReader::open(&loaded.recipients)?;
    let (campaign, def, skip_to, earlier) = match begin(spool, loaded, &reader.columns)? {
        Begin::Complete(summary) => return Ok(summary),
        Begin::Rows {
            campaign,
            def,
            skip_to,
            earlier,
        } => (campaign, def, skip_to, earlier),
    };
    let admit = pipeline::Admit {
        campaign: campaign.no,
        id: &def.id,
        skip_to,
        earlier,
        seen: (!opts.keep_duplicates).then(seen::AddressSet::new),
        locator: reader.locator()?,
        list_bytes: std::fs::metadata(&loaded.recipients).map_or(0, |m| m.len()),
    };
    let done = pipeline::spool_list(spool, reader, admit, opts.stop, accepted, skipped)?;
    if !done.interrupted {
        spool.seal_campaign(campaign.no)?;
    }
    Ok(Summary {
        campaign,
        def,
        accepted: done.accepted,
        earlier,
        rejected: done.rejected,
        duplicates: done.duplicates,
        already_complete: false,
        interrupted: done.interrupted,
    })
}

/// Creates the campaign, or finds where an earlier ingest of it stopped.
/// `columns` are the list's variable columns.
fn begin(spool: &Spool, loaded: &LoadedCampaign, columns: &[String]) -> Result<Begin, IngestError> {
    let mut def = loaded.def.clone();
    def.columns = columns.to_vec();
    let Some(c) = spool.campaign_by_id(&def.id) else {
        let c = spool.create_campaign(&def.id, &def.to_bytes())?;
        return Ok(Begin::Rows {
            campaign: c,
            def,
            skip_to: 0,
            earlier: 0,
        });
    };
    let stored =
        CampaignDef::from_bytes(&c.body).map_err(|reason| IngestError::StoredCampaign {
            id: def.id.clone(),
            reason,
        })?;
    let counts = spool
        .summary()
        .campaigns
        .get(&c.no)
        .copied()
        .unwrap_or_default();
    let (last_row, n) = (counts.last_row, counts.counts.total());
    if c.is_sealed() {
        return Ok(Begin::Complete(Summary {
            campaign: c,
            def: stored,
            accepted: 0,
            earlier: n,
            rejected: 0,
            duplicates: 0,
            already_complete: true,
            interrupted: false,
        }));
    }
    if stored.columns != def.columns {
        return Err(IngestError::StoredCampaign {
            id: def.id.clone(),
            reason: format!(
                "the recipient list's columns changed since it was first spooled ({:?} then, {:?} now)",
                stored.columns, def.columns
            ),
        });
    }
    tracing::info!(campaign = %def.id, spooled = n, after_row = last_row, "resuming an interrupted ingest");
    Ok(Begin::Rows {
        campaign: c,
        def: stored,
        skip_to: last_row,
        earlier: n,
    })
}

#[cfg(test)]
mod tests;
