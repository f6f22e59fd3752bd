//! CPU time by thread of a running process, grouped into the engine's
//! parts by thread name ([`part`]).
//!
//! Each sample reads `/proc/<pid>/task/<tid>/stat` of every thread: its
//! current name and its user + system time (clock ticks). A thread's time
//! is the last sample's, so what a thread does after it (its last moments
//! before it ends, or before the process exits) is not seen: sample often,
//! and compare the sum with the process's own total. Input: a pid of ours;
//! a thread or process that is gone is skipped.

use std::collections::HashMap;

/// The parts, in the order [`Threads::by_part`] gives them.
pub const PARTS: [&str; 6] = [
    "ingest",
    "production",
    "SMTP sessions (runtime workers)",
    "recorder",
    "event pump",
    "other",
];

/// The part a thread of `volley` with name `comm` belongs to. The
/// ingest's threads are `ingest-*`; in builds before they were named,
/// ingest ran on threads named `tokio-rt-worker` and counts with the
/// runtime's workers.
pub fn part(comm: &str) -> &'static str {
    if comm.starts_with("ingest-") {
        PARTS[0]
    } else if comm.starts_with("produce-") {
        PARTS[1]
    } else if comm == "tokio-rt-worker" {
        PARTS[2]
    } else if comm == "recorder" {
        PARTS[3]
    } else if comm.starts_with("pump-") || comm == "event-pump" {
        PARTS[4]
    } else {
        PARTS[5]
    }
}

/// The threads seen so far: name and CPU ticks, by thread id and start
/// time (a thread id the kernel gives again is another thread).
#[derive(Debug, Default)]
pub struct Threads {
    seen: HashMap<(u32, u64), (String, u64)>,
}

impl Threads {
    pub fn new() -> Threads {
        Threads::default()
    }

    /// Reads every thread of `pid` once.
    pub fn sample(&mut self, pid: libc::pid_t) {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return;
        };
        for entry in dir.flatten() {
            let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            if let Some(Stat {
                comm,
                ticks,
                started,
            }) = parse_stat(&stat)
            {
                let slot = self
                    .seen
                    .entry((tid, started))
                    .or_insert((String::new(), 0));
                // the name is the latest (a new thread starts with its
                // parent's), the time never goes back
                *slot = (comm.to_string(), slot.1.max(ticks));
            }
        }
    }

    /// CPU seconds of each of [`PARTS`], in that order.
    pub fn by_part(&self) -> Vec<(&'static str, f64)> {
        // SAFETY: sysconf has no preconditions.
        let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let mut sums: HashMap<&'static str, u64> = HashMap::new();
        for (comm, ticks) in self.seen.values() {
            *sums.entry(part(comm)).or_default() += ticks;
        }
        PARTS
            .iter()
            .map(|p| (*p, sums.get(p).copied().unwrap_or(0) as f64 / tick))
            .collect()
    }
}

/// What a `/proc/.../stat` line says of its thread.
#[derive(Debug, PartialEq)]
struct Stat<'a> {
    comm: &'a str,
    /// User + system time, clock ticks.
    ticks: u64,
    /// When it started, clock ticks after boot.
    started: u64,
}

/// Reads a `/proc/.../stat` line (pure).
fn parse_stat(stat: &str) -> Option<Stat<'_>> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?;
    // fields after the name, the state first: utime, stime and starttime
    // are the line's 14th, 15th and 22nd, so the 12th, 13th and 20th here
    let f: Vec<&str> = stat.get(close + 2..)?.split_whitespace().collect();
    let num = |i: usize| -> Option<u64> { f.get(i)?.parse().ok() };
    Some(Stat {
        comm,
        ticks: num(11)? + num(12)?,
        started: num(19)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_gives_name_and_ticks() {
        let line = "4242 (ingest-write) R 1 2 3 0 -1 4194560 10 0 0 0 170 35 0 0 20 0 1 0 99 0 0";
        let want = Stat {
            comm: "ingest-write",
            ticks: 205,
            started: 99,
        };
        assert_eq!(parse_stat(line), Some(want));
        // a name with spaces and parentheses
        let odd = "7 (a (b) c) S 1 2 3 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 9 0 0";
        let want = Stat {
            comm: "a (b) c",
            ticks: 7,
            started: 9,
        };
        assert_eq!(parse_stat(odd), Some(want));
        assert_eq!(parse_stat("7 (x) S 1"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn thread_names_map_to_parts() {
        assert_eq!(part("ingest-read"), "ingest");
        assert_eq!(part("produce-1"), "production");
        assert_eq!(part("tokio-rt-worker"), "SMTP sessions (runtime workers)");
        assert_eq!(part("recorder"), "recorder");
        assert_eq!(part("pump-jsonl"), "event pump");
        assert_eq!(part("event-pump"), "event pump");
        assert_eq!(part("volley"), "other");
    }

    /// CPU time of the calling thread.
    fn thread_cpu() -> std::time::Duration {
        // SAFETY: a zeroed timespec is a valid out-parameter.
        let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
        // SAFETY: clock_gettime writes only into `ts`.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    #[test]
    fn a_busy_thread_of_this_process_is_seen() {
        let pid = std::process::id() as libc::pid_t;
        let (done_tx, done) = std::sync::mpsc::channel::<()>();
        let busy = std::thread::Builder::new()
            .name("produce-9".into())
            .spawn(move || {
                // 150 ms of its own CPU (ticks are 10 ms), then it waits
                let mut x = 0u64;
                while thread_cpu() < std::time::Duration::from_millis(150) {
                    x = x.wrapping_mul(31).wrapping_add(1);
                }
                std::hint::black_box(x);
                let _ = done.recv();
            })
            .unwrap();
        let mut t = Threads::new();
        let start = std::time::Instant::now();
        while t.by_part()[1].1 < 0.1 {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(60),
                "the busy thread's CPU was not seen: {:?}",
                t.by_part()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
            t.sample(pid);
        }
        drop(done_tx);
        busy.join().unwrap();
        // under the name it gave itself
        assert!(t.seen.values().any(|(comm, _)| comm == "produce-9"));
    }
}
