//! Running one child process under watch: its wall time from spawn to exit,
//! its peak resident memory (see [`Measured::max_rss_kib`]), its CPU time
//! (`wait4` on that one child, so runs do not mix), and bounds
//! that end a run which takes too long, stops making progress or grows past
//! a memory cap (the child is killed and the reason returned).
//!
//! Inputs: a prepared [`Command`] (its output redirected by the caller, so
//! no pipe can fill), [`Limits`] and a progress counter to poll. Output:
//! [`Measured`]. The child is reaped only here (never by `std`'s `Child`),
//! and only after it is known to have exited, so a kill never reaches a
//! reused process id. Also: the machine's busy share over an interval
//! ([`CpuTimes`]) and a process's CPU time from /proc ([`proc_cpu_secs`]).
//! [`run_watched`] also hands the running child's pid to a sampler.
//! No untrusted input.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Bounds of one run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest run from spawn to exit.
    pub time: Duration,
    /// Longest time without progress (the counter unchanged).
    pub stall: Duration,
    /// Largest resident set (VmRSS) allowed, in KiB.
    pub max_rss_kib: u64,
}

/// Why a run was ended by the watcher.
#[derive(Debug, Clone, PartialEq)]
pub enum Stopped {
    /// Not finished within [`Limits::time`].
    TimedOut(Duration),
    /// No progress for [`Limits::stall`].
    Stalled(Duration),
    /// Its resident set reached this many KiB, over [`Limits::max_rss_kib`].
    OverMemory(u64),
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stopped::TimedOut(d) => write!(f, "killed: not done after {} s", d.as_secs()),
            Stopped::Stalled(d) => write!(f, "killed: no progress for {} s", d.as_secs()),
            Stopped::OverMemory(kib) => {
                write!(f, "killed: resident set reached {} MB", kib / 1024)
            }
        }
    }
}

/// How a run ended and what it cost.
#[derive(Debug, Clone)]
pub struct Measured {
    /// The exit code, or `None` when a signal ended the process.
    pub code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// Set when the watcher killed it.
    pub stopped: Option<Stopped>,
    /// From spawn to the exit being seen.
    pub wall: Duration,
    /// Peak resident set of the process, KiB: the kernel's `ru_maxrss`,
    /// unless that may be this process's: the child is forked (for
    /// `pre_exec`), and Linux counts the forked copy of the parent's
    /// memory, before `exec`, in it (after a run with a large test DNS
    /// zone, 153 MB for an 85 MB process). So when `ru_maxrss` is not
    /// clearly above what this process had at the spawn, the figure is
    /// the child's VmHWM (the high-water mark of the program's own
    /// memory), polled every 100 ms while it runs the program.
    pub max_rss_kib: u64,
    /// User + system CPU time of the process.
    pub cpu: Duration,
    /// The last progress value seen.
    pub progress: u64,
}

/// Spawns `cmd` and watches it until it exits or a limit ends it.
/// `progress` is polled about once a second; any change counts as progress.
/// The child is killed too if the calling thread ends first (e.g. the
/// bench is killed).
pub fn run(cmd: Command, limits: Limits, progress: impl FnMut() -> u64) -> Measured {
    run_watched(cmd, limits, progress, Duration::from_millis(100), |_| {})
}

/// [`run`], also calling `watch` with the child's pid about every `every`
/// while it runs (e.g. to sample its threads, see [`crate::threads`]).
pub fn run_watched(
    mut cmd: Command,
    limits: Limits,
    mut progress: impl FnMut() -> u64,
    every: Duration,
    mut watch: impl FnMut(libc::pid_t),
) -> Measured {
    // SAFETY: prctl is async-signal-safe and touches only the child.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let program = std::fs::canonicalize(cmd.get_program()).ok();
    let mut hwm = 0u64;
    let parent_rss = vm_kib(std::process::id() as libc::pid_t, "VmRSS:").unwrap_or(0);
    let start = Instant::now();
    let child = cmd.spawn().expect("spawning the measured process");
    let pid = child.id() as libc::pid_t;
    // `child` is never waited on by std: it is reaped below with wait4.
    drop(child);
    let (exited_tx, exited) = mpsc::channel::<Instant>();
    std::thread::spawn(move || {
        // waits for the exit without reaping it (WNOWAIT): the pid stays
        // the child's until the reaping wait4 below
        loop {
            // SAFETY: a zeroed siginfo_t is a valid out-parameter.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: waitid writes only into `info`.
            let r = unsafe {
                libc::waitid(
                    libc::P_PID,
                    pid as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOWAIT,
                )
            };
            if r == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                let _ = exited_tx.send(Instant::now());
                return;
            }
        }
    });
    let mut stopped = None;
    let mut last = progress();
    let mut last_change = Instant::now();
    let mut last_poll = Instant::now();
    let end = loop {
        if let Ok(at) = exited.recv_timeout(every) {
            break at;
        }
        watch(pid);
        let now = Instant::now();
        let rss = vm_kib(pid, "VmRSS:").unwrap_or(0);
        if program.is_some() && std::fs::read_link(format!("/proc/{pid}/exe")).ok() == program {
            hwm = hwm.max(vm_kib(pid, "VmHWM:").unwrap_or(0));
        }
        if now.duration_since(last_poll) >= Duration::from_secs(1) {
            last_poll = now;
            let p = progress();
            if p != last {
                (last, last_change) = (p, now);
            }
        }
        let reason = if now.duration_since(start) > limits.time {
            Some(Stopped::TimedOut(limits.time))
        } else if now.duration_since(last_change) > limits.stall {
            Some(Stopped::Stalled(limits.stall))
        } else if rss > limits.max_rss_kib {
            Some(Stopped::OverMemory(rss))
        } else {
            None
        };
        if let Some(r) = reason {
            stopped = Some(r);
            // SAFETY: the child is not reaped yet, so `pid` is still it.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            break exited
                .recv_timeout(Duration::from_secs(30))
                .expect("the killed process did not exit within 30 s");
        }
    };
    let (status, usage) = reap(pid);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Measured {
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
        stopped,
        wall: end.duration_since(start),
        max_rss_kib: match (hwm, usage.ru_maxrss as u64) {
            (polled, ru) if polled > 0 && ru <= parent_rss + parent_rss / 8 => polled,
            (_, ru) => ru,
        },
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        progress: last.max(progress()),
    }
}

