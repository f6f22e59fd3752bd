//! Producers. The campaign batch job: store the campaign once, stream its
//! recipient list into the spool in durable batches, and hand each accepted
//! batch to delivery.
//!
//! Resuming: if the campaign id is already in the spool but its list was not
//! completely spooled (the job was killed), rows up to the last spooled one
//! are skipped, so no recipient is added twice. A completely spooled
//! campaign is not ingested again. Exposure: list files are untrusted;
//! rejected rows are reported with line and reason and the rest go on.

pub mod list;

use std::sync::Arc;

use volley_spool::{Campaign, Recipient, RecipientId, Spool};

use crate::campaign::{CampaignDef, LoadedCampaign};
use crate::delivery::Work;
use list::{Item, ListError, ListReader, Rejection};

/// Recipients per durable batch.
pub const BATCH: usize = 16384;

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
    pub rejected: u64,
    /// The campaign was already completely spooled; nothing was read.
    pub already_complete: bool,
}

/// Delivery work for a durable batch.
pub fn works(domains: &mut Domains, ids: &[RecipientId], recs: &[Recipient]) -> Vec<Work> {
    ids.iter()
        .zip(recs)
        .map(|(&id, r)| Work {
            id,
            domain: domains.get(r.email.rsplit_once('@').map_or("", |(_, d)| d)),
            attempts: 0,
        })
        .collect()
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

/// Spools a campaign and its list. `accepted` receives each durable batch
/// (ids and their records, see [`works`]); `rejected` each refused row.
pub fn run(
    spool: &Spool,
    loaded: &LoadedCampaign,
    mut accepted: impl FnMut(&[RecipientId], &[Recipient]) + Send,
    mut rejected: impl FnMut(&Rejection),
) -> Result<Summary, IngestError> {
    let mut reader = ListReader::open(&loaded.recipients)?;
    let mut def = loaded.def.clone();
    def.columns = reader.columns.clone();
    let (campaign, def, skip_to, earlier) = match spool.campaign_by_id(&def.id) {
        Some(c) => {
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
            let (max_row, n) = (counts.last_row, counts.counts.total());
            if c.is_sealed() {
                return Ok(Summary {
                    campaign: c,
                    def: stored,
                    accepted: 0,
                    earlier: n,
                    rejected: 0,
                    already_complete: true,
                });
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
            tracing::info!(campaign = %def.id, spooled = n, after_row = max_row, "resuming an interrupted ingest");
            (c, stored, max_row, n)
        }
        None => {
            let c = spool.create_campaign(&def.id, &def.to_bytes())?;
            (c, def, 0, 0)
        }
    };
    let mut n_bad = 0u64;
    // Three stages overlap: parsing (its own thread), writing batches into
    // the spool (this thread), and waiting for them to be durable and
    // acknowledging them (a finishing thread, in order). Spent batches go
    // back to the parsing thread to be freed where they were allocated
    // (much cheaper for the allocator than freeing across threads).
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<Item>, ListError>>(2);
    let (spent_tx, spent_rx) = std::sync::mpsc::channel::<Vec<Recipient>>();
    let (fin_tx, fin_rx) =
        std::sync::mpsc::sync_channel::<(volley_spool::StartedAppend, Vec<Recipient>)>(2);
    let n_ok = std::thread::scope(|scope| -> Result<u64, IngestError> {
        scope.spawn(move || {
            loop {
                while let Ok(spent) = spent_rx.try_recv() {
                    drop(spent);
                }
                let batch = reader.next_batch(BATCH);
                let done = matches!(&batch, Ok(b) if b.is_empty()) || batch.is_err();
                if tx.send(batch).is_err() || done {
                    break;
                }
            }
        });
        let id = &def.id;
        let finisher = scope.spawn(move || -> Result<u64, IngestError> {
            let mut n_ok = 0u64;
            for (started, recs) in fin_rx {
                let ids = spool
                    .append_finish(started)
                    .map_err(|error| IngestError::Append {
                        campaign: id.clone(),
                        accepted: earlier + n_ok,
                        error,
                    })?;
                n_ok += ids.len() as u64;
                accepted(&ids, &recs);
                let _ = spent_tx.send(recs);
            }
            Ok(n_ok)
        });
        let mut failed = None;
        for batch in rx {
            let items = match batch {
                Ok(items) => items,
                Err(e) => {
                    failed = Some(IngestError::List(e));
                    break;
                }
            };
            if items.is_empty() {
                break;
            }
            let mut recs = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Item::Row(r) if r.row <= skip_to => {}
                    Item::Rejected(r) if r.row <= skip_to => {}
                    Item::Row(r) => recs.push(Recipient {
                        campaign: campaign.no,
                        row: r.row,
                        email: r.email,
                        vars: r.vars,
                    }),
                    Item::Rejected(r) => {
                        n_bad += 1;
                        rejected(&r);
                    }
                }
            }
            if recs.is_empty() {
                continue;
            }
            match spool.append_start(&recs) {
                Ok(started) => {
                    if fin_tx.send((started, recs)).is_err() {
                        break; // the finisher failed: its error is reported
                    }
                }
                Err(error) => {
                    failed = Some(IngestError::Spool(error));
                    break;
                }
            }
        }
        drop(fin_tx);
        let finished = finisher.join().unwrap_or_else(|_| {
            Err(IngestError::Spool(volley_spool::Error::Encode(
                "the ingest finishing thread failed".into(),
            )))
        });
        match (finished, failed) {
            (Err(e), _) => Err(e),
            (Ok(n), Some(IngestError::Spool(error))) => Err(IngestError::Append {
                campaign: def.id.clone(),
                accepted: earlier + n,
                error,
            }),
            (Ok(_), Some(e)) => Err(e),
            (Ok(n), None) => Ok(n),
        }
    })?;
    spool.seal_campaign(campaign.no)?;
    Ok(Summary {
        campaign,
        def,
        accepted: n_ok,
        earlier,
        rejected: n_bad,
        already_complete: false,
    })
}
