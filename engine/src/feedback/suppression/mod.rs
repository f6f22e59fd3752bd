//! The account-level suppression list: addresses (and list-level topic
//! unsubscribes) the engine must not mail, as SES keeps them (§5 of the
//! SES notes): one entry per address (or address and topic) with reason
//! `BOUNCE` or `COMPLAINT`, last update time, and the message and feedback
//! ids that caused it. Re-adding an entry replaces it (the last write wins).
//!
//! In: entries from bounce and complaint processing, the API and CSV
//! imports (all hostile; see [`entry`] for the checks). Out: `contains`
//! answers for every recipient at ingest and before each delivery attempt;
//! `get`, `list` and CSV export for people.
//!
//! # Storage (one directory, see `files`)
//! - `base-<gen>`: every entry as of the last compaction, sorted by key.
//! - `log-<gen>`: every change since, appended and fdatasync'd once per
//!   `add`/`remove` call before it returns (the directory is fsync'd after
//!   files are created or renamed). A torn or damaged tail is dropped with a
//!   warning naming the file and offset; the rest loads.
//! - Compaction (when the log holds max(262,144, base/3) records, or on
//!   [`SuppressionList::compact`]) writes `base-<gen+1>.tmp`, fsyncs it,
//!   creates `log-<gen+1>`, renames the base into place and fsyncs the
//!   directory; on open the highest complete base wins and stray temp files
//!   and older generations are deleted, so a crash at any point loses
//!   nothing.
//!
//! # Memory
//! Resident per entry: the base's key (8 bytes), its share of the bucket
//! directory (0.5 to 1 byte) and of the block table (0.125 byte): at most
//! 9.2 bytes after compaction. Changes since then cost 16.5 to 17 bytes
//! each and are bounded by the compaction threshold (a third of the base),
//! so the whole index stays under 15 bytes per entry (under 12 when the
//! changes are new addresses, the usual case), plus a fixed ~6 MiB for the
//! newest changes and a small base. Compaction builds its new index beside
//! the old one (about twice the index for its duration). Entry details stay
//! on disk and are read only by `get`, `list` and export.
//!
//! # Lookups
//! An entry is known in memory by a keyed 64-bit hash (`hash`): a lookup
//! of an address never added is wrongly found with probability about
//! n / 2^64. `contains` does no I/O and, for ASCII addresses, no
//! allocation; it takes a read lock that writers hold only to insert into a
//! hash map or swap in a new index built aside.
//!
//! Only one process may open a store: it lives in the spool directory,
//! which its owner locks; nothing here locks across processes.

mod base;
mod compact;
mod csv;
pub mod entry;
mod error;
mod files;
mod hash;
mod index;
mod log;
mod open;
mod record;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_files;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub use self::csv::ImportReport;
pub use entry::{Entry, ListFilter, MAX_EMAIL, Reason, normalize_email};
pub use error::SuppressionError;

use base::Base;
use entry::topic_key;
use hash::HashKey;
use index::{REMOVED, Run, Slot, Tail};
use log::Log;
use record::{PUT, REMOVE};

/// Milliseconds since the Unix epoch, now.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    })
}

/// How a store runs.
#[derive(Clone)]
pub struct Options {
    /// Time for removals and for imported rows without a time.
    pub clock: Clock,
    /// Compact when the log holds this many records (or a third of the
    /// base, if more).
    pub min_compact_records: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            clock: system_clock(),
            min_compact_records: 262_144,
        }
    }
}

/// The suppression list store. All operations take `&self`.
pub struct SuppressionList {
    dir: PathBuf,
    hash: HashKey,
    opts: Options,
    state: RwLock<State>,
    writer: Mutex<WriteState>,
}

/// What lookups read: swapped as a whole by compaction.
struct State {
    base: Arc<Base>,
    run: Arc<Run>,
    tail: Tail,
    log: Arc<Log>,
    len: u64,
}

/// Held by whoever changes the store (add, remove, compaction).
struct WriteState {
    generation: u64,
    log_end: u64,
    log_records: u64,
}

/// Where a key's current state is.
enum Found {
    Overlay(Slot),
    Base(usize),
    Absent,
}

impl State {
    #[inline]
    fn find(&self, key: u64) -> Found {
        if let Some(s) = self.overlay(key) {
            return Found::Overlay(s);
        }
        self.base.keys.find(key).map_or(Found::Absent, Found::Base)
    }

