//! The segment half of opening a spool: scan every segment file against
//! what the checkpoint and journal say it holds.
//!
//! Records that fail their CRC, that the journal says exist but the file
//! lacks, and whole missing files make their pending recipients `Lost`,
//! reported by id and campaign. Unknown files newer than every known segment
//! are adopted (appended just before a crash), older ones deleted (left over
//! from reclamation). A torn tail of the newest segment is cut. Exposure:
//! file contents may be damaged; nothing here panics on them.
//!
//! [`segments`] runs these phases per file, in order: [`leftover`] (delete
//! what reclamation left), [`open_checked`] (header), [`read_records`]
//! (scan, repair or report a torn region), [`install`] (offsets and map into
//! the index, adopt records the journal does not know, maybe resume
//! appending), [`lose_unreadable`]; then [`lose_missing`] for files that are
//! gone. The pass over the records that follows is [`crate::census`].

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use crate::error::{IoContext, Result};
use crate::index::Index;
use crate::layout::sorted_entries;
use crate::report::{Damage, OpenReport};
use crate::segment::{self, LOST, SEGMENT_BYTES, Scan};
use crate::spool::SegWriter;
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

/// A segment file found on disk.
struct SegFile {
    no: u32,
    path: PathBuf,
    /// The highest-numbered file: the only one an append can have been
    /// cut short in.
    newest: bool,
}

/// Scans the segment files; returns the writer for the newest one when it
/// can take more records.
pub(crate) fn segments(
    dir: &Path,
    index: &mut Index,
    retired: &BTreeSet<u32>,
    report: &mut OpenReport,
) -> Result<Option<SegWriter>> {
    let max_known = highest_known(index, retired);
    let files = segment_files(dir)?;
    let mut found = BTreeSet::new();
    let mut writer = None;
    for f in files {
        if retired.contains(&f.no) || (!index.segs.contains_key(&f.no) && f.no <= max_known) {
            leftover(&f);
            continue;
        }
        let Some((file, map)) = open_checked(dir, index, &f, report)? else {
            continue;
        };
        found.insert(f.no);
        index.next_segment = index.next_segment.max(f.no.saturating_add(1));
        let (scan, map) = read_records(index, &f, &file, map, report)?;
        if let Some(w) = install(index, &f, file, map, scan) {
            writer = Some(w);
        }
        lose_unreadable(index, &f, report);
    }
    lose_missing(dir, index, &found, report);
    Ok(writer)
}

/// The highest segment number the checkpoint and journal know of (files
/// numbered up to it that they do not hold were reclaimed).
fn highest_known(index: &Index, retired: &BTreeSet<u32>) -> u32 {
    index
        .segs
        .keys()
        .next_back()
        .copied()
        .unwrap_or(0)
        .max(retired.iter().next_back().copied().unwrap_or(0))
        .max(index.next_segment.saturating_sub(1))
}

/// The segment files on disk, by number.
fn segment_files(dir: &Path) -> Result<Vec<SegFile>> {
    let mut files: Vec<SegFile> = sorted_entries(&dir.join("segments"))?
        .into_iter()
        .filter_map(|(n, path)| {
            segment::parse_name(&n).map(|no| SegFile {
                no,
                path,
                newest: false,
            })
        })
        .collect();
    files.sort_by_key(|f| f.no);
    if let Some(last) = files.last_mut() {
        last.newest = true;
    }
    Ok(files)
}

/// Deletes a segment file that reclamation had retired (or that the index
/// no longer holds) when a crash stopped it.
fn leftover(f: &SegFile) {
    tracing::info!(path = %f.path.display(), "deleting a reclaimed segment left behind by a crash");
    let _ = fs::remove_file(&f.path);
}

/// Opens and maps a segment file and checks its header. `None` when the
/// file cannot be used: a creation that a crash cut short (removed) or a
/// damaged header (reported; the file is left alone).
fn open_checked(
    dir: &Path,
    index: &mut Index,
    f: &SegFile,
    report: &mut OpenReport,
) -> Result<Option<(File, Mmap)>> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&f.path)
        .ctx("open segment", &f.path)?;
    let map = segment::map(&file, &f.path)?;
    let Err(e) = segment::check_header(&map, f.no, &f.path) else {
        return Ok(Some((file, map)));
    };
    // a new segment's number is never reused, whatever its file holds
    index.next_segment = index.next_segment.max(f.no.saturating_add(1));
    if f.newest && !index.segs.contains_key(&f.no) && map.iter().all(|b| *b == 0) {
        // killed between creating the file and syncing its header: no
        // record was ever acknowledged in it
        tracing::info!(path = %f.path.display(), "removing a segment whose creation a crash cut short");
        drop(map);
        drop(file);
        fs::remove_file(&f.path).ctx("remove unfinished segment", &f.path)?;
        crate::fsync_dir(&dir.join("segments"))?;
    } else {
        report
            .damage
            .push(Damage::note(&f.path, format!("{e}; segment ignored")));
    }
    Ok(None)
}

