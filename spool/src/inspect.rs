//! Reading a spool's counts without opening it for writing: the newest
//! checkpoint's summary plus the journal written since. No lock, no segment
//! access, no repair, so `volley status` is instant at any spool size and
//! works while another process delivers from the spool. Exposure: files may
//! be damaged; problems are listed, never fatal.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use crate::checkpoint;
use crate::error::{Error, Result};
use crate::index::Index;
use crate::journal::files;
use crate::layout::{read_campaigns, read_meta};
use crate::summary::Summary;

/// A campaign as inspection sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignInfo {
    pub no: u32,
    pub id: String,
    /// The whole recipient list is in the spool.
    pub sealed: bool,
}

/// What [`inspect`] found.
#[derive(Debug, Clone, Default)]
pub struct Inspection {
    pub campaigns: Vec<CampaignInfo>,
    pub summary: Summary,
    /// Problems met while reading (damaged files and the like).
    pub problems: Vec<String>,
}

/// Reads a spool's counts (see the module documentation). A writer may
/// install a newer checkpoint and delete journal files while this reads;
/// that is detected and the read is retried.
pub fn inspect(dir: &Path) -> Result<Inspection> {
    if read_meta(dir)?.is_none() {
        return Err(Error::Io {
            op: "open spool",
            path: dir.to_path_buf(),
            error: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no spool here (nothing has been spooled yet)",
            ),
        });
    }
    let mut last = None;
    for _ in 0..10 {
        match attempt(dir)? {
            Ok(i) => return Ok(i),
            Err(i) => last = Some(i),
        }
    }
    let mut i = last.unwrap_or_default();
    i.problems
        .push("the journal kept changing under the read; counts may be slightly off".into());
    Ok(i)
}

/// One read; `Err` carries a result that raced with a checkpoint.
fn attempt(dir: &Path) -> Result<std::result::Result<Inspection, Inspection>> {
    let mut damage = Vec::new();
    let campaigns = read_campaigns(dir, false, &mut damage)?;
    let mut problems: Vec<String> = damage
        .into_iter()
        .map(|d| format!("{}: {}", d.path.display(), d.what))
        .collect();
    let (ckpt, ck_problems) = checkpoint::read(dir);
    problems.extend(ck_problems);
    let mut index = Index::default();
    let mut sealed = BTreeSet::new();
    let mut from = 0;
    if let Some(c) = ckpt {
        from = c.position;
        sealed.extend(c.sealed_campaigns);
        index.summary = c.summary;
    }
    let jfiles = files::list(dir)?;
    // the journal must reach back to the checkpoint's position
    let mut raced = jfiles.first().is_some_and(|(base, _)| *base > from);
    for (k, (base, path)) in jfiles.iter().enumerate() {
        if raced {
            break;
        }
        if jfiles.get(k + 1).is_some_and(|(n, _)| *n <= from) {
            continue;
        }
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                raced = true;
                break;
            }
            Err(e) => {
                problems.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        if bytes.len() < files::MAGIC.len() || &bytes[..files::MAGIC.len()] != files::MAGIC {
            problems.push(format!("{}: bad journal header", path.display()));
            continue;
        }
        let r = files::replay(&bytes, *base, from);
        for (pos, e) in &r.entries {
            match e.kind.outcome_state() {
                // the summary alone: the state the writer moved from is in
                // the entry; an entry for an already final recipient changed
                // nothing
                Some(new) => {
                    if !e.prev.is_final() && e.prev != new {
                        index.summary.moved(e.campaign, e.domain(), e.prev, new);
                    }
                }
                None => {
                    index.replay(&mut sealed, e, *pos);
                }
            }
        }
    }
    let inspection = Inspection {
        campaigns: campaigns
            .values()
            .map(|c| CampaignInfo {
                no: c.no,
                id: c.id.clone(),
                sealed: sealed.contains(&c.no),
            })
            .collect(),
        summary: index.summary,
        problems,
    };
    Ok(if raced {
        Err(inspection)
    } else {
        Ok(inspection)
    })
}