    /// A key's slot among the changes since the base, if it changed.
    #[inline]
    fn overlay(&self, key: u64) -> Option<Slot> {
        if let Some(&s) = self.tail.get(&key) {
            return Some(s);
        }
        self.run.get(key)
    }

    #[inline]
    fn live(&self, key: u64) -> bool {
        match self.find(key) {
            Found::Overlay(s) => s & REMOVED == 0,
            Found::Base(_) => true,
            Found::Absent => false,
        }
    }
}

impl SuppressionList {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn writer(&self) -> MutexGuard<'_, WriteState> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The store's directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Whether mail to `email` (for `topic`, if the mail belongs to one) is
    /// suppressed: by an entry without a topic, or one for that topic.
    pub fn contains(&self, email: &str, topic: Option<&str>) -> bool {
        let Some((all, scoped)) = self.keys_of(email, topic) else {
            return false;
        };
        let st = self.read();
        st.live(all) || scoped.is_some_and(|k| st.live(k))
    }

    /// The keys an address is looked up by: without a topic, and with
    /// `topic` when given (`None`: not an address).
    #[inline]
    fn keys_of(&self, email: &str, topic: Option<&str>) -> Option<(u64, Option<u64>)> {
        let t = email.trim();
        let mut buf = [0u8; MAX_EMAIL];
        let owned;
        let bytes: &[u8] = match buf.get_mut(..t.len()) {
            Some(b) if t.is_ascii() => {
                b.copy_from_slice(t.as_bytes());
                b.make_ascii_lowercase();
                b
            }
            _ => match normalize_email(t) {
                Ok(s) => {
                    owned = s;
                    owned.as_bytes()
                }
                Err(_) => return None,
            },
        };
        let all = self.hash.entry_key(bytes, None);
        let scoped = topic_key(topic).map(|t| self.hash.entry_key(bytes, Some(t)));
        Some((all, scoped))
    }

