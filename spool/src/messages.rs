//! Reclaiming finished ready-made messages.
//!
//! A ready-made message (SMTP submission, drop directory, sendmail) is a
//! campaign whose id holds a `:` (campaign files cannot); the messages
//! accepted together share one campaign file (a pack). A pack is deleted,
//! and its campaigns forgotten (memory freed), once every one of its
//! campaigns is sealed with no recipient queued or deferred, *and* every
//! sink cursor is past the journal position at which that was first seen,
//! so no sink still needs the definitions to build events (replaying the
//! journal at open needs only their numbers). Their counts stay in the
//! summary. Checked at most as often as the caller says ([`EVERY`] in
//! the service). Exposure: none (file
//! names in `campaigns/` are the spool's own; others are left alone).

use std::collections::BTreeMap;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use crate::campaign;
use crate::error::Result;
use crate::spool::{Spool, lock};

/// How often finished messages are looked for.
pub const EVERY: Duration = Duration::from_secs(5);

/// Campaign files of ready-made messages, by first number.
#[derive(Default)]
pub(crate) struct Packs {
    listed: bool,
    by_first: BTreeMap<u32, Pack>,
    last_run: Option<Instant>,
}

struct Pack {
    last: u32,
    /// Journal end when every campaign of it was first seen finished.
    finished_at: Option<u64>,
}

impl Packs {
    /// A file just written for campaigns `first..=last`.
    pub(crate) fn added(&mut self, first: u32, last: u32) {
        if self.listed {
            self.by_first.insert(
                first,
                Pack {
                    last,
                    finished_at: None,
                },
            );
        }
    }
}

impl Spool {
    /// Deletes the campaign files of finished ready-made messages (see the
    /// module documentation), looking at most once per `every`; returns
    /// how many campaigns were forgotten.
    pub fn reclaim_messages(&self, every: Duration) -> Result<usize> {
        self.check_writable()?;
        let mut packs = lock(&self.packs);
        if packs.last_run.is_some_and(|t| t.elapsed() < every) {
            return Ok(0);
        }
        packs.last_run = Some(Instant::now());
        if !packs.listed {
            packs.listed = true;
            for (first, last) in campaign::ranges(&self.dir)? {
                packs.by_first.insert(
                    first,
                    Pack {
                        last,
                        finished_at: None,
                    },
                );
            }
        }
        let end = self.journal_end();
        let safe = self.min_cursor();
        let mut doomed = Vec::new();
        {
            let index = self.read_index();
            let campaigns = self
                .campaigns
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            for (&first, p) in packs.by_first.iter_mut() {
                let finished = (first..=p.last).all(|no| {
                    campaigns.get(&no).is_some_and(|c| {
                        let counts = index
                            .summary
                            .campaigns
                            .get(&no)
                            .map(|s| s.counts)
                            .unwrap_or_default();
                        c.id.contains(':')
                            && c.is_sealed()
                            && counts.queued == 0
                            && counts.deferred == 0
                    })
                });
                match (finished, p.finished_at) {
                    (false, _) => p.finished_at = None,
                    (true, None) => p.finished_at = Some(end),
                    (true, Some(at)) if at <= safe => doomed.push((first, p.last)),
                    (true, Some(_)) => {}
                }
            }
        }
        if doomed.is_empty() {
            return Ok(0);
        }
        let mut forgotten = 0;
        for &(first, last) in &doomed {
            let path = campaign::file_of(&self.dir, first, last);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot delete a finished message file");
                    continue;
                }
            }
            packs.by_first.remove(&first);
            let gone: Vec<String> = {
                let mut campaigns = self
                    .campaigns
                    .write()
                    .unwrap_or_else(PoisonError::into_inner);
                (first..=last)
                    .filter_map(|no| campaigns.remove(&no).map(|c| c.id.clone()))
                    .collect()
            };
            if let Some(names) = lock(&self.names).as_mut() {
                for id in &gone {
                    names.forget(id);
                }
            }
            forgotten += gone.len();
        }
        crate::fsync_dir(&self.dir.join("campaigns"))?;
        tracing::debug!(messages = forgotten, "reclaimed finished messages");
        Ok(forgotten)
    }
}
