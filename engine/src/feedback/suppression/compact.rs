//! Keeping the index small: merging the newest changes into the sorted
//! run, and compaction (base + log into a new base). Also `list`, which
//! walks the same two sources.
//!
//! Every new index is built beside the one lookups use and swapped in
//! under the write lock in O(1); writers wait (they hold the writer lock
//! throughout), lookups do not. Compaction order, for crash safety:
//! `base-<g+1>.tmp` written and fsync'd, checked by opening it, empty
//! `log-<g+1>` created, base renamed into place, directory fsync'd, then
//! the old generation deleted. Exposure: reads the store's own files,
//! checking every record.

use std::sync::Arc;

use super::base::{self, Base};
use super::entry::{Entry, ListFilter};
use super::error::SuppressionError;
use super::files::{base_path, log_path, remove_quietly, sync_dir};
use super::index::{self, REMOVED, Run, Slot};
use super::log::{self, Log};
use super::record::{self, PUT};
use super::{SuppressionList, WriteState};

/// Newest changes kept in the hash map before they are merged into the run.
const TAIL_MAX: usize = 65_536;

impl SuppressionList {
    /// After a write: merge the tail when full, compact when the log is
    /// long. A failed compaction is logged (the write itself is durable)
    /// and tried again after a later write.
    pub(super) fn maintain(&self, w: &mut WriteState) {
        let (tail, base_len) = {
            let st = self.read();
            (st.tail.len(), st.base.len() as u64)
        };
        if w.log_records >= self.opts.min_compact_records.max(base_len / 3) {
            if let Err(e) = self.compact_locked(w) {
                tracing::warn!(dir = %self.dir.display(), error = %e, "suppression compaction failed");
            }
        } else if tail >= TAIL_MAX {
            self.merge_tail();
        }
    }

    /// The overlay (run and tail) as one sorted list, with the base and
    /// log it refers to.
    fn snapshot(&self) -> (Arc<Base>, Vec<(u64, Slot)>, Arc<Log>) {
        let st = self.read();
        let mut tail: Vec<(u64, Slot)> = st.tail.iter().map(|(&k, &s)| (k, s)).collect();
        tail.sort_unstable_by_key(|p| p.0);
        let overlay = index::merge(st.run.pairs(), &tail);
        (st.base.clone(), overlay, st.log.clone())
    }

    fn merge_tail(&self) {
        let (_, overlay, _) = self.snapshot();
        let run = Arc::new(Run::from_sorted(&overlay));
        drop(overlay);
        let mut st = self.write();
        st.run = run;
        st.tail.clear();
    }

    /// Merges the log into a new base file now.
    pub fn compact(&self) -> Result<(), SuppressionError> {
        let mut w = self.writer();
        self.compact_locked(&mut w)
    }

    fn compact_locked(&self, w: &mut WriteState) -> Result<(), SuppressionError> {
        let (old_base, overlay, old_log) = self.snapshot();
        let next = w.generation + 1;
        let final_path = base_path(&self.dir, next);
        let tmp = self.dir.join(format!("base-{next:08}.tmp"));
        let mut out = base::Writer::create(&tmp)?;
        let mut frame = Vec::new();
        let mut emit = |out: &mut base::Writer, (k, slot): (u64, Slot)| {
            if slot & REMOVED != 0 {
                return Ok(());
            }
            let rec = old_log.read(slot)?;
            if rec.op != PUT {
                return Err(SuppressionError::corrupt(
                    &old_log.path,
                    slot,
                    "expected an addition",
                ));
            }
            frame.clear();
            record::encode(PUT, &rec.entry, &mut frame);
            out.push(k, &frame)
        };
        let mut j = 0;
        let keys = old_base.keys.as_slice();
        old_base.scan(|i, _, f| {
            let k = keys.get(i).copied().unwrap_or(u64::MAX);
            while let Some(&o) = overlay.get(j).filter(|o| o.0 < k) {
                emit(&mut out, o)?;
                j += 1;
            }
            if let Some(&o) = overlay.get(j).filter(|o| o.0 == k) {
                j += 1;
                return emit(&mut out, o);
            }
            out.push(k, f)
        })?;
        for &o in overlay.get(j..).unwrap_or(&[]) {
            emit(&mut out, o)?;
        }
        drop(overlay);
        out.finish(self.hash.check_value())?;
        let mut new_base = Base::open(&tmp, self.hash.check_value())?;
        let new_log = Log::create(&log_path(&self.dir, next))?;
        if let Err(e) = std::fs::rename(&tmp, &final_path) {
            remove_quietly(&new_log.path);
            remove_quietly(&tmp);
            return Err(SuppressionError::io(&final_path, e));
        }
        new_base.path = final_path;
        let synced = sync_dir(&self.dir);
        {
            let mut st = self.write();
            st.len = new_base.len() as u64;
            st.base = Arc::new(new_base);
            st.run = Arc::new(Run::default());
            st.tail = Default::default();
            st.log = Arc::new(new_log);
        }
        w.generation = next;
        w.log_end = log::START;
        w.log_records = 0;
        synced?;
        if next > 1 {
            remove_quietly(&old_base.path);
        }
        remove_quietly(&old_log.path);
        sync_dir(&self.dir)
    }

    /// Visits every entry matching `filter` (unordered), reading the
    /// details from disk; returns how many were visited. Entries changed
    /// while it runs may or may not be seen.
    pub fn list(
        &self,
        filter: &ListFilter,
        mut visit: impl FnMut(&Entry),
    ) -> Result<u64, SuppressionError> {
        let (base, overlay, log) = self.snapshot();
        let mut n = 0u64;
        let keys = base.keys.as_slice();
        let mut j = 0;
        base.scan(|i, at, f| {
            let k = keys.get(i).copied().unwrap_or(u64::MAX);
            while overlay.get(j).is_some_and(|o| o.0 < k) {
                j += 1;
            }
            if overlay.get(j).is_some_and(|o| o.0 == k) {
                return Ok(());
            }
            let rec = record::decode(&f[record::HEADER..])
                .map_err(|w| SuppressionError::corrupt(&base.path, at, w))?;
            if filter.matches(&rec.entry) {
                visit(&rec.entry);
                n += 1;
            }
            Ok(())
        })?;
        let mut offsets: Vec<u64> = overlay
            .iter()
            .filter(|o| o.1 & REMOVED == 0)
            .map(|o| o.1)
            .collect();
        drop(overlay);
        offsets.sort_unstable();
        for off in offsets {
            let rec = log.read(off)?;
            if filter.matches(&rec.entry) {
                visit(&rec.entry);
                n += 1;
            }
        }
        Ok(n)
    }
}
