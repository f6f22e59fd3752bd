//! The journal: an append-only log of everything that changes recipients'
//! states and the spool's shape, split over files (see [`files`]).
//!
//! Entries are self-describing: an outcome carries the recipient's campaign,
//! address and previous state (stamped by the spool when it is written), a
//! batch append carries its per-domain counts, so per-campaign and
//! per-domain counts can be rebuilt from a checkpoint and the journal tail
//! alone. Each outcome also carries an opaque `detail` (the engine's event
//! data), so notification sinks can publish events from the journal with
//! their own cursor. Encoding is little-endian and fixed-layout; decoding is
//! total (bad bytes give an error, never a panic). Exposure: bytes come from
//! disk.

pub mod files;
pub(crate) mod floor;

use crate::summary::Counts;
use crate::{RecipientId, State};

/// Largest entry payload (detail is truncated to fit by the writer).
pub const MAX_ENTRY: usize = 64 * 1024;
const FIXED: usize = 40;

/// Kind of a journal entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// Temporary failure; retry at `next_ms`.
    Deferred = 1,
    /// Accepted by the receiving server (final).
    Delivered = 2,
    /// Permanently refused, or given up after the maximum age (final).
    Bounced = 3,
    /// The message could not be produced, e.g. a template error (final).
    Failed = 4,
    /// The campaign's recipient list is completely in the spool
    /// (`campaign`).
    CampaignSealed = 16,
    /// `records` records were appended from `id` on, for `campaign`, with
    /// list rows up to `last_row`, accepted at `at_ms`; `detail` holds the
    /// per-domain counts.
    Appended = 17,
    /// Segment `id.segment()` was created.
    SegmentCreated = 18,
    /// Segment `id.segment()` is complete with `records` records.
    SegmentSealed = 19,
    /// Segment `id.segment()` was deleted: every recipient in it was final
    /// and published; `detail` holds the per-domain counts it took away.
    SegmentRetired = 20,
    /// Feedback about a recipient's mail that came back later (a bounce
    /// report, a complaint, an unsubscribe): `campaign` and `email` are
    /// given by the writer, `id` is the recipient (a shared message's
    /// first), `detail` the engine's event data. Changes no state.
    Feedback = 21,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Deferred,
            2 => Kind::Delivered,
            3 => Kind::Bounced,
            4 => Kind::Failed,
            16 => Kind::CampaignSealed,
            17 => Kind::Appended,
            18 => Kind::SegmentCreated,
            19 => Kind::SegmentSealed,
            20 => Kind::SegmentRetired,
            21 => Kind::Feedback,
            _ => return None,
        })
    }

    /// A recipient outcome (as opposed to a spool-level mark).
    pub fn is_outcome(self) -> bool {
        self.outcome_state().is_some()
    }

    /// The state a recipient outcome puts its recipient in.
    pub fn outcome_state(self) -> Option<State> {
        Some(match self {
            Kind::Deferred => State::Deferred,
            Kind::Delivered => State::Delivered,
            Kind::Bounced => State::Bounced,
            Kind::Failed => State::Failed,
            _ => return None,
        })
    }
}

/// One journal entry.
///
/// Each field has one meaning; fields that do not apply to the entry's kind
/// are 0. On disk, `records` shares the slot of `attempts` and `last_row`
/// that of `next_ms` (the kind says which one a slot holds), so the format
/// is the same as when one field served both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub id: RecipientId,
    /// Outcomes: delivery attempts made so far (including the one this
    /// entry reports).
    pub attempts: u32,
    /// When the change happened (ms since the Unix epoch); for `Appended`,
    /// when the spool accepted the records.
    pub at_ms: u64,
    /// For `Deferred`: when to try again (ms since the Unix epoch).
    pub next_ms: u64,
    /// `Appended` and `SegmentSealed`: how many records.
    pub records: u32,
    /// `Appended`: the highest list row among the records.
    pub last_row: u32,
    /// Opaque data for notification sinks (outcomes), or domain counts.
    pub detail: Vec<u8>,
    /// Stamped by the spool: the recipient's state before this entry.
    pub prev: State,
    /// Stamped by the spool (outcomes); given (campaign entries).
    pub campaign: u32,
    /// Stamped by the spool: the recipient's address (outcomes), so events
    /// can be published without the recipient's record.
    pub email: String,
}

