//! Campaign files: each campaign is stored once, in its own small file.
//!
//! `campaigns/NNNNNNNN.cmp` holds a 16-byte magic and one frame with the
//! archived [`CampaignRecord`]. A campaign file is written to a temporary
//! name, synced, linked into place and the directory synced, so a campaign
//! is either wholly present or absent after a crash; an existing file is
//! never replaced, and numbers are never reused (not even an unreadable
//! file's). Exposure: file contents
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
    let mut files = Vec::with_capacity(recs.len());
    let result = write_files(dir, recs, &mut files);
    for (tmp, _) in &files {
        let _ = fs::remove_file(tmp);
    }
    result
}

fn write_files(
    dir: &Path,
    recs: &[CampaignRecord],
    files: &mut Vec<(PathBuf, File)>,
) -> Result<()> {
    for rec in recs {
        let final_path = path(dir, rec.no);
        let tmp = final_path.with_extension("tmp");
        let payload = encode_campaign(rec)?;
        if payload.len() > MAX_CAMPAIGN {
            return Err(Error::CampaignTooLarge {
                id: rec.id.clone(),
                size: payload.len(),
                limit: MAX_CAMPAIGN,
            });
        }
        let mut bytes = Vec::with_capacity(MAGIC.len() + payload.len() + 16);
        bytes.extend_from_slice(MAGIC);
        frame::encode(&mut bytes, &payload);
        let mut f = File::create(&tmp).ctx("create campaign file", &tmp)?;
        files.push((
            tmp.clone(),
            f.try_clone().ctx("create campaign file", &tmp)?,
        ));
        f.write_all(&bytes).ctx("write campaign file", &tmp)?;
    }
    for (tmp, f) in files.iter() {
        f.sync_all().ctx("sync campaign file", tmp)?;
    }
    for (rec, (tmp, _)) in recs.iter().zip(files.iter()) {
        // a link fails if the name exists: an unreadable campaign file is
        // never replaced
        let final_path = path(dir, rec.no);
        fs::hard_link(tmp, &final_path).ctx("install campaign file", &final_path)?;
    }
    crate::fsync_dir(&dir.join("campaigns"))
}

/// The highest campaign number with a file in the spool (readable or not).
pub(crate) fn highest_file_no(dir: &Path) -> Result<u32> {
    let d = dir.join("campaigns");
    let mut max = 0;
    for e in fs::read_dir(&d).ctx("list campaigns", &d)? {
        let e = e.ctx("list campaigns", &d)?;
        let name = e.file_name();
        if let Some(no) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".cmp"))
            .and_then(|n| n.parse::<u32>().ok())
        {
            max = max.max(no);
        }
    }
    Ok(max)
}

/// Reads a campaign file (damage is an `Err` with the reason).
pub(crate) fn read(p: &Path) -> std::result::Result<CampaignRecord, String> {
    let bytes = fs::read(p).map_err(|e| e.to_string())?;
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err("bad magic".into());
    }
    match frame::read(&bytes, MAGIC.len(), MAX_CAMPAIGN) {
        frame::Read::Frame { payload, .. } => {
            // rkyv needs the payload aligned; copy into an aligned buffer.
            let mut aligned = rkyv::util::AlignedVec::<16>::new();
            aligned.extend_from_slice(payload);
            decode_campaign(&aligned)
        }
        other => Err(format!("campaign frame unreadable: {other:?}")),
    }
}
