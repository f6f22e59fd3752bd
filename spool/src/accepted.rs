//! When the spool accepted each recipient of a segment, kept compactly.
//!
//! A recipient's acceptance time is the time of the `Appended` journal
//! entry that acknowledged its record. An append that follows the records
//! before it within [`ACCEPTED_GRANULE_MS`] of their time shares it, so
//! producers that append one recipient at a time cost one run per granule,
//! not one per recipient: a time is never later than the entry was
//! written, and less than one granule earlier (exact for the first append
//! of a run, such as every batch of an ingest).
//!
//! [`AcceptedTimes`] maps record indexes to times as runs `(first, ms)`:
//! records `first..` (up to the next run) were accepted at `ms`; 0 means
//! not known (yet): a batch not yet journaled, or records that recovery
//! adopts, which opening fills in. Invariants: runs are sorted by `first`,
//! neighbours hold different times, the first run's time is not 0 (before
//! it, times are 0) and the last run's time is 0 (times are known up to
//! it). Pure. Exposure: runs decoded from a checkpoint are validated by
//! [`AcceptedTimes::from_runs`].

/// Appends within this span of the records before them share their time
/// (a recipient's acceptance time is at most this much earlier than its
/// journal entry, never later).
pub const ACCEPTED_GRANULE_MS: u64 = 1000;

/// Records `first..` (until the next run) were accepted at `ms` (0: not
/// known).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeRun {
    pub(crate) first: u32,
    pub(crate) ms: u64,
}

/// Acceptance times of one segment's records (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AcceptedTimes {
    runs: Vec<TimeRun>,
}

/// The time records starting at `first` are given when accepted at `ms`:
/// the time of the record before them (`prev`, 0 when not known) when
/// that is at most one granule earlier, else `ms`.
fn coalesced(prev: u64, ms: u64) -> u64 {
    if prev != 0 && ms >= prev && ms - prev < ACCEPTED_GRANULE_MS {
        prev
    } else {
        ms
    }
}