impl Entry {
    /// An outcome entry; the spool fills in `prev`, `campaign`, `domain`.
    pub fn outcome(
        kind: Kind,
        id: RecipientId,
        attempts: u32,
        at_ms: u64,
        next_ms: u64,
        detail: Vec<u8>,
    ) -> Entry {
        Entry {
            kind,
            id,
            attempts,
            at_ms,
            next_ms,
            records: 0,
            last_row: 0,
            detail,
            prev: State::Queued,
            campaign: 0,
            email: String::new(),
        }
    }

    /// The domain of the recipient's address.
    pub fn domain(&self) -> &str {
        crate::record::domain_of(&self.email)
    }

    /// A spool-level mark (campaign or segment entries) about `records`
    /// records (0 where the kind has none).
    pub(crate) fn mark(kind: Kind, id: RecipientId, campaign: u32, records: u32) -> Entry {
        let mut e = Entry::outcome(kind, id, 0, crate::now_ms(), 0, Vec::new());
        e.campaign = campaign;
        e.records = records;
        e
    }

    /// The two slots whose meaning depends on the kind: (attempts or
    /// records, next-attempt time or last row).
    fn slots(&self) -> (u32, u64) {
        if self.kind.is_outcome() {
            (self.attempts, self.next_ms)
        } else {
            (self.records, u64::from(self.last_row))
        }
    }

    /// Appends the encoded payload of this entry to `out`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let email = self.email.as_bytes();
        let email = if email.len() <= 1024 { email } else { &[][..] };
        let room = MAX_ENTRY - FIXED - email.len();
        let detail = &self.detail[..self.detail.len().min(room)];
        let (count, time_or_row) = self.slots();
        out.push(self.kind as u8);
        out.push(self.prev as u8);
        out.extend_from_slice(&(email.len() as u16).to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&self.id.0.to_le_bytes());
        out.extend_from_slice(&self.at_ms.to_le_bytes());
        out.extend_from_slice(&time_or_row.to_le_bytes());
        out.extend_from_slice(&self.campaign.to_le_bytes());
        out.extend_from_slice(&[0u8; 4]);
        out.extend_from_slice(email);
        out.extend_from_slice(detail);
    }

    /// Decodes an entry payload.
    pub fn decode(p: &[u8]) -> Result<Entry, String> {
        if p.len() < FIXED {
            return Err(format!(
                "entry of {} bytes is shorter than {FIXED}",
                p.len()
            ));
        }
        let kind = Kind::from_u8(p[0]).ok_or_else(|| format!("unknown entry kind {}", p[0]))?;
        let prev = State::try_from_u8(p[1]).ok_or_else(|| format!("unknown state {}", p[1]))?;
        let dlen = usize::from(u16::from_le_bytes([p[2], p[3]]));
        let u32_at = |i: usize| u32::from_le_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&p[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let email = p
            .get(FIXED..FIXED + dlen)
            .ok_or("address runs past the entry")
            .and_then(|d| std::str::from_utf8(d).map_err(|_| "address is not UTF-8"))?;
        let (count, time_or_row) = (u32_at(4), u64_at(24));
        let outcome = kind.is_outcome();
        Ok(Entry {
            kind,
            prev,
            attempts: if outcome { count } else { 0 },
            id: RecipientId(u64_at(8)),
            at_ms: u64_at(16),
            next_ms: if outcome { time_or_row } else { 0 },
            records: if outcome { 0 } else { count },
            last_row: if outcome {
                0
            } else {
                u32::try_from(time_or_row).unwrap_or(u32::MAX)
            },
            campaign: u32_at(32),
            email: email.to_string(),
            detail: p[FIXED + dlen..].to_vec(),
        })
    }
}