/// Scans a segment's records. A torn region is resolved here: intact
/// records the journal knows past it are found again, or a torn tail of
/// the newest file is cut (when every acknowledged record lies before it),
/// or it is reported. Returns the scan and the map (remapped after a cut).
fn read_records(
    index: &Index,
    f: &SegFile,
    file: &File,
    map: Mmap,
    report: &mut OpenReport,
) -> Result<(Scan, Mmap)> {
    let mut scan = segment::scan(&map);
    // the scan touched every page: drop them from this process's memory
    // (the page cache keeps them for the pass below)
    segment::release(&map);
    if !scan.torn {
        return Ok((scan, map));
    }
    let expected = expected_records(index, f.no);
    let before = scan.offsets.len();
    let past = segment::resync(&map, scan.end).filter(|r| before + r.offsets.len() <= expected);
    let mut map = map;
    let what = if let Some(r) = past {
        // acknowledged records after the damage: the last ones the journal
        // knows; only the records in between are lost
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
    } else if f.newest && before >= expected {
        // every acknowledged record is before it: an append cut short
        segment::cut_tail(file, &f.path, scan.end)?;
        drop(map);
        map = segment::map(file, &f.path)?;
        format!(
            "torn tail at offset {} cut (an unacknowledged append)",
            scan.end
        )
    } else {
        format!("unreadable data after offset {}", scan.end)
    };
    report.damage.push(Damage::note(&f.path, what));
    Ok((scan, map))
}

/// Records the checkpoint and journal say segment `no` holds.
fn expected_records(index: &Index, no: u32) -> usize {
    index.segs.get(&no).map_or(0, |s| s.states.len())
}

/// Puts a scanned segment into the index: its record offsets (records the
/// index expects but the file lacks are marked lost) and map, and the
/// records on disk the journal does not know (appended just before a
/// crash), which are adopted: delivered at least once. Returns a writer
/// when appending continues in this segment.
fn install(index: &mut Index, f: &SegFile, file: File, map: Mmap, scan: Scan) -> Option<SegWriter> {
    let seg = index.segs.entry(f.no).or_default();
    let expected = seg.states.len();
    let found = scan.offsets.len();
    let mut offsets = scan.offsets;
    offsets.resize(found.max(expected), LOST);
    seg.offsets = offsets;
    seg.map = Some(map);
    if found > expected {
        seg.states.resize(found, State::Queued as u8);
        seg.pending += (found - expected) as u64;
        seg.journaled = found as u32;
        adopt(index, f.no, expected as u32..found as u32);
    }
    // Appending continues in this segment only when its file holds every
    // record the index knows: a record index must always equal the
    // record's position in the file.
    let seg = index.segs.get(&f.no)?;
    let end = scan.end as u64;
    (f.newest && !seg.sealed && end < SEGMENT_BYTES && found >= expected).then(|| SegWriter {
        no: f.no,
        file: Arc::new(file),
        pos: end,
        count: seg.offsets.len() as u32,
    })
}

/// Counts adopted records (already in the segment's states) in their
/// campaigns and campaign runs.
fn adopt(index: &mut Index, no: u32, records: std::ops::Range<u32>) {
    let Some(seg) = index.segs.get_mut(&no) else {
        return;
    };
    for i in records {
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
}

/// Makes lost the records of a segment that fail their CRC or that the
/// journal says exist but the file does not hold, and reports them.
fn lose_unreadable(index: &mut Index, f: &SegFile, report: &mut OpenReport) {
    let bad: Vec<u32> = index.segs[&f.no]
        .offsets
        .iter()
        .enumerate()
        .filter(|(_, o)| **o == LOST)
        .map(|(i, _)| i as u32)
        .collect();
    let mut lost = Vec::new();
    let mut lost_campaigns = BTreeSet::new();
    for i in bad {
        lose(index, f.no, i, &mut lost, &mut lost_campaigns);
    }
    if !lost.is_empty() {
        report.damage.push(Damage {
            path: f.path.clone(),
            what: format!("{} recipient record(s) damaged or missing", lost.len()),
            lost,
            campaigns: lost_campaigns.into_iter().collect(),
        });
    }
}

/// Makes lost the pending recipients of segments the journal knows but
/// whose file is gone, and reports them.
fn lose_missing(dir: &Path, index: &mut Index, found: &BTreeSet<u32>, report: &mut OpenReport) {
    let missing: Vec<u32> = index
        .segs
        .keys()
        .filter(|no| !found.contains(no))
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
            seg.pending = 0;
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
}
