//! Checkpoints: a snapshot of every recipient's state at a journal position,
//! so that opening the spool replays only the journal written since.
//!
//! Contents: the position, sealed campaigns, each segment (sealed flag,
//! last journal position touching it, campaign runs, acceptance-time runs,
//! one state byte per recipient), deferred recipients' attempt counts and
//! retry times, and the per-campaign and per-domain counts. One CRC covers
//! the file. Format 2 added the acceptance-time runs; format 1 is still
//! read (its segments come without them, see [`SegState::accepted`]). Written to a
//! temporary name, synced and renamed over `checkpoint`; the previous one is
//! kept as `checkpoint.prev` (a fallback if the newest is damaged). Pure
//! encoding plus thin file I/O. Exposure: file contents may be damaged;
//! decoding is bounds-checked and never panics.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::RecipientId;
use crate::accepted::{AcceptedTimes, TimeRun};
use crate::error::{IoContext, Result};
use crate::index::Retry;
use crate::summary::{CampaignCounts, Counts, Summary};

/// Magic of the format written; the last byte is the format version.
const MAGIC: &[u8; 8] = b"VLYCKPT2";
/// Magic of format 1 (no acceptance times).
const MAGIC_1: &[u8; 8] = b"VLYCKPT1";

/// Records `first..` of a segment belong to `campaign` (until the next run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub first: u32,
    pub campaign: u32,
}

/// A segment as a checkpoint stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegState {
    pub(crate) no: u32,
    pub(crate) sealed: bool,
    pub(crate) last_pos: u64,
    pub(crate) runs: Vec<Run>,
    /// `None` from a format 1 checkpoint, which did not store them.
    pub(crate) accepted: Option<AcceptedTimes>,
    pub(crate) states: Vec<u8>,
}

/// A checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    /// Journal position from which replay continues.
    pub(crate) position: u64,
    /// Segment numbers below this were used.
    pub(crate) next_segment: u32,
    pub(crate) sealed_campaigns: Vec<u32>,
    pub(crate) segments: Vec<SegState>,
    pub(crate) retries: Vec<(RecipientId, Retry)>,
    pub(crate) summary: Summary,
}

struct W(Vec<u8>);

impl W {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    fn counts(&mut self, c: &Counts) {
        for v in c.to_array() {
            self.u64(v);
        }
    }
}

struct R<'a>(&'a [u8]);

impl<'a> R<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("checkpoint ends early".into());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> std::result::Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> std::result::Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> std::result::Result<u64, String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn bytes(&mut self) -> std::result::Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    /// A count of items, each at least `min` bytes (guards allocations).
    fn len(&mut self, min: usize) -> std::result::Result<usize, String> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min) > self.0.len() {
            return Err("checkpoint count exceeds its size".into());
        }
        Ok(n)
    }
    fn counts(&mut self) -> std::result::Result<Counts, String> {
        let mut a = [0u64; 6];
        for v in &mut a {
            *v = self.u64()?;
        }
        Ok(Counts::from_array(a))
    }
}

impl Checkpoint {
    /// Encodes the checkpoint (pure).
    pub(crate) fn encode(&self) -> Vec<u8> {
        self.encode_as(2)
    }

