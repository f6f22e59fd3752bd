//! Progress display of a delivery job: an indicatif bar on a terminal, plain
//! lines every few seconds otherwise.

use std::io::IsTerminal;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use volley_engine::delivery::Stats;

/// Counts a progress line shows.
pub struct Shown {
    pub delivered: u64,
    pub bounced: u64,
    pub failed: u64,
    pub deferred: u64,
    /// Final outcomes during the job (for the rate).
    pub finals: u64,
}

pub struct Progress {
    bar: Option<ProgressBar>,
    start: Instant,
    last_line: Instant,
}

impl Progress {
    pub fn new() -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(0);
            b.set_style(
                ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            b
        });
        let now = Instant::now();
        Progress {
            bar,
            start: now,
            last_line: now,
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Shows `done` of `total` recipients handled, from the engine's counts.
    pub fn update(&mut self, total: u64, stats: &Stats) {
        let done = stats.finals() + stats.waiting.load(Relaxed).max(0) as u64;
        self.show(
            total,
            done,
            Shown {
                delivered: stats.delivered.load(Relaxed),
                bounced: stats.bounced.load(Relaxed),
                failed: stats.failed.load(Relaxed),
                deferred: stats.deferrals.load(Relaxed),
                finals: stats.finals(),
            },
        );
    }

    /// Shows `done` of `total` recipients handled.
    pub fn show(&mut self, total: u64, done: u64, s: Shown) {
        let rate = s.finals as f64 / self.start.elapsed().as_secs_f64().max(0.001);
        let message = format!(
            "delivered {} bounced {} render-failed {} deferrals {} ({rate:.0}/s)",
            s.delivered, s.bounced, s.failed, s.deferred
        );
        match &self.bar {
            Some(b) => {
                b.set_length(total);
                b.set_position(done.min(total));
                b.set_message(message);
            }
            None if self.last_line.elapsed() >= Duration::from_secs(2) => {
                self.last_line = Instant::now();
                eprintln!("progress: {done}/{total} {message}");
            }
            None => {}
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
