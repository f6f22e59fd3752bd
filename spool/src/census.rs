//! One pass over every record at open, after the segments are scanned:
//! counts by state per domain, the queued and deferred work to hand to
//! delivery, and how many recipients each segment has pending (not final).
//!
//! Runs in parallel over segments (up to 8 threads); each thread drops the
//! pages it touched from the process's memory. Reads records through the
//! index, which validates every access. Exposure: record bytes come from
//! disk; unreadable records are skipped (they are already `Lost`).

use crate::index::{Index, Seg};
use crate::segment;
use crate::summary::{Counts, FastMap};
use crate::{RecipientId, Retry, State};

/// What one pass over the records found: per-domain counts, the work
/// waiting for delivery, and how many recipients each segment has pending.
#[derive(Default)]
pub(crate) struct Census {
    pub(crate) recipients: u64,
    /// Per domain: counts by state, and queued recipients in id order.
    pub(crate) domains: FastMap<String, (Counts, Vec<RecipientId>)>,
    pub(crate) deferred: Vec<(RecipientId, String, Retry)>,
    /// Non-final recipients per segment.
    pub(crate) pending_per_segment: Vec<(u32, u64)>,
}

impl Census {
    fn merge(&mut self, part: Census) {
        self.recipients += part.recipients;
        self.pending_per_segment.extend(part.pending_per_segment);
        self.deferred.extend(part.deferred);
        for (d, (c, ids)) in part.domains {
            let (total, queued) = self.domains.entry(d).or_default();
            for s in State::ALL {
                total.add(s, c.get(s));
            }
            queued.extend(ids);
        }
    }
}

/// One pass over every record, in parallel over segments (up to 8
/// threads).
pub(crate) fn census(index: &Index) -> Census {
    let segs: Vec<(u32, &Seg)> = index.segs.iter().map(|(&no, s)| (no, s)).collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let chunk = segs.len().div_ceil(threads).max(1);
    let parts: Vec<Census> = std::thread::scope(|scope| {
        let handles: Vec<_> = segs
            .chunks(chunk)
            .map(|part| scope.spawn(|| census_of(part, &index.retries)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut total = Census::default();
    for part in parts {
        total.merge(part);
    }
    total
}

/// The census of some segments.
fn census_of(
    segs: &[(u32, &Seg)],
    retries: &std::collections::HashMap<RecipientId, Retry>,
) -> Census {
    let mut out = Census::default();
    for &(no, seg) in segs {
        let mut pending = 0;
        for (i, &st) in seg.states.iter().enumerate() {
            let state = State::from_u8(st);
            out.recipients += 1;
            if !state.is_final() {
                pending += 1;
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
                    let retry = retries.get(&id).copied().unwrap_or(Retry {
                        attempts: 0,
                        next_ms: 0,
                    });
                    out.deferred.push((id, domain.to_string(), retry));
                }
                _ => {}
            }
        }
        out.pending_per_segment.push((no, pending));
        if let Some(m) = &seg.map {
            segment::release(m);
        }
    }
    out
}