    /// [`SuppressionList::contains`] for many addresses at once (a batch
    /// of the ingest): the positions in `emails` of those suppressed, in
    /// order. The same answers, cheaper: one read lock, and the index's
    /// memory reads of all the addresses overlap (the directory entries
    /// first, then the keys) instead of waiting one after the other.
    pub fn contains_many<'a>(
        &self,
        emails: impl ExactSizeIterator<Item = &'a str>,
        topic: Option<&str>,
    ) -> Vec<usize> {
        let mut keys: Vec<(u64, Option<u64>)> = Vec::with_capacity(emails.len());
        let mut valid: Vec<bool> = Vec::with_capacity(emails.len());
        for e in emails {
            let k = self.keys_of(e, topic);
            valid.push(k.is_some());
            keys.push(k.unwrap_or((0, None)));
        }
        let st = self.read();
        if st.len == 0 {
            return Vec::new();
        }
        let ranges: Vec<(u32, u32)> = keys.iter().map(|k| st.base.keys.range(k.0)).collect();
        // bring each bucket's first keys in, all reads in flight together
        let base = st.base.keys.as_slice();
        let touched = ranges.iter().fold(0u64, |acc, &(lo, _)| {
            acc ^ base.get(lo as usize).copied().unwrap_or(0)
        });
        std::hint::black_box(touched);
        let mut out = Vec::new();
        for (i, ((all, scoped), (lo, hi))) in keys.iter().zip(&ranges).enumerate() {
            if !valid[i] {
                continue;
            }
            let hit = match st.overlay(*all) {
                Some(s) => s & REMOVED == 0,
                None => st.base.keys.find_in(*all, *lo, *hi).is_some(),
            };
            if hit || scoped.is_some_and(|k| st.live(k)) {
                out.push(i);
            }
        }
        out
    }

    /// Entries stored (addresses, plus topic entries).
    pub fn len(&self) -> u64 {
        self.read().len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of memory the index holds (keys, tables, overlay).
    pub fn index_bytes(&self) -> usize {
        let st = self.read();
        st.base.bytes() + st.run.bytes() + st.tail.capacity() * 17
    }

    /// Adds or replaces entries, durably (one fdatasync). Every entry is
    /// checked first; one bad entry fails the call and nothing is written.
    /// Returns how many were new (the others replaced an entry).
    pub fn add(&self, entries: Vec<Entry>) -> Result<usize, SuppressionError> {
        self.add_counted(entries).map(|(added, _)| added)
    }

    /// `add`, returning (new, replaced).
    fn add_counted(&self, entries: Vec<Entry>) -> Result<(usize, usize), SuppressionError> {
        let entries = entries
            .into_iter()
            .map(Entry::normalized)
            .collect::<Result<Vec<_>, _>>()?;
        let mut w = self.writer();
        let new = self.append(&mut w, PUT, &entries)?;
        Ok((new, entries.len() - new))
    }

    /// Removes the entries without a topic for these addresses, durably.
    /// Returns how many were present.
    pub fn remove(&self, emails: &[&str]) -> Result<usize, SuppressionError> {
        let keys: Vec<(&str, Option<&str>)> = emails.iter().map(|&e| (e, None)).collect();
        self.remove_scoped(&keys)
    }

    /// Removes entries by (address, topic); topic `None` is the entry
    /// without a topic. Returns how many were present.
    pub fn remove_scoped(&self, keys: &[(&str, Option<&str>)]) -> Result<usize, SuppressionError> {
        let now = (self.opts.clock)();
        let mut gone = Vec::with_capacity(keys.len());
        for &(email, topic) in keys {
            let mut e = Entry::new(email, Reason::Bounce, now);
            e.topic = topic.map(str::to_string);
            gone.push(e.normalized()?);
        }
        let mut w = self.writer();
        let mut seen = std::collections::HashSet::new();
        {
            let st = self.read();
            gone.retain(|e| {
                let k = self.key(e);
                st.live(k) && seen.insert(k)
            });
        }
        self.append(&mut w, REMOVE, &gone)?;
        Ok(gone.len())
    }

    fn key(&self, e: &Entry) -> u64 {
        self.hash.entry_key(e.email.as_bytes(), e.topic.as_deref())
    }

    /// Logs `entries` (normalized) durably, then applies them to the
    /// index; returns how many keys were absent before.
    fn append(
        &self,
        w: &mut WriteState,
        op: u8,
        entries: &[Entry],
    ) -> Result<usize, SuppressionError> {
        if entries.is_empty() {
            return Ok(0);
        }
        let mut buf = Vec::with_capacity(entries.len() * 64);
        let mut slots = Vec::with_capacity(entries.len());
        for e in entries {
            let flag = if op == REMOVE { REMOVED } else { 0 };
            slots.push((self.key(e), (w.log_end + buf.len() as u64) | flag));
            record::encode(op, e, &mut buf);
        }
        let log = self.read().log.clone();
        log.append(w.log_end, &buf)?;
        w.log_end += buf.len() as u64;
        w.log_records += entries.len() as u64;
        let mut absent = 0;
        {
            let mut st = self.write();
            for (k, slot) in slots {
                let was = st.live(k);
                st.tail.insert(k, slot);
                absent += usize::from(!was);
                match (was, op == PUT) {
                    (false, true) => st.len += 1,
                    (true, false) => st.len -= 1,
                    _ => {}
                }
            }
        }
        self.maintain(w);
        Ok(absent)
    }

    /// The entry without a topic for `email`, if any.
    pub fn get(&self, email: &str) -> Result<Option<Entry>, SuppressionError> {
        self.get_scoped(email, None)
    }

    /// The entry for `email` and `topic` (`None`: the one without a topic).
    pub fn get_scoped(
        &self,
        email: &str,
        topic: Option<&str>,
    ) -> Result<Option<Entry>, SuppressionError> {
        let email = normalize_email(email)?;
        let topic = topic_key(topic);
        let key = self.hash.entry_key(email.as_bytes(), topic);
        let (found, base, log) = {
            let st = self.read();
            (st.find(key), st.base.clone(), st.log.clone())
        };
        let entry = match found {
            Found::Overlay(s) if s & REMOVED != 0 => None,
            Found::Overlay(offset) => Some(log.read(offset)?.entry),
            Found::Base(i) => Some(base.get(i)?.entry),
            Found::Absent => None,
        };
        // A different entry with the same 64-bit key is not this one.
        Ok(entry.filter(|e| e.email == email && e.topic.as_deref() == topic))
    }
}
