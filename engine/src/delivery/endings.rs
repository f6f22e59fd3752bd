//! Operators' endings: recipients that end without being sent.
//!
//! - A cancelled campaign (`volley queue cancel --campaign ID`): each of its
//!   recipients not yet sent ends with a `Reject` event (reason: cancelled
//!   by the operator), including those spooled later under the same id.
//! - A bounced domain (`volley queue bounce --domain D`): each recipient of
//!   the domain queued when the operator asked (spooled before that
//!   moment: its id is below the spool's append mark then) ends with a
//!   `Bounce` event, `Transient`/`General` (SES's type for mail it stopped
//!   trying; it puts no address on the suppression list and does not count
//!   toward the hard-bounce rate), status 4.0.0. Mail spooled afterwards
//!   for the domain is delivered as usual.
//!
//! The scheduler, the shards, the production threads and the connections
//! (taking a produced message) each ask [`EndSet::verdict`] of a recipient
//! before passing it on, and sweep what they hold when the endings change;
//! messages already in a transaction finish. Kept in `<spool>/endings.json`, written whole and synced before
//! a change is answered, so an ending survives a restart. Exposure: the
//! file is the service's own; a damaged one is an error naming it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use serde::{Deserialize, Serialize};
use volley_spool::{RecipientId, Spool};

use super::Work;
use super::holds::{HoldsError, load, store};
use crate::outcome::Outcome;

/// The endings file's name in the spool directory.
pub const FILE: &str = "endings.json";
/// Longest reason kept (bytes).
const MAX_REASON: usize = 200;

/// When and why an operator ended something.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mark {
    /// When (ms since the epoch).
    pub at_ms: u64,
    /// The operator's words, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For a domain: its recipients with ids below this one end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<u64>,
}

/// Every ending in force.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndSet {
    /// Cancelled campaigns, by id.
    #[serde(default)]
    pub campaigns: BTreeMap<String, Mark>,
    /// Bounced domains, in lower case.
    #[serde(default)]
    pub domains: BTreeMap<String, Mark>,
}

/// What an operator ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum End {
    /// Cancel a campaign (by id).
    Campaign(String),
    /// Bounce what is queued for a domain.
    Domain(String),
}

impl EndSet {
    pub fn is_empty(&self) -> bool {
        self.campaigns.is_empty() && self.domains.is_empty()
    }

    /// How `w` ends, if an operator ended it.
    pub fn verdict(&self, spool: &Spool, w: &Work) -> Option<Outcome> {
        if let Some(m) = self.domain(&w.domain)
            && m.below.is_some_and(|b| w.id < RecipientId(b))
        {
            return Some(bounced(&w.domain, m.reason.as_deref()));
        }
        if self.campaigns.is_empty() {
            return None;
        }
        let c = spool.campaign(spool.campaign_of(w.id)?)?;
        let m = self.campaigns.get(&c.id)?;
        Some(cancelled(&c.id, m.reason.as_deref()))
    }

    fn domain(&self, domain: &str) -> Option<&Mark> {
        if self.domains.is_empty() {
            return None;
        }
        self.domains
            .get(domain)
            .or_else(|| self.domains.get(&domain.to_ascii_lowercase()))
    }

    /// Each ending: kind (`campaign`, `domain`), name and mark.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str, &Mark)> {
        self.campaigns
            .iter()
            .map(|(n, m)| ("campaign", n.as_str(), m))
            .chain(self.domains.iter().map(|(n, m)| ("domain", n.as_str(), m)))
    }
}

/// The final outcome of a recipient of a cancelled campaign: a `Reject`.
pub fn cancelled(campaign: &str, reason: Option<&str>) -> Outcome {
    Outcome::Rejected {
        reason: match reason {
            Some(r) => format!("campaign {campaign} cancelled by the operator: {r}"),
            None => format!("campaign {campaign} cancelled by the operator"),
        },
    }
}

/// The final outcome of a recipient of a bounced domain.
pub fn bounced(domain: &str, reason: Option<&str>) -> Outcome {
    let why = reason.map(|r| format!(": {r}")).unwrap_or_default();
    Outcome::Bounced {
        status: "4.0.0".into(),
        diagnostic: format!("mail queued for {domain} bounced by the operator{why}"),
        bounce_type: "Transient",
        bounce_subtype: "General",
    }
}

/// The endings of a running engine, shared by the scheduler, the shards
/// and the production threads.
pub struct Endings {
    dir: PathBuf,
    writer: Mutex<()>,
    set: RwLock<Arc<EndSet>>,
    any: AtomicBool,
    generation: AtomicU64,
}

