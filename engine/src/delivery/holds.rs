//! Operators' holds on delivery: a domain, a site or a campaign whose
//! recipients are not attempted until the hold is released. Held mail
//! stays spooled (queued or deferred, as it was); a shard sets aside the
//! recipients of held domains and campaigns as it comes to them, and a
//! held site's shard takes none of its queue. Messages already produced
//! or in a transaction finish.
//!
//! The holds are kept in `<spool>/holds.json`, written whole (temporary
//! file, fsync, rename, directory fsync) before a change is answered, and
//! read at start, so they survive restarts. Each change bumps a
//! generation: shards re-examine what they set aside when it moves.
//! Domains are kept in lower case; sites as their metrics label; campaigns
//! by id (a campaign held before it is spooled is held when it comes).
//! Exposure: the file is the service's own; a damaged one is an error
//! naming it (the service does not start and risk sending held mail).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use serde::{Deserialize, Serialize};

/// The holds file's name in the spool directory.
pub const FILE: &str = "holds.json";

/// What one hold applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hold {
    Domain(String),
    Site(String),
    Campaign(String),
}

/// Every hold in force.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldSet {
    #[serde(default)]
    pub domains: BTreeSet<String>,
    #[serde(default)]
    pub sites: BTreeSet<String>,
    #[serde(default)]
    pub campaigns: BTreeSet<String>,
}

impl HoldSet {
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty() && self.sites.is_empty() && self.campaigns.is_empty()
    }

    /// Puts `h` on (`true`) or off; whether that changed anything.
    pub fn set(&mut self, h: &Hold, on: bool) -> bool {
        let (set, key) = match h {
            Hold::Domain(d) => (&mut self.domains, d.to_ascii_lowercase()),
            Hold::Site(s) => (&mut self.sites, s.clone()),
            Hold::Campaign(c) => (&mut self.campaigns, c.clone()),
        };
        if on {
            set.insert(key)
        } else {
            set.remove(&key)
        }
    }

    /// Whether a recipient of `domain` is held by its domain.
    pub fn domain(&self, domain: &str) -> bool {
        !self.domains.is_empty()
            && (self.domains.contains(domain)
                || self.domains.contains(&domain.to_ascii_lowercase()))
    }

    /// Whether the whole site with this key is held.
    pub fn site(&self, key: &str) -> bool {
        self.sites.contains(key)
    }

    /// Whether the campaign with this id is held.
    pub fn campaign(&self, id: &str) -> bool {
        self.campaigns.contains(id)
    }

    /// Each hold with its kind (`domain`, `site`, `campaign`).
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.domains
            .iter()
            .map(|n| ("domain", n.as_str()))
            .chain(self.sites.iter().map(|n| ("site", n.as_str())))
            .chain(self.campaigns.iter().map(|n| ("campaign", n.as_str())))
    }
}

/// The holds of a running engine, shared by the shards and the control
/// socket.
pub struct Holds {
    dir: PathBuf,
    /// One change at a time (the file is written under it, not under
    /// `set`, which shards read on every turn).
    writer: Mutex<()>,
    set: RwLock<Arc<HoldSet>>,
    any: AtomicBool,
    generation: AtomicU64,
}

/// A holds file that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct HoldsError {
    pub path: PathBuf,
    pub reason: String,
}

impl Holds {
    /// The holds of the spool in `dir` (none when it has no holds file).
    pub fn open(dir: &Path) -> Result<Holds, HoldsError> {
        let set: HoldSet = load(dir, FILE)?;
        Ok(Holds {
            dir: dir.to_path_buf(),
            writer: Mutex::new(()),
            any: AtomicBool::new(!set.is_empty()),
            set: RwLock::new(Arc::new(set)),
            generation: AtomicU64::new(0),
        })
    }

    /// No holds at all (the shards' fast path).
    pub fn none(&self) -> bool {
        !self.any.load(Ordering::Acquire)
    }

    /// Changes each time the holds do.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The holds in force.
    pub fn get(&self) -> Arc<HoldSet> {
        Arc::clone(&self.set.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Puts `h` on or off and stores the holds before returning; whether
    /// that changed anything. On a storage error nothing changes.
    pub fn set(&self, h: &Hold, on: bool) -> std::io::Result<bool> {
        let _one = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = HoldSet::clone(&self.get());
        if !next.set(h, on) {
            return Ok(false);
        }
        store(&self.dir, FILE, &next)?;
        self.any.store(!next.is_empty(), Ordering::Release);
        *self.set.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(true)
    }
}

/// Reads `file` in `dir` (the default when there is none); an error
/// names the file.
pub(super) fn load<T: Default + serde::de::DeserializeOwned>(
    dir: &Path,
    file: &str,
) -> Result<T, HoldsError> {
    let path = dir.join(file);
    let err = |reason: String| HoldsError {
        path: path.clone(),
        reason,
    };
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| err(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(err(e.to_string())),
    }
}

/// Writes `file` in `dir` whole and durably: a temporary file, synced,
/// renamed over it, the directory synced.
pub(super) fn store<T: Serialize>(dir: &Path, file: &str, value: &T) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!("{file}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(value)?)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(file))?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_persist_and_match_as_documented() {
        let dir = tempfile::tempdir().unwrap();
        let h = Holds::open(dir.path()).unwrap();
        assert!(h.none());
        let g = h.generation();
        assert!(h.set(&Hold::Domain("Example.COM".into()), true).unwrap());
        assert!(!h.set(&Hold::Domain("example.com".into()), true).unwrap());
        assert!(h.set(&Hold::Campaign("spring".into()), true).unwrap());
        assert!(h.set(&Hold::Site("mx:mx.b.test".into()), true).unwrap());
        assert!(h.generation() > g);
        assert!(!h.none());
        let s = h.get();
        assert!(s.domain("example.com") && s.domain("EXAMPLE.com"));
        assert!(!s.domain("other.com"));
        assert!(s.campaign("spring") && !s.campaign("Spring"));
        assert!(s.site("mx:mx.b.test"));
        // read back after a restart
        let again = Holds::open(dir.path()).unwrap();
        assert_eq!(*again.get(), *s);
        assert!(
            again
                .set(&Hold::Domain("example.com".into()), false)
                .unwrap()
        );
        assert!(
            !again
                .set(&Hold::Domain("example.com".into()), false)
                .unwrap()
        );
        let listed: Vec<_> = again
            .get()
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        assert_eq!(listed, ["site mx:mx.b.test", "campaign spring"]);
        // a damaged file is an error naming it
        std::fs::write(dir.path().join(FILE), b"{\"domains\": [").unwrap();
        let e = Holds::open(dir.path()).err().unwrap();
        assert!(e.to_string().contains(FILE), "{e}");
    }
}