/// Reaps the exited child `pid`: its wait status and resource usage.
fn reap(pid: libc::pid_t) -> (i32, libc::rusage) {
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid out-parameter.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: wait4 writes only into `status` and `usage`.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            return (status, usage);
        }
        let e = std::io::Error::last_os_error();
        assert!(
            e.kind() == std::io::ErrorKind::Interrupted,
            "wait4({pid}) failed: {e}"
        );
    }
}

/// A memory figure of `pid` from /proc (`field`: e.g. `VmRSS:`; KiB).
fn vm_kib(pid: libc::pid_t, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// User + system CPU seconds of a running process (`/proc/<pid>/stat`).
pub fn proc_cpu_secs(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // fields after the command name, which is in parentheses
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime): (f64, f64) = (f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?);
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / tick)
}

/// The machine's CPU counters (`/proc/stat`, all CPUs), to tell how busy
/// it was between two readings.
#[derive(Debug, Clone, Copy)]
pub struct CpuTimes {
    total: u64,
    idle: u64,
}

impl CpuTimes {
    pub fn now() -> CpuTimes {
        let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let v: Vec<u64> = s
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        CpuTimes {
            total: v.iter().sum(),
            // idle + iowait
            idle: v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0),
        }
    }

    /// Share (0..=1) of all CPUs that was busy since `earlier`.
    pub fn busy_since(&self, earlier: &CpuTimes) -> f64 {
        let total = self.total.saturating_sub(earlier.total);
        let idle = self.idle.saturating_sub(earlier.idle);
        if total == 0 {
            0.0
        } else {
            1.0 - idle as f64 / total as f64
        }
    }
}

/// Waits, at most `limit`, for the machine to be at most `max_busy` (0..=1)
/// busy over a second; returns the last busy share seen.
pub fn wait_quiet(max_busy: f64, limit: Duration) -> f64 {
    let start = Instant::now();
    loop {
        let before = CpuTimes::now();
        std::thread::sleep(Duration::from_secs(1));
        let busy = CpuTimes::now().busy_since(&before);
        if busy <= max_busy || start.elapsed() >= limit {
            return busy;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// The 1-minute load average (`/proc/loadavg`).
pub fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            time: Duration::from_secs(60),
            stall: Duration::from_secs(60),
            max_rss_kib: u64::MAX,
        }
    }

    #[test]
    fn reports_exit_code_and_the_childs_own_peak_memory() {
        // the child touches 64 MiB; the parent (this test) does not
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.args(["-c", "b = b'x' * (64 << 20)\nimport sys; sys.exit(7)"]);
        let m = run(cmd, limits(), || 0);
        assert_eq!((m.code, m.signal, m.stopped.clone()), (Some(7), None, None));
        assert!(m.max_rss_kib >= 64 * 1024, "{m:?}");
        assert!(m.max_rss_kib < 512 * 1024, "{m:?}");
    }

    #[test]
    fn the_parents_memory_is_not_the_childs() {
        // this process holds 256 MiB when it forks the child
        let held = vec![1u8; 256 << 20];
        let mut cmd = Command::new("/usr/bin/sleep");
        cmd.arg("1");
        let m = run(cmd, limits(), || 0);
        assert_eq!(m.code, Some(0));
        assert!(m.max_rss_kib < 64 * 1024, "{m:?}");
        assert!(m.max_rss_kib > 0, "{m:?}");
        drop(held);
    }

    #[test]
    fn kills_a_run_without_progress() {
        let mut cmd = Command::new("sleep");
        cmd.arg("600");
        let l = Limits {
            stall: Duration::from_secs(1),
            ..limits()
        };
        let m = run(cmd, l, || 0);
        assert_eq!(m.stopped, Some(Stopped::Stalled(Duration::from_secs(1))));
        assert_eq!(m.signal, Some(libc::SIGKILL));
        assert!(m.wall < Duration::from_secs(60), "{m:?}");
    }

    #[test]
    fn kills_a_run_over_its_memory_cap() {
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.args(["-c", "b = b'x' * (256 << 20)\nimport time; time.sleep(600)"]);
        let l = Limits {
            max_rss_kib: 64 * 1024,
            ..limits()
        };
        let m = run(cmd, l, || 0);
        assert!(
            matches!(m.stopped, Some(Stopped::OverMemory(k)) if k > 64 * 1024),
            "{m:?}"
        );
        assert_eq!(m.signal, Some(libc::SIGKILL));
    }
}
