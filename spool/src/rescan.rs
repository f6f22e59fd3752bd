//! The segment half of opening a spool: scan every segment file against
//! what the checkpoint and journal say it holds, and one pass over the
//! records that rebuilds per-domain counts and the pending work.
//!
//! Records that fail their CRC, that the journal says exist but the file
//! lacks, and whole missing files make their pending recipients `Lost`,
//! reported by id and campaign. Unknown files newer than every known segment
//! are adopted (appended just before a crash), older ones deleted (left over
//! from reclamation). A torn tail of the newest segment is cut. Exposure:
//! file contents may be damaged; nothing here panics on them.

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::path::Path;
use std::sync::Arc;

use crate::error::{IoContext, Result};
use crate::index::{Index, Seg};
use crate::recover::sorted_entries;
use crate::report::{Damage, OpenReport};
use crate::segment::{self, LOST, SEGMENT_BYTES};
use crate::spool::SegWriter;
use crate::summary::{Counts, FastMap};
use crate::{RecipientId, State};

pub(crate) fn lose(
    index: &mut Index,
    no: u32,
    i: u32,
    lost: &mut Vec<RecipientId>,
    campaigns: &mut BTreeSet<u32>,
) {
    let Some(seg) = index.segs.get_mut(&no) else {
        return;
    };
    let Some(slot) = seg.states.get_mut(i as usize) else {
        return;
    };
    let prev = State::from_u8(*slot);
    if prev.is_final() {
        return;
    }
    *slot = State::Lost as u8;
    let campaign = seg.campaign_of(i).unwrap_or(0);
    if let Some(c) = index.summary.campaigns.get_mut(&campaign) {
        c.counts.sub(prev, 1);
        c.counts.add(State::Lost, 1);
    }
    index.retries.remove(&RecipientId::new(no, i));
    lost.push(RecipientId::new(no, i));
    campaigns.insert(campaign);
}

