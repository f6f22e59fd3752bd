//! Warm-up of egress sources (`warmup` in `[[egress.sources]]`): a new
//! address sends each site (provider) at most its plan's allowance for
//! the day it is on (day 1, 2, ... from its first use, in UTC days); after
//! the plan's last day it is established. Mail over a source's allowance
//! goes to another source of its pool that has room, or waits for the next
//! day (deferred, never failed; see the scheduler).
//!
//! Progress (the day it started, a pause, completion) is stored in
//! `<spool>/warmup.json` when it changes; the day's counts per site are
//! stored every few seconds and at shutdown (after a kill -9 a source may
//! send up to those seconds' worth more than its allowance that day).
//! Operators pause (no warm-up traffic, the day does not advance), resume,
//! reset (day 1 again) or complete (established) a source's warm-up with
//! `volley queue warmup`. Exposure: the file is the service's own; a
//! damaged one is an error naming it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use super::holds::{HoldsError, load, store};

/// The warm-up file's name in the spool directory.
pub const FILE: &str = "warmup.json";
const DAY_MS: u64 = 86_400_000;

/// One source's progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    /// The UTC day (days since the epoch) its day 1 was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<u64>,
    /// Paused on this UTC day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<u64>,
    /// Marked complete by an operator: established.
    #[serde(default)]
    pub complete: bool,
    /// The UTC day `sent` counts.
    #[serde(default)]
    pub day: u64,
    /// Messages sent to each site on `day`.
    #[serde(default)]
    pub sent: BTreeMap<String, u64>,
}

impl Progress {
    /// Its plan day (1-based) on UTC day `today`.
    pub fn plan_day(&self, today: u64) -> u64 {
        let Some(start) = self.started else { return 1 };
        let at = self.paused.unwrap_or(today);
        at.saturating_sub(start) + 1
    }
}

/// What an operator does to a warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Pause,
    Resume,
    Reset,
    Complete,
}

/// How a source stands: its plan day, today's allowance per site (`None`:
/// established), whether paused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Standing {
    pub source: String,
    pub day: u64,
    pub days: usize,
    pub allowance: Option<u64>,
    pub paused: bool,
    pub complete: bool,
}

/// The warm-ups of a running engine.
pub struct Warmup {
    dir: PathBuf,
    /// Plans by source name.
    plans: BTreeMap<String, Vec<u64>>,
    state: Mutex<BTreeMap<String, Progress>>,
    /// One store at a time (the newest state wins).
    writer: Mutex<()>,
}

/// The UTC day of `ms`.
pub fn day_of(ms: u64) -> u64 {
    ms / DAY_MS
}

/// When UTC day `day` starts (ms).
pub fn start_of(day: u64) -> u64 {
    day.saturating_mul(DAY_MS)
}

impl Warmup {
    /// The warm-ups of `plans` (source → daily allowances), with the
    /// progress stored in `dir`.
    pub fn open(dir: &Path, plans: BTreeMap<String, Vec<u64>>) -> Result<Warmup, HoldsError> {
        let state: BTreeMap<String, Progress> = load(dir, FILE)?;
        Ok(Warmup {
            dir: dir.to_path_buf(),
            plans,
            state: Mutex::new(state),
            writer: Mutex::new(()),
        })
    }