    /// Encodes in format `version` (1 leaves out acceptance times).
    pub(crate) fn encode_as(&self, version: u8) -> Vec<u8> {
        let mut w = W(Vec::with_capacity(
            64 + self
                .segments
                .iter()
                .map(|s| s.states.len() + 32)
                .sum::<usize>(),
        ));
        w.0.extend_from_slice(if version == 1 { MAGIC_1 } else { MAGIC });
        w.u64(self.position);
        w.u32(self.next_segment);
        w.u32(self.sealed_campaigns.len() as u32);
        for c in &self.sealed_campaigns {
            w.u32(*c);
        }
        w.u32(self.segments.len() as u32);
        for s in &self.segments {
            w.u32(s.no);
            w.u8(u8::from(s.sealed));
            w.u64(s.last_pos);
            w.u32(s.runs.len() as u32);
            for r in &s.runs {
                w.u32(r.first);
                w.u32(r.campaign);
            }
            if version >= 2 {
                let times = s.accepted.as_ref().map_or(&[][..], |a| a.runs());
                w.u32(times.len() as u32);
                for t in times {
                    w.u32(t.first);
                    w.u64(t.ms);
                }
            }
            w.bytes(&s.states);
        }
        w.u32(self.retries.len() as u32);
        for (id, r) in &self.retries {
            w.u64(id.0);
            w.u32(r.attempts);
            w.u64(r.next_ms);
        }
        let mut campaigns: Vec<_> = self.summary.campaigns.iter().collect();
        campaigns.sort_by_key(|(no, _)| **no);
        w.u32(campaigns.len() as u32);
        for (no, c) in campaigns {
            w.u32(*no);
            w.u32(c.last_row);
            w.counts(&c.counts);
        }
        w.u32(self.summary.domains.len() as u32);
        for (d, c) in &self.summary.domains {
            w.bytes(d.as_bytes());
            w.counts(c);
        }
        let crc = crc32fast::hash(&w.0);
        w.u32(crc);
        w.0
    }

    /// Decodes a checkpoint (damage is an `Err` with the reason).
    pub(crate) fn decode(b: &[u8]) -> std::result::Result<Checkpoint, String> {
        let version = match b.get(..MAGIC.len()) {
            Some(m) if m == MAGIC => 2,
            Some(m) if m == MAGIC_1 => 1,
            _ => return Err("bad magic".into()),
        };
        if b.len() < MAGIC.len() + 4 {
            return Err("checkpoint ends early".into());
        }
        let (body, crc) = b.split_at(b.len() - 4);
        if crc32fast::hash(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
            return Err("CRC mismatch".into());
        }
        let mut r = R(&body[MAGIC.len()..]);
        let position = r.u64()?;
        let next_segment = r.u32()?;
        let n = r.len(4)?;
        let sealed_campaigns = (0..n)
            .map(|_| r.u32())
            .collect::<std::result::Result<_, _>>()?;
        let n = r.len(21)?;
        let mut segments = Vec::with_capacity(n);
        for _ in 0..n {
            let no = r.u32()?;
            let sealed = r.u8()? != 0;
            let last_pos = r.u64()?;
            let runs_n = r.len(8)?;
            let runs = (0..runs_n)
                .map(|_| {
                    Ok(Run {
                        first: r.u32()?,
                        campaign: r.u32()?,
                    })
                })
                .collect::<std::result::Result<_, String>>()?;
            let accepted = if version >= 2 {
                let n = r.len(12)?;
                let times = (0..n)
                    .map(|_| {
                        Ok(TimeRun {
                            first: r.u32()?,
                            ms: r.u64()?,
                        })
                    })
                    .collect::<std::result::Result<_, String>>()?;
                Some(AcceptedTimes::from_runs(times).map_err(|e| format!("segment {no}: {e}"))?)
            } else {
                None
            };
            let states = r.bytes()?.to_vec();
            segments.push(SegState {
                no,
                sealed,
                last_pos,
                runs,
                accepted,
                states,
            });
        }
        let n = r.len(20)?;
        let mut retries = Vec::with_capacity(n);
        for _ in 0..n {
            let id = RecipientId(r.u64()?);
            retries.push((
                id,
                Retry {
                    attempts: r.u32()?,
                    next_ms: r.u64()?,
                },
            ));
        }
        let n = r.len(56)?;
        let mut campaigns =
            crate::summary::FastMap::with_capacity_and_hasher(n, Default::default());
        for _ in 0..n {
            let no = r.u32()?;
            let last_row = r.u32()?;
            campaigns.insert(
                no,
                CampaignCounts {
                    counts: r.counts()?,
                    last_row,
                },
            );
        }
        let n = r.len(52)?;
        let mut domains = crate::summary::FastMap::with_capacity_and_hasher(n, Default::default());
        for _ in 0..n {
            let d = std::str::from_utf8(r.bytes()?)
                .map_err(|_| "domain is not UTF-8")?
                .to_string();
            domains.insert(d, r.counts()?);
        }
        if !r.0.is_empty() {
            return Err("trailing bytes".into());
        }
        Ok(Checkpoint {
            position,
            next_segment,
            sealed_campaigns,
            segments,
            retries,
            summary: Summary { campaigns, domains },
        })
    }
}

