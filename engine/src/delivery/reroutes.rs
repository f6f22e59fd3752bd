//! Operators' reroutes: a recipient domain sent to another next hop
//! (`host:port`) than its `[routes]` entry or MX hosts say, until cleared
//! (`volley queue reroute`). A reroute wins over `[routes]` and MX; the
//! domain's recipients already queued at its old site are given back to
//! the scheduler and go the new way (messages already produced or in a
//! transaction finish where they are).
//!
//! Kept in `<spool>/reroutes.json`, written whole and synced before a
//! change is answered, read at start, so reroutes survive restarts.
//! Domains are kept in lower case. Exposure: the file is the service's
//! own; a damaged one is an error naming it (the engine does not start).
//! Targets come from the operator (a local user of the service's own
//! account) and are checked as `[routes]` values are.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use super::holds::{HoldsError, load, store};
use crate::config::Route;

/// The reroutes file's name in the spool directory.
pub const FILE: &str = "reroutes.json";

/// The reroutes of a running engine: domain → `host:port`.
pub struct Reroutes {
    dir: PathBuf,
    writer: Mutex<()>,
    map: RwLock<Arc<BTreeMap<String, String>>>,
}

impl Reroutes {
    /// The reroutes of the spool in `dir` (none without a file).
    pub fn open(dir: &Path) -> Result<Reroutes, HoldsError> {
        let file = dir.join(FILE);
        let err = |reason: String| HoldsError {
            path: file.clone(),
            reason,
        };
        let map: BTreeMap<String, String> = load(dir, FILE)?;
        if let Some((d, t)) = map.iter().find(|(_, t)| Route::parse(t).is_err()) {
            return Err(err(format!("{d}: {t:?} is not host:port")));
        }
        Ok(Reroutes {
            dir: dir.to_path_buf(),
            writer: Mutex::new(()),
            map: RwLock::new(Arc::new(map)),
        })
    }

    /// Every reroute in force.
    pub fn get(&self) -> Arc<BTreeMap<String, String>> {
        Arc::clone(&self.map.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Where `domain` is rerouted to, if it is.
    pub fn route(&self, domain: &str) -> Option<Route> {
        let map = self.get();
        if map.is_empty() {
            return None;
        }
        map.get(&domain.to_ascii_lowercase())
            .and_then(|t| Route::parse(t).ok())
    }

    /// Reroutes `domain` to `to` (`None`: clears its reroute), stored
    /// before this returns; whether it changed anything. A target that is
    /// not `host:port` is refused with the reason.
    pub fn set(&self, domain: &str, to: Option<&str>) -> Result<bool, String> {
        if let Some(t) = to {
            Route::parse(t)?;
        }
        let _one = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = BTreeMap::clone(&self.get());
        let key = domain.to_ascii_lowercase();
        let changed = match to {
            Some(t) => next.insert(key, t.to_string()).as_deref() != Some(t),
            None => next.remove(&key).is_some(),
        };
        if !changed {
            return Ok(false);
        }
        store(&self.dir, FILE, &next)
            .map_err(|e| format!("the reroutes could not be stored: {e}"))?;
        *self.map.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reroutes_persist_and_refuse_what_is_not_host_port() {
        let dir = tempfile::tempdir().unwrap();
        let r = Reroutes::open(dir.path()).unwrap();
        assert!(r.route("a.test").is_none());
        assert!(r.set("A.test", Some("127.0.0.1:2525")).unwrap());
        assert!(!r.set("a.test", Some("127.0.0.1:2525")).unwrap());
        assert!(r.set("a.test", Some("[::1]:25")).unwrap());
        assert!(r.set("b.test", Some("no port")).is_err());
        let again = Reroutes::open(dir.path()).unwrap();
        let route = again.route("A.TEST").unwrap();
        assert_eq!((route.host.as_str(), route.port), ("::1", 25));
        assert!(again.set("a.test", None).unwrap());
        assert!(!again.set("a.test", None).unwrap());
        assert!(Reroutes::open(dir.path()).unwrap().get().is_empty());
        std::fs::write(dir.path().join(FILE), b"{\"a.test\": \"nope\"}").unwrap();
        let e = Reroutes::open(dir.path()).err().unwrap().to_string();
        assert!(e.contains(FILE) && e.contains("a.test"), "{e}");
    }
}
