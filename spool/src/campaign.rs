//! Campaign files: each campaign is stored once, in its own small file, or
//! with the others of its group in a pack.
//!
//! `campaigns/NNNNNNNN.cmp` holds a 16-byte magic and one frame with the
//! archived [`CampaignRecord`]; a pack `campaigns/FFFFFFFF-LLLLLLLL.cmp`
//! holds the magic and one frame per campaign numbered F to L (campaigns
//! created together: ready-made messages accepted in one group, so a group
//! costs one file sync). A file is written to a temporary name, synced,
//! linked into place and the directory synced, so its campaigns are either
//! wholly present or absent after a crash; an existing file is never
//! replaced, and numbers are never reused (not even an unreadable file's). Exposure: file contents
//! may be damaged; a damaged campaign file is reported, never trusted.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, IoContext, Result};
use crate::frame;
use crate::record::{CampaignRecord, decode_campaign, encode_campaign};

const MAGIC: &[u8; 16] = b"VLYCAMP1\0\0\0\0\0\0\0\0";
const MAX_CAMPAIGN: usize = 64 << 20;

/// A campaign as the spool knows it.
#[derive(Debug)]
pub struct Campaign {
    /// Small number used in recipient records.
    pub no: u32,
    /// The user's campaign id.
    pub id: String,
    /// When the campaign was accepted (ms since the Unix epoch).
    pub created_ms: u64,
    /// The engine's serialized campaign definition.
    pub body: Vec<u8>,
    pub(crate) sealed: AtomicBool,
}

impl Campaign {
    /// True once the whole recipient list is in the spool.
    pub fn is_sealed(&self) -> bool {
        self.sealed.load(Ordering::Acquire)
    }
}

pub(crate) fn path(dir: &Path, no: u32) -> PathBuf {
    dir.join("campaigns").join(format!("{no:08}.cmp"))
}

/// Writes campaigns durably, never over an existing campaign file: every
/// file is written first, then all are synced, linked into place, and the
/// directory synced once, so a batch shares its syncs. On an error the
/// campaigns whose files are in place (see [`path`]) are stored; the others
/// are not.
pub(crate) fn write_all(dir: &Path, recs: &[CampaignRecord]) -> Result<()> {
    let (Some(first), Some(last)) = (recs.first(), recs.last()) else {
        return Ok(());
    };
    let final_path = file_of(dir, first.no, last.no);
    let tmp = final_path.with_extension("tmp");
    let result = write_file(&tmp, &final_path, recs);
    let _ = fs::remove_file(&tmp);
    result?;
    crate::fsync_dir(&dir.join("campaigns"))
}

/// The file holding campaigns `first..=last` (one campaign: its own file).
pub(crate) fn file_of(dir: &Path, first: u32, last: u32) -> PathBuf {
    if first == last {
        path(dir, first)
    } else {
        dir.join("campaigns")
            .join(format!("{first:08}-{last:08}.cmp"))
    }
}

/// Whether the file of a batch written by [`write_all`] is in place.
pub(crate) fn is_placed(dir: &Path, recs: &[CampaignRecord]) -> bool {
    match (recs.first(), recs.last()) {
        (Some(f), Some(l)) => file_of(dir, f.no, l.no).exists(),
        _ => false,
    }
}

fn write_file(tmp: &Path, final_path: &Path, recs: &[CampaignRecord]) -> Result<()> {
    let mut bytes = Vec::with_capacity(
        MAGIC.len()
            + recs
                .iter()
                .map(|r| r.body.len() + r.id.len() + 64)
                .sum::<usize>(),
    );
    bytes.extend_from_slice(MAGIC);
    for rec in recs {
        let payload = encode_campaign(rec)?;
        if payload.len() > MAX_CAMPAIGN {
            return Err(Error::CampaignTooLarge {
                id: rec.id.clone(),
                size: payload.len(),
                limit: MAX_CAMPAIGN,
            });
        }
        frame::encode(&mut bytes, &payload);
    }
    let mut f = File::create(tmp).ctx("create campaign file", tmp)?;
    f.write_all(&bytes).ctx("write campaign file", tmp)?;
    f.sync_all().ctx("sync campaign file", tmp)?;
    // a link fails if the name exists: an unreadable campaign file is
    // never replaced
    fs::hard_link(tmp, final_path).ctx("install campaign file", final_path)
}

/// The highest campaign number with a file in the spool (readable or not;
/// a pack counts with its last number).
pub(crate) fn highest_file_no(dir: &Path) -> Result<u32> {
    let d = dir.join("campaigns");
    let mut max = 0;
    for e in fs::read_dir(&d).ctx("list campaigns", &d)? {
        let e = e.ctx("list campaigns", &d)?;
        let name = e.file_name();
        if let Some(no) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".cmp"))
            .map(|n| n.rsplit('-').next().unwrap_or(n))
            .and_then(|n| n.parse::<u32>().ok())
        {
            max = max.max(no);
        }
    }
    Ok(max)
}

/// The campaign numbers each file in `campaigns/` holds, `(first, last)`
/// (from the names; files of other names are left out).
pub(crate) fn ranges(dir: &Path) -> Result<Vec<(u32, u32)>> {
    let d = dir.join("campaigns");
    let mut out = Vec::new();
    for e in fs::read_dir(&d).ctx("list campaigns", &d)? {
        let e = e.ctx("list campaigns", &d)?;
        let name = e.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".cmp")) else {
            continue;
        };
        let (a, b) = stem.split_once('-').unwrap_or((stem, stem));
        if let (Ok(first), Ok(last)) = (a.parse::<u32>(), b.parse::<u32>())
            && first <= last
        {
            out.push((first, last));
        }
    }
    Ok(out)
}

/// Reads a campaign file or pack (damage is an `Err` with the reason).
pub(crate) fn read(p: &Path) -> std::result::Result<Vec<CampaignRecord>, String> {
    let bytes = fs::read(p).map_err(|e| e.to_string())?;
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err("bad magic".into());
    }
    let mut out = Vec::new();
    let mut pos = MAGIC.len();
    loop {
        match frame::read(&bytes, pos, MAX_CAMPAIGN) {
            frame::Read::Frame { payload, next } => {
                // rkyv needs the payload aligned; copy into an aligned buffer.
                let mut aligned = rkyv::util::AlignedVec::<16>::new();
                aligned.extend_from_slice(payload);
                out.push(decode_campaign(&aligned)?);
                pos = next;
            }
            frame::Read::End if !out.is_empty() => return Ok(out),
            other => return Err(format!("campaign frame unreadable: {other:?}")),
        }
    }
}
