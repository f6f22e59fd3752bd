//! What a campaign batch job did, and how it is told: the summary lines of
//! `send` (the job's own campaign by its counts in the spool, and apart
//! what the spool held of other campaigns) and of `enqueue`, and the rows
//! of the list that were not spooled (rejected or duplicates), one line
//! each up to a bound.

use std::path::{Path, PathBuf};
use std::time::Duration;

use volley_engine::ingest::Skipped;
use volley_spool::Counts;

use super::CliError;

/// Rejected rows (and, apart, duplicates) printed one per line; the
/// summary counts them all.
const SHOWN: u64 = 100;

/// What a delivery job did.
pub struct Job {
    pub campaign: String,
    /// The campaign's recipients by state at the end (every run's).
    pub counts: Counts,
    /// Its recipients that became final during this job.
    pub finals: u64,
    /// Rows of its list rejected, and skipped as duplicates.
    pub rejected: u64,
    pub duplicates: u64,
    /// What the spool held of other campaigns.
    pub others: Others,
    pub elapsed: Duration,
    /// The signal that stopped the job.
    pub interrupted: Option<&'static str>,
    /// The list was not completely spooled.
    pub list_unfinished: bool,
    /// The spool refused part of the list (what it accepted was delivered).
    pub failure: Option<CliError>,
}

/// Other campaigns' recipients: outcomes during the job, and what is left.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Others {
    pub delivered: u64,
    pub bounced: u64,
    pub failed: u64,
    pub deferred: u64,
    pub queued: u64,
}

impl Others {
    /// From the spool's counts before and after the job, less those of the
    /// job's campaign.
    pub(super) fn between(
        before: &volley_spool::Summary,
        after: &volley_spool::Summary,
        no: u32,
    ) -> Others {
        let rest = |s: &volley_spool::Summary| {
            let mut t = s.totals();
            if let Some(c) = s.campaigns.get(&no) {
                for st in volley_spool::State::ALL {
                    t.sub(st, c.counts.get(st));
                }
            }
            t
        };
        let (b, a) = (rest(before), rest(after));
        Others {
            delivered: a.delivered.saturating_sub(b.delivered),
            bounced: a.bounced.saturating_sub(b.bounced),
            failed: a.failed.saturating_sub(b.failed),
            deferred: a.deferred,
            queued: a.queued,
        }
    }

    fn is_empty(&self) -> bool {
        *self == Others::default()
    }
}

/// Prints rows that were not spooled, bounded (to stderr, or to a
/// running service's client).
pub(super) struct SkipReport {
    list: PathBuf,
    rejected: u64,
    duplicates: u64,
    out: Box<dyn FnMut(String) + Send>,
}

impl SkipReport {
    pub(super) fn new(list: &Path) -> SkipReport {
        SkipReport::to(list, Box::new(|line| eprintln!("{line}")))
    }

    /// Reports through `out`, one line at a time.
    pub(super) fn to(list: &Path, out: Box<dyn FnMut(String) + Send>) -> SkipReport {
        SkipReport {
            list: list.to_path_buf(),
            rejected: 0,
            duplicates: 0,
            out,
        }
    }

    pub(super) fn report(&mut self, s: Skipped<'_>) {
        let list = self.list.display();
        let (n, what) = match s {
            Skipped::Rejected(_) => (&mut self.rejected, "rejected rows"),
            Skipped::Duplicate(_) => (&mut self.duplicates, "duplicates"),
        };
        *n += 1;
        if *n > SHOWN + 1 {
            return;
        }
        if *n == SHOWN + 1 {
            (self.out)(format!("{list}: more {what} (see the summary)"));
            return;
        }
        let line = match s {
            Skipped::Rejected(r) => format!("{list}: line {}: rejected: {}", r.line, r.reason),
            Skipped::Duplicate(d) => format!(
                "{list}: line {}: skipped: {} is a duplicate of an earlier row's address",
                d.line(),
                d.email
            ),
        };
        (self.out)(line);
    }
}

/// `, N rows rejected, M duplicates skipped` (the parts that are not 0).
pub(super) fn not_spooled(rejected: u64, duplicates: u64) -> String {
    let mut s = String::new();
    let plural = |n: u64| if n == 1 { "" } else { "s" };
    if rejected > 0 {
        s += &format!(", {rejected} row{} rejected", plural(rejected));
    }
    if duplicates > 0 {
        s += &format!(", {duplicates} duplicate{} skipped", plural(duplicates));
    }
    s
}

/// Prints the summary of a job: a line about its campaign, and one about
/// other campaigns when the spool held any.
pub fn print_summary(job: &Job) {
    let c = &job.counts;
    let secs = job.elapsed.as_secs_f64().max(0.001);
    let spooled = format!(
        "{} recipients spooled{}",
        c.total(),
        not_spooled(job.rejected, job.duplicates)
    );
    let mut left = format!("deferred {}", c.deferred);
    if c.queued > 0 {
        left += &format!(", queued {}", c.queued);
    }
    if c.lost > 0 {
        left += &format!(", lost {}", c.lost);
    }
    let stopped = job
        .interrupted
        .map(|s| format!(" (stopped by {s})"))
        .unwrap_or_default();
    println!(
        "campaign {}{stopped}: {spooled}; delivered {}, bounced {}, render-failed {}, {left} in {:.1}s ({:.0} messages/s)",
        job.campaign,
        c.delivered,
        c.bounced,
        c.failed,
        secs,
        job.finals as f64 / secs,
    );
    let o = &job.others;
    if !o.is_empty() {
        println!(
            "other campaigns in the spool: delivered {}, bounced {}, render-failed {} during this job; deferred {}, queued {} left",
            o.delivered, o.bounced, o.failed, o.deferred, o.queued
        );
    }
}