    /// Whether any source warms up.
    pub fn any(&self) -> bool {
        !self.plans.is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Progress>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many more messages `source` may send `site` on UTC day
    /// `today` (`None`: no limit).
    pub fn room(&self, source: &str, site: &str, today: u64) -> Option<u64> {
        let plan = self.plans.get(source)?;
        let state = self.lock();
        let p = state.get(source).cloned().unwrap_or_default();
        if p.complete {
            return None;
        }
        if p.paused.is_some() {
            return Some(0);
        }
        let day = p.plan_day(today);
        let allowance = *plan.get(usize::try_from(day - 1).unwrap_or(usize::MAX))?;
        let sent = if p.day == today {
            p.sent.get(site).copied().unwrap_or(0)
        } else {
            0
        };
        Some(allowance.saturating_sub(sent))
    }

    /// Counts `n` messages of `source` to `site` on `today` (its day 1 is
    /// the first day it sends).
    pub fn take(&self, source: &str, site: &str, n: u64, today: u64) {
        if !self.plans.contains_key(source) {
            return;
        }
        let mut state = self.lock();
        let p = state.entry(source.to_string()).or_default();
        if p.started.is_none() {
            p.started = Some(today);
        }
        if p.day != today {
            p.day = today;
            p.sent.clear();
        }
        *p.sent.entry(site.to_string()).or_insert(0) += n;
    }

    /// Stores the progress (counts included).
    pub fn flush(&self) -> std::io::Result<()> {
        let _one = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let state = self.lock().clone();
        store(&self.dir, FILE, &state)
    }

    /// An operator's action on `source`'s warm-up, stored before this
    /// returns.
    pub fn act(&self, source: &str, action: Action, today: u64) -> Result<(), String> {
        if !self.plans.contains_key(source) {
            let known: Vec<&str> = self.plans.keys().map(String::as_str).collect();
            return Err(format!(
                "no warming source {source:?} (sources with a warmup plan: {})",
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            ));
        }
        {
            let mut state = self.lock();
            let p = state.entry(source.to_string()).or_default();
            match action {
                Action::Pause => {
                    if p.paused.is_none() {
                        p.paused = Some(today);
                    }
                }
                Action::Resume => {
                    if let (Some(at), Some(start)) = (p.paused.take(), p.started) {
                        p.started = Some(start + today.saturating_sub(at));
                    }
                }
                Action::Reset => {
                    *p = Progress::default();
                }
                Action::Complete => p.complete = true,
            }
        }
        self.flush()
            .map_err(|e| format!("the warm-up could not be stored: {e}"))
    }

    /// Every warming source's standing on `today`.
    pub fn standings(&self, today: u64) -> Vec<Standing> {
        let state = self.lock();
        self.plans
            .iter()
            .map(|(name, plan)| {
                let p = state.get(name).cloned().unwrap_or_default();
                let day = p.plan_day(today);
                let allowance = usize::try_from(day - 1)
                    .ok()
                    .and_then(|d| plan.get(d))
                    .copied();
                let complete = p.complete || allowance.is_none();
                Standing {
                    source: name.clone(),
                    day,
                    days: plan.len(),
                    allowance: if complete { None } else { allowance },
                    paused: p.paused.is_some(),
                    complete,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plans() -> BTreeMap<String, Vec<u64>> {
        BTreeMap::from([("ip3".to_string(), vec![2, 5])])
    }

    #[test]
    fn allowances_rise_by_day_per_site_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let w = Warmup::open(dir.path(), plans()).unwrap();
        assert_eq!(w.room("ip2", "s", 10), None, "an established source");
        assert_eq!(w.room("ip3", "s", 10), Some(2));
        w.take("ip3", "s", 2, 10);
        assert_eq!(w.room("ip3", "s", 10), Some(0));
        assert_eq!(w.room("ip3", "other", 10), Some(2), "per site");
        assert_eq!(w.room("ip3", "s", 11), Some(5), "day 2");
        assert_eq!(w.room("ip3", "s", 12), None, "established after the plan");
        w.flush().unwrap();
        let again = Warmup::open(dir.path(), plans()).unwrap();
        assert_eq!(again.room("ip3", "s", 10), Some(0));
        // pause: nothing, the day stands still; resume goes on from it
        again.act("ip3", Action::Pause, 11).unwrap();
        assert_eq!(again.room("ip3", "s", 13), Some(0));
        again.act("ip3", Action::Resume, 20).unwrap();
        assert_eq!(again.standings(20)[0].day, 2);
        again.act("ip3", Action::Reset, 20).unwrap();
        assert_eq!(again.room("ip3", "s", 25), Some(2));
        again.act("ip3", Action::Complete, 25).unwrap();
        assert_eq!(again.room("ip3", "s", 25), None);
        assert!(again.standings(25)[0].complete);
        assert!(
            again
                .act("nope", Action::Pause, 1)
                .unwrap_err()
                .contains("ip3")
        );
        std::fs::write(dir.path().join(FILE), b"[").unwrap();
        assert!(Warmup::open(dir.path(), plans()).is_err());
    }
}
