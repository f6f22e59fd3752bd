//! Opening a store: picks the newest complete generation, deletes what an
//! interrupted compaction left behind, loads the base's key table and
//! replays the log into the overlay.
//!
//! In: a directory (created if missing). Out: a ready [`SuppressionList`].
//! Exposure: the directory's files may be torn or damaged (see `log` and
//! `base`); a log newer than the newest base that holds records cannot
//! come from this code and is reported rather than deleted.

use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use super::base::Base;
use super::error::SuppressionError;
use super::files::{self, Kind, base_path, log_path, remove_quietly, sync_dir};
use super::hash::HashKey;
use super::index::{self, REMOVED, Run};
use super::log::{self, Log};
use super::record::REMOVE;
use super::{Options, State, SuppressionList, WriteState};

impl SuppressionList {
    /// Opens (or creates) the store in `dir`, with the system clock.
    pub fn open(dir: &Path) -> Result<SuppressionList, SuppressionError> {
        SuppressionList::open_with(dir, Options::default())
    }

    pub fn open_with(dir: &Path, opts: Options) -> Result<SuppressionList, SuppressionError> {
        fs::create_dir_all(dir).map_err(|e| SuppressionError::io(dir, e))?;
        let hash = HashKey::load_or_create(dir)?;
        let (mut bases, mut logs, mut stray) = (Vec::new(), Vec::new(), Vec::new());
        for item in fs::read_dir(dir).map_err(|e| SuppressionError::io(dir, e))? {
            let item = item.map_err(|e| SuppressionError::io(dir, e))?;
            let name = item.file_name();
            match files::kind(&name.to_string_lossy()) {
                Kind::Base(g) => bases.push(g),
                Kind::Log(g) => logs.push(g),
                Kind::Temp => stray.push(item.path()),
                Kind::Other => {}
            }
        }
        let generation = bases.iter().copied().max().unwrap_or(0);
        let mut changed = false;
        for path in stray {
            tracing::warn!(path = %path.display(), "deleting an interrupted suppression file");
            remove_quietly(&path);
            changed = true;
        }
        for &g in bases.iter().filter(|&&g| g < generation) {
            remove_quietly(&base_path(dir, g));
            changed = true;
        }
        for &g in logs.iter().filter(|&&g| g != generation) {
            let path = log_path(dir, g);
            if g > generation {
                let len = fs::metadata(&path)
                    .map_err(|e| SuppressionError::io(&path, e))?
                    .len();
                if len > log::START {
                    return Err(SuppressionError::corrupt(
                        &path,
                        0,
                        "a log with records newer than every base file",
                    ));
                }
            }
            remove_quietly(&path);
            changed = true;
        }
        let check = hash.check_value();
        let base = if generation > 0 {
            Base::open(&base_path(dir, generation), check)?
        } else {
            Base::default()
        };
        let path = log_path(dir, generation);
        let mut pairs = Vec::new();
        let (log, log_end) = if logs.contains(&generation) {
            Log::open(&path, |offset, rec| {
                let key = hash.entry_key(rec.entry.email.as_bytes(), rec.entry.topic.as_deref());
                let flag = if rec.op == REMOVE { REMOVED } else { 0 };
                pairs.push((key, offset | flag));
            })?
        } else {
            changed = true;
            (Log::create(&path)?, log::START)
        };
        if changed {
            sync_dir(dir)?;
        }
        let log_records = pairs.len() as u64;
        let overlay = index::sort_latest(pairs);
        let mut len = base.len() as u64;
        for &(k, slot) in &overlay {
            let in_base = base.keys.find(k).is_some();
            match (slot & REMOVED == 0, in_base) {
                (true, false) => len += 1,
                (false, true) => len -= 1,
                _ => {}
            }
        }
        let state = State {
            base: Arc::new(base),
            run: Arc::new(Run::from_sorted(&overlay)),
            tail: Default::default(),
            log: Arc::new(log),
            len,
        };
        Ok(SuppressionList {
            dir: dir.to_path_buf(),
            hash,
            opts,
            state: RwLock::new(state),
            writer: Mutex::new(WriteState {
                generation,
                log_end,
                log_records,
            }),
        })
    }
}