/// Scans the segment files; returns the writer for the newest one when it
/// can take more records.
pub(crate) fn segments(
    dir: &Path,
    index: &mut Index,
    retired: &BTreeSet<u32>,
    report: &mut OpenReport,
) -> Result<Option<SegWriter>> {
    // segments on disk
    let max_known = index
        .segs
        .keys()
        .next_back()
        .copied()
        .unwrap_or(0)
        .max(retired.iter().next_back().copied().unwrap_or(0))
        .max(index.next_segment.saturating_sub(1));
    let on_disk: Vec<(u32, std::path::PathBuf)> = sorted_entries(&dir.join("segments"))?
        .into_iter()
        .filter_map(|(n, p)| segment::parse_name(&n).map(|no| (no, p)))
        .collect();
    let last_on_disk = on_disk.last().map(|(no, _)| *no);
    let mut found_files = BTreeSet::new();
    let mut writer = None;
    for (no, path) in on_disk {
        if retired.contains(&no) || (!index.segs.contains_key(&no) && no <= max_known) {
            tracing::info!(path = %path.display(), "deleting a reclaimed segment left behind by a crash");
            let _ = fs::remove_file(&path);
            continue;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .ctx("open segment", &path)?;
        let mut map = segment::map(&file, &path)?;
        if let Err(e) = segment::check_header(&map, no, &path) {
            // a new segment's number is never reused, whatever its file holds
            index.next_segment = index.next_segment.max(no.saturating_add(1));
            if Some(no) == last_on_disk
                && !index.segs.contains_key(&no)
                && map.iter().all(|b| *b == 0)
            {
                // killed between creating the file and syncing its header:
                // no record was ever acknowledged in it
                tracing::info!(path = %path.display(), "removing a segment whose creation a crash cut short");
                drop(map);
                drop(file);
                fs::remove_file(&path).ctx("remove unfinished segment", &path)?;
                crate::fsync_dir(&dir.join("segments"))?;
                continue;
            }
            report.damage.push(Damage {
                path: path.clone(),
                what: format!("{e}; segment ignored"),
                lost: Vec::new(),
                campaigns: Vec::new(),
            });
            continue;
        }
        found_files.insert(no);
        index.next_segment = index.next_segment.max(no.saturating_add(1));
        let mut scan = segment::scan(&map);
        // the scan touched every page: drop them from this process's memory
        // (the page cache keeps them for the pass below)
        segment::release(&map);
        let expected = index.segs.get(&no).map_or(0, |s| s.states.len());
        if scan.torn {
            let before = scan.offsets.len();
            let past =
                segment::resync(&map, scan.end).filter(|r| before + r.offsets.len() <= expected);
            let what = if let Some(r) = past {
                // acknowledged records after the damage: the last ones the
                // journal knows; only the records in between are lost
                let what = format!(
                    "unreadable data from offset {} to {}: {} record(s) lost, {} after it kept",
                    scan.end,
                    r.at,
                    expected - before - r.offsets.len(),
                    r.offsets.len()
                );
                scan.offsets.resize(expected - r.offsets.len(), LOST);
                scan.offsets.extend(r.offsets);
                scan.end = r.end;
                what
            } else if Some(no) == last_on_disk && before >= expected {
                // every acknowledged record is before it: an append cut short
                segment::cut_tail(&file, &path, scan.end)?;
                drop(map);
                map = segment::map(&file, &path)?;
                format!(
                    "torn tail at offset {} cut (an unacknowledged append)",
                    scan.end
                )
            } else {
                format!("unreadable data after offset {}", scan.end)
            };
            report.damage.push(Damage {
                path: path.clone(),
                what,
                lost: Vec::new(),
                campaigns: Vec::new(),
            });
        }
        let seg = index.segs.entry(no).or_default();
        let found = scan.offsets.len();
        let mut offsets = scan.offsets;
        // records on disk the journal does not know: appended just before a
        // crash; adopted (delivered at least once)
        let mut adopted = Vec::new();
        if found > expected {
            seg.states.resize(found, State::Queued as u8);
            seg.live += (found - expected) as u64;
            adopted.extend(expected as u32..found as u32);
            seg.journaled = found as u32;
        }
        offsets.resize(offsets.len().max(expected), LOST);
        seg.offsets = offsets;
        seg.map = Some(map);
        let end = scan.end as u64;
        // Appending continues in this segment only when its file holds every
        // record the index knows: a record index must always equal the
        // record's position in the file.
        if Some(no) == last_on_disk && !seg.sealed && end < SEGMENT_BYTES && found >= expected {
            writer = Some(SegWriter {
                no,
                file: Arc::new(file),
                pos: end,
                count: seg.offsets.len() as u32,
            });
        }
        for i in adopted {
            if let Some(r) = seg.record(i) {
                let (c, row) = (r.campaign.to_native(), r.row.to_native());
                seg.push_run(i, c);
                index
                    .summary
                    .campaigns
                    .entry(c)
                    .or_default()
                    .counts
                    .add(State::Queued, 1);
                index.summary.saw_row(c, row);
            }
        }
        // records that fail their CRC, or that the journal says exist but
        // the file does not hold
        let mut lost = Vec::new();
        let mut lost_campaigns = BTreeSet::new();
        let bad: Vec<u32> = index.segs[&no]
            .offsets
            .iter()
            .enumerate()
            .filter(|(_, o)| **o == LOST)
            .map(|(i, _)| i as u32)
            .collect();
        for i in bad {
            lose(index, no, i, &mut lost, &mut lost_campaigns);
        }
        if !lost.is_empty() {
            report.damage.push(Damage {
                path: path.clone(),
                what: format!("{} recipient record(s) damaged or missing", lost.len()),
                lost,
                campaigns: lost_campaigns.into_iter().collect(),
            });
        }
    }
    // segments the journal knows but whose file is gone
    let missing: Vec<u32> = index
        .segs
        .keys()
        .filter(|no| !found_files.contains(no))
        .copied()
        .collect();
    for no in missing {
        let mut lost = Vec::new();
        let mut lost_campaigns = BTreeSet::new();
        let n = index.segs[&no].states.len() as u32;
        for i in 0..n {
            lose(index, no, i, &mut lost, &mut lost_campaigns);
        }
        if let Some(seg) = index.segs.get_mut(&no) {
            seg.offsets = vec![LOST; n as usize];
            seg.live = 0;
        }
        if !lost.is_empty() {
            report.damage.push(Damage {
                path: segment::path(dir, no),
                what: format!("segment file missing: {} recipient(s) lost", lost.len()),
                lost,
                campaigns: lost_campaigns.into_iter().collect(),
            });
        }
    }

    Ok(writer)
}

/// What one pass over some segments' records found.
#[derive(Default)]
pub(crate) struct RecordPass {
    pub(crate) recipients: u64,
    /// Per domain: counts by state, and queued recipients in id order.
    pub(crate) domains: FastMap<String, (Counts, Vec<RecipientId>)>,
    pub(crate) deferred: Vec<(RecipientId, String, crate::Retry)>,
    /// Non-final recipients per segment.
    pub(crate) live: Vec<(u32, u64)>,
}

pub(crate) fn record_pass(
    segs: &[(u32, &Seg)],
    retries: &std::collections::HashMap<RecipientId, crate::Retry>,
) -> RecordPass {
    let mut out = RecordPass::default();
    for &(no, seg) in segs {
        let mut live = 0;
        for (i, &st) in seg.states.iter().enumerate() {
            let state = State::from_u8(st);
            out.recipients += 1;
            if !state.is_final() {
                live += 1;
            }
            let Some(r) = seg.record(i as u32) else {
                continue;
            };
            let domain = r.domain();
            let entry = match out.domains.get_mut(domain) {
                Some(e) => e,
                None => out.domains.entry(domain.to_string()).or_default(),
            };
            entry.0.add(state, 1);
            let id = RecipientId::new(no, i as u32);
            match state {
                State::Queued => entry.1.push(id),
                State::Deferred => {
                    let retry = retries.get(&id).copied().unwrap_or(crate::Retry {
                        attempts: 0,
                        next_ms: 0,
                    });
                    out.deferred.push((id, domain.to_string(), retry));
                }
                _ => {}
            }
        }
        out.live.push((no, live));
        if let Some(m) = &seg.map {
            segment::release(m);
        }
    }
    out
}