/// Writes `bytes` as the new checkpoint durably, keeping the old one as
/// `checkpoint.prev`.
pub(crate) fn write(dir: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join("checkpoint.tmp");
    let cur = dir.join("checkpoint");
    let mut f = fs::File::create(&tmp).ctx("create checkpoint", &tmp)?;
    f.write_all(bytes).ctx("write checkpoint", &tmp)?;
    f.sync_all().ctx("sync checkpoint", &tmp)?;
    if cur.exists() {
        fs::rename(&cur, dir.join("checkpoint.prev")).ctx("keep previous checkpoint", &cur)?;
    }
    fs::rename(&tmp, &cur).ctx("install checkpoint", &cur)?;
    crate::fsync_dir(dir)
}

/// Reads the newest usable checkpoint. Returns it (if any) and what was
/// wrong with newer ones.
pub(crate) fn read(dir: &Path) -> (Option<Checkpoint>, Vec<String>) {
    let mut problems = Vec::new();
    for name in ["checkpoint", "checkpoint.prev"] {
        let p = dir.join(name);
        match fs::read(&p) {
            Ok(b) => match Checkpoint::decode(&b) {
                Ok(c) => return (Some(c), problems),
                Err(e) => problems.push(format!("{}: {e}", p.display())),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => problems.push(format!("{}: {e}", p.display())),
        }
    }
    (None, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Checkpoint {
        let mut summary = Summary::default();
        summary.add(1, "a.test", crate::State::Queued, 3);
        summary.saw_row(1, 9);
        Checkpoint {
            position: 4242,
            next_segment: 4,
            sealed_campaigns: vec![1],
            segments: vec![SegState {
                no: 3,
                sealed: true,
                last_pos: 100,
                runs: vec![Run {
                    first: 0,
                    campaign: 1,
                }],
                accepted: Some(
                    AcceptedTimes::from_runs(vec![
                        TimeRun { first: 0, ms: 5000 },
                        TimeRun { first: 2, ms: 9000 },
                        TimeRun { first: 3, ms: 0 },
                    ])
                    .unwrap(),
                ),
                states: vec![0, 2, 1],
            }],
            retries: vec![(
                RecipientId::new(3, 2),
                Retry {
                    attempts: 1,
                    next_ms: 77,
                },
            )],
            summary,
        }
    }

    #[test]
    fn format_1_is_read_without_acceptance_times() {
        let c = sample();
        let old = c.encode_as(1);
        assert_eq!(&old[..8], b"VLYCKPT1");
        let mut expected = c.clone();
        expected.segments[0].accepted = None;
        assert_eq!(Checkpoint::decode(&old).unwrap(), expected);
        assert_eq!(&c.encode()[..8], b"VLYCKPT2");
    }

    #[test]
    fn round_trip_and_damage() {
        let c = sample();
        let b = c.encode();
        assert_eq!(Checkpoint::decode(&b).unwrap(), c);
        for i in 0..b.len() {
            let mut d = b.clone();
            d[i] ^= 0x10;
            assert!(Checkpoint::decode(&d).is_err(), "flip at {i} not detected");
        }
        for cut in 0..b.len() {
            assert!(Checkpoint::decode(&b[..cut]).is_err());
        }
    }
}