impl AcceptedTimes {
    /// Rebuilds times from stored runs; `Err` when they break the
    /// invariants (out of order, or not in normal form).
    pub(crate) fn from_runs(runs: Vec<TimeRun>) -> Result<AcceptedTimes, &'static str> {
        if runs.windows(2).any(|w| w[0].first >= w[1].first) {
            return Err("acceptance runs out of order");
        }
        if runs.windows(2).any(|w| w[0].ms == w[1].ms)
            || runs.first().is_some_and(|r| r.ms == 0)
            || runs.last().is_some_and(|r| r.ms != 0)
        {
            return Err("acceptance runs not in normal form");
        }
        Ok(AcceptedTimes { runs })
    }

    pub(crate) fn runs(&self) -> &[TimeRun] {
        &self.runs
    }

    /// When record `index` was accepted (`None`: not known).
    pub(crate) fn at(&self, index: u32) -> Option<u64> {
        let ms = self.raw(index);
        (ms != 0).then_some(ms)
    }

    fn raw(&self, index: u32) -> u64 {
        let i = self.runs.partition_point(|r| r.first <= index);
        i.checked_sub(1).map_or(0, |i| self.runs[i].ms)
    }

    /// Records `first..end` were accepted at `ms` (or at the time of the
    /// records before them, up to a granule earlier). Appends at the end,
    /// the usual case, cost O(1).
    pub(crate) fn set(&mut self, first: u32, end: u32, ms: u64) {
        if first >= end {
            return;
        }
        let prev = first.checked_sub(1).map_or(0, |i| self.raw(i));
        let ms = coalesced(prev, ms);
        let after = self.raw(end);
        let lo = self.runs.partition_point(|r| r.first < first);
        let hi = self.runs.partition_point(|r| r.first <= end);
        self.runs.splice(
            lo..hi,
            [
                TimeRun { first, ms },
                TimeRun {
                    first: end,
                    ms: after,
                },
            ],
        );
        // back to normal form: drop runs that repeat their predecessor's
        // time; only the two new runs and the run after them can
        let mut k = lo;
        for _ in 0..3 {
            if k >= self.runs.len() {
                break;
            }
            let before = if k == 0 { 0 } else { self.runs[k - 1].ms };
            if self.runs[k].ms == before {
                self.runs.remove(k);
            } else {
                k += 1;
            }
        }
    }

    /// Gives records `0..len` whose time is not known the time `ms`.
    pub(crate) fn fill_unknown(&mut self, len: u32, ms: u64) {
        let mut gaps = Vec::new();
        let (mut start, mut time) = (0, 0);
        for r in &self.runs {
            if time == 0 && start < r.first {
                gaps.push((start, r.first));
            }
            (start, time) = (r.first, r.ms);
        }
        if time == 0 {
            gaps.push((start, u32::MAX));
        }
        for (a, b) in gaps {
            self.set(a, b.min(len), ms);
        }
    }

    /// The times of records `0..len` only.
    pub(crate) fn truncated(&self, len: u32) -> AcceptedTimes {
        let mut t = self.clone();
        let n = t.runs.partition_point(|r| r.first < len);
        t.runs.truncate(n);
        if t.runs.last().is_some_and(|r| r.ms != 0) {
            t.runs.push(TimeRun { first: len, ms: 0 });
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same operations on one time per record.
    fn model_set(m: &mut Vec<u64>, first: u32, end: u32, ms: u64) {
        if m.len() < end as usize {
            m.resize(end as usize, 0);
        }
        let prev = (first as usize).checked_sub(1).map_or(0, |i| m[i]);
        for v in &mut m[first as usize..end as usize] {
            *v = coalesced(prev, ms);
        }
    }

    fn check(t: &AcceptedTimes, m: &[u64]) {
        for (i, &v) in m.iter().enumerate() {
            assert_eq!(t.raw(i as u32), v, "record {i} in {:?}", t.runs);
        }
        assert_eq!(t.raw(m.len() as u32 + 5), 0);
        assert_eq!(AcceptedTimes::from_runs(t.runs.clone()).as_ref(), Ok(t));
    }

    #[test]
    fn appends_in_one_granule_share_a_run() {
        let mut t = AcceptedTimes::default();
        for i in 0..1000 {
            // one record at a time, all within one second
            t.set(i, i + 1, 5_000_001 + u64::from(i % 999));
        }
        assert_eq!(t.runs().len(), 2, "{:?}", t.runs());
        // the first append's exact time; the others at most a granule later
        assert_eq!(t.at(0), Some(5_000_001));
        assert_eq!(t.at(999), Some(5_000_001));
        assert_eq!(t.at(1000), None);
        t.set(1000, 1001, 5_001_001);
        assert_eq!(t.runs().len(), 3);
        assert_eq!(t.at(1000), Some(5_001_001));
    }

    #[test]
    fn never_later_and_at_most_a_granule_earlier() {
        for (prev, ms) in [(0, 7), (1000, 1000), (1000, 1999), (1000, 2000), (5, 3)] {
            let t = coalesced(prev, ms);
            assert!(t <= ms);
            assert!(ms - t < ACCEPTED_GRANULE_MS);
        }
    }

    #[test]
    fn any_order_of_ranges_matches_a_per_record_model() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..2000 {
            let mut t = AcceptedTimes::default();
            let mut m = Vec::new();
            for _ in 0..rng.usize(1..12) {
                let first = rng.u32(0..40);
                let end = first + rng.u32(0..10);
                let ms = [0, 1000, 2000, 2500, 3000][rng.usize(0..5)];
                t.set(first, end, ms);
                model_set(&mut m, first, end, ms);
                check(&t, &m);
            }
            let len = rng.u32(0..50);
            let mut f = t.clone();
            f.fill_unknown(len, 9000);
            let mut fm = m.clone();
            fm.resize(fm.len().max(len as usize), 0);
            for v in fm.iter_mut().take(len as usize) {
                if *v == 0 {
                    *v = 9000;
                }
            }
            check(&f, &fm);
            let cut = t.truncated(len);
            let mut cm = m.clone();
            cm.truncate(len as usize);
            check(&cut, &cm);
        }
    }

    #[test]
    fn stored_runs_are_validated() {
        let r = |first, ms| TimeRun { first, ms };
        assert!(AcceptedTimes::from_runs(vec![]).is_ok());
        assert!(AcceptedTimes::from_runs(vec![r(0, 1000), r(5, 0)]).is_ok());
        assert!(AcceptedTimes::from_runs(vec![r(5, 1000), r(5, 0)]).is_err());
        assert!(AcceptedTimes::from_runs(vec![r(0, 1000), r(5, 1000), r(6, 0)]).is_err());
        assert!(AcceptedTimes::from_runs(vec![r(0, 1000)]).is_err());
        assert!(AcceptedTimes::from_runs(vec![r(0, 0)]).is_err());
    }
}