impl Endings {
    /// The endings of the spool in `dir` (none without a file).
    pub fn open(dir: &Path) -> Result<Endings, HoldsError> {
        let set: EndSet = load(dir, FILE)?;
        Ok(Endings {
            dir: dir.to_path_buf(),
            writer: Mutex::new(()),
            any: AtomicBool::new(!set.is_empty()),
            set: RwLock::new(Arc::new(set)),
            generation: AtomicU64::new(0),
        })
    }

    /// No endings at all (the fast path).
    pub fn none(&self) -> bool {
        !self.any.load(Ordering::Acquire)
    }

    /// Changes each time the endings do.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The endings in force.
    pub fn get(&self) -> Arc<EndSet> {
        Arc::clone(&self.set.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// How `w` ends, if an operator ended it (`None` at once when there
    /// are no endings).
    pub fn verdict(&self, spool: &Spool, w: &Work) -> Option<Outcome> {
        if self.none() {
            return None;
        }
        self.get().verdict(spool, w)
    }

    /// Adds an ending, stored before this returns. `mark` is the spool's
    /// append mark now (a bounced domain's recipients below it end); a
    /// domain bounced again takes the new mark. Whether it changed
    /// anything. On a storage error nothing changes.
    pub fn add(
        &self,
        end: &End,
        reason: Option<&str>,
        mark: RecipientId,
        now_ms: u64,
    ) -> std::io::Result<bool> {
        let _one = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = EndSet::clone(&self.get());
        let reason = reason
            .map(|r| r.chars().filter(|c| !c.is_control()).collect::<String>())
            .map(|r| crate::events::detail::capped(&r, MAX_REASON))
            .filter(|r| !r.is_empty());
        let changed = match end {
            End::Campaign(id) => {
                if next.campaigns.contains_key(id) {
                    false
                } else {
                    let m = Mark {
                        at_ms: now_ms,
                        reason,
                        below: None,
                    };
                    next.campaigns.insert(id.clone(), m);
                    true
                }
            }
            End::Domain(d) => {
                let m = Mark {
                    at_ms: now_ms,
                    reason,
                    below: Some(mark.0),
                };
                let old = next.domains.insert(d.to_ascii_lowercase(), m);
                old.is_none_or(|o| o.below != Some(mark.0))
            }
        };
        if !changed {
            return Ok(false);
        }
        store(&self.dir, FILE, &next)?;
        self.any.store(!next.is_empty(), Ordering::Release);
        *self.set.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endings_persist_and_a_domain_ends_only_below_its_mark() {
        let dir = tempfile::tempdir().unwrap();
        let e = Endings::open(dir.path()).unwrap();
        assert!(e.none());
        let mark = RecipientId::new(3, 10);
        assert!(
            e.add(&End::Domain("B.Test".into()), Some("dead\nsite"), mark, 5)
                .unwrap()
        );
        assert!(!e.add(&End::Domain("b.test".into()), None, mark, 6).unwrap());
        assert!(
            e.add(&End::Campaign("spring".into()), None, mark, 7)
                .unwrap()
        );
        assert!(!e.none());
        let s = e.get();
        let m = s.domain("b.TEST").unwrap();
        assert_eq!(m.reason.as_deref(), Some("deadsite"));
        assert!(
            m.below
                .is_some_and(|b| RecipientId::new(3, 9) < RecipientId(b))
        );
        assert!(
            m.below
                .is_none_or(|b| RecipientId::new(3, 10) >= RecipientId(b))
        );
        let again = Endings::open(dir.path()).unwrap();
        assert_eq!(*again.get(), *s);
        let listed: Vec<_> = again
            .get()
            .iter()
            .map(|(k, n, _)| format!("{k} {n}"))
            .collect();
        assert_eq!(listed, ["campaign spring", "domain b.test"]);
        // bounced again later: the newer mark
        assert!(
            again
                .add(
                    &End::Domain("b.test".into()),
                    None,
                    RecipientId::new(4, 0),
                    8
                )
                .unwrap()
        );
        std::fs::write(dir.path().join(FILE), b"{\"campaigns\": 3}").unwrap();
        let err = Endings::open(dir.path()).err().unwrap();
        assert!(err.to_string().contains(FILE), "{err}");
    }

    #[test]
    fn outcomes_say_who_ended_them() {
        match cancelled("spring", Some("wrong list")) {
            Outcome::Rejected { reason } => {
                assert!(reason.contains("spring") && reason.contains("wrong list"));
            }
            o => panic!("{o:?}"),
        }
        match bounced("b.test", None) {
            Outcome::Bounced {
                bounce_type,
                bounce_subtype,
                diagnostic,
                ..
            } => {
                assert_eq!((bounce_type, bounce_subtype), ("Transient", "General"));
                assert!(diagnostic.contains("b.test"));
            }
            o => panic!("{o:?}"),
        }
    }
}