/// Encodes per-domain counts (for `Appended` and `SegmentRetired`).
pub(crate) fn encode_domain_counts<'a>(
    counts: impl IntoIterator<Item = (&'a str, Counts)>,
) -> Vec<u8> {
    let mut out = Vec::new();
    for (d, c) in counts {
        let d = &d.as_bytes()[..d.len().min(255)];
        out.push(d.len() as u8);
        out.extend_from_slice(d);
        for v in c.to_array() {
            out.extend_from_slice(&(v as u32).to_le_bytes());
        }
    }
    out
}

/// Decodes per-domain counts.
pub fn decode_domain_counts(mut b: &[u8]) -> Result<Vec<(&str, Counts)>, String> {
    let mut out = Vec::new();
    while let Some((&len, rest)) = b.split_first() {
        let len = usize::from(len);
        let need = len + 24;
        if rest.len() < need {
            return Err("domain counts run past the entry".into());
        }
        let d = std::str::from_utf8(&rest[..len]).map_err(|_| "domain is not UTF-8")?;
        let mut a = [0u64; 6];
        for (i, v) in a.iter_mut().enumerate() {
            let o = len + 4 * i;
            *v = u64::from(u32::from_le_bytes([
                rest[o],
                rest[o + 1],
                rest[o + 2],
                rest[o + 3],
            ]));
        }
        out.push((d, Counts::from_array(a)));
        b = &rest[need..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u64) -> Entry {
        let mut e = Entry::outcome(
            Kind::Deferred,
            RecipientId(i),
            2,
            1000 + i,
            2000 + i,
            format!("451 4.3.0 try later {i}").into_bytes(),
        );
        e.prev = State::Queued;
        e.campaign = 7;
        e.email = "someone@example.org".into();
        e
    }

    #[test]
    fn encode_decode() {
        let e = entry(42);
        let mut p = Vec::new();
        e.encode(&mut p);
        assert_eq!(Entry::decode(&p).unwrap(), e);
        assert!(Entry::decode(&p[..10]).is_err());
        let mut bad = p.clone();
        bad[0] = 99;
        assert!(Entry::decode(&bad).is_err());
        let mut bad = p.clone();
        bad[2] = 200;
        assert!(Entry::decode(&bad).is_err());
    }

    #[test]
    fn marks_keep_their_counts_in_the_outcome_slots() {
        let mut e = Entry::mark(Kind::Appended, RecipientId::new(3, 10), 7, 5);
        e.last_row = 9;
        let mut p = Vec::new();
        e.encode(&mut p);
        // the layout written before the fields had names of their own
        assert_eq!(p[4..8], 5u32.to_le_bytes());
        assert_eq!(p[24..32], 9u64.to_le_bytes());
        let d = Entry::decode(&p).unwrap();
        assert_eq!(d, e);
        assert_eq!((d.records, d.last_row, d.attempts, d.next_ms), (5, 9, 0, 0));
        // an outcome's slots are its attempts and next-attempt time
        let o = entry(1);
        let mut p = Vec::new();
        o.encode(&mut p);
        assert_eq!(p[4..8], 2u32.to_le_bytes());
        let d = Entry::decode(&p).unwrap();
        assert_eq!(
            (d.attempts, d.next_ms, d.records, d.last_row),
            (2, 2001, 0, 0)
        );
    }

    #[test]
    fn domain_counts() {
        let c = Counts {
            queued: 5,
            ..Counts::default()
        };
        let b = encode_domain_counts([("a.test", c), ("b.test", Counts::default())]);
        let d = decode_domain_counts(&b).unwrap();
        assert_eq!(d, vec![("a.test", c), ("b.test", Counts::default())]);
        assert!(decode_domain_counts(&b[..b.len() - 1]).is_err());
    }
}
