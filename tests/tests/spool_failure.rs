//! A failed fdatasync of the journal while `volley run` delivers: the
//! service says it is unhealthy (`/healthz` 503 with the reason,
//! `volley_healthy 0`, one error line), stops starting transactions (its
//! connections close), does not retry the refused journal (the error
//! counter stays at one), exits 1 on SIGTERM, and a restart delivers the
//! rest, every recipient with exactly one Delivery event.
//!
//! How the sync fails: a small preloaded library (built here with `cc`)
//! wraps libc's `fdatasync` and `fsync` and returns `EIO` for files under
//! the spool's journal directory once a trigger file exists. The `volley`
//! binary is the real one, unmodified, and sees exactly what a failing disk
//! gives it: `fdatasync` returning -1 with `EIO`. A test switch inside the
//! spool would not exercise the path the kernel's error takes, and a
//! device-mapper or FUSE disk needs privileges and devices CI does not have.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use volley_tests::prom::{metrics_when, value};
use volley_tests::scripted::ScriptedServer;
use volley_tests::*;

const SHIM: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Fails syncs of files whose path contains $FAILSYNC_MATCH once the file
   $FAILSYNC_TRIGGER exists. */
static int should_fail(int fd) {
    const char *trigger = getenv("FAILSYNC_TRIGGER");
    const char *match = getenv("FAILSYNC_MATCH");
    if (!trigger || !match || access(trigger, F_OK) != 0) return 0;
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 0) return 0;
    path[n] = 0;
    return strstr(path, match) != NULL;
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    if (should_fail(fd)) { errno = EIO; return -1; }
    return real(fd);
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    if (should_fail(fd)) { errno = EIO; return -1; }
    return real(fd);
}
"#;

/// Builds the preloaded library in `dir`.
fn build_shim(dir: &Path) -> PathBuf {
    let src = dir.join("failsync.c");
    let lib = dir.join("failsync.so");
    std::fs::write(&src, SHIM).expect("write the shim source");
    let out = Command::new("cc")
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&lib)
        .arg(&src)
        .arg("-ldl")
        .output()
        .expect("running cc (needed to build the failing-sync library)");
    assert!(out.status.success(), "cc failed: {}", text(&out.stderr));
    lib
}

/// `volley run` with the library preloaded; stderr goes to `log`. Killed
/// when dropped (a failed assertion must not leave it running).
struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// CPU time (user + system) the process has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // the fields after the command name (which is in parentheses)
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

#[test]
fn a_failed_journal_sync_makes_the_service_unhealthy_and_halts_delivery() {
    const N: usize = 150;
    let server = ScriptedServer::accept_all(true);
    let fx = Fixture::new();
    let mut csv = String::from("email,name\n");
    for i in 0..N {
        csv.push_str(&format!("r{i}@d{}.test,N{i}\n", i % 3));
    }
    fx.write("list.csv", csv);
    fx.campaign("list.csv", "Hello {{name}}", "Hi {{name}}\n", "");
    // slow enough that most recipients are still queued when the disk fails
    fx.config(
        &server.addr.to_string(),
        "[delivery]\nmessages_per_second = 25\nrecipients_per_transaction = 1\n",
    );
    fx.enqueue();
    let shim = build_shim(fx.path());
    let trigger = fx.path().join("fail-journal-syncs");
    let journal = std::fs::canonicalize(fx.path())
        .expect("canonical test dir")
        .join("spool/journal/");
    let log = fx.path().join("run.log");
    let service = Service(
        Command::new(volley())
            .args(["run", "--config", "config.toml"])
            .current_dir(fx.path())
            .env("VOLLEY_LOG", "warn")
            .env("LD_PRELOAD", &shim)
            .env("FAILSYNC_TRIGGER", &trigger)
            .env("FAILSYNC_MATCH", &journal)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("starting volley run"),
    );
    let http = fx.http_addr();
    wait_until(Duration::from_secs(60), "the first deliveries", || {
        per_recipient(&fx.events(), "Delivery").len() >= 10
    });
    assert_eq!(
        http_get(&http, "/healthz").expect("GET /healthz"),
        (200, "ok\n".to_string())
    );

    // the disk starts failing syncs of the journal
    std::fs::write(&trigger, "").expect("create the trigger");
    wait_until(Duration::from_secs(30), "/healthz to say 503", || {
        matches!(http_get(&http, "/healthz"), Ok((503, _)))
    });
    let unhealthy_at = Instant::now();
    let (_, reason) = http_get(&http, "/healthz").expect("GET /healthz");
    assert!(
        reason.contains("fdatasync of the spool's journal failed")
            && reason.contains("Input/output error")
            && reason.contains("restart"),
        "{reason}"
    );
    // the recorder counts the refused write just after the spool failed
    metrics_when(
        &http,
        Duration::from_secs(10),
        "volley_healthy 0 and the refused write counted",
        |b| {
            value(b, "volley_healthy") == Some(0.0)
                && value(b, "volley_journal_errors_total").is_some_and(|n| n >= 1.0)
        },
    );

    // no new transactions: the connections close (before, they stayed open
    // with the outcomes the journal refused still holding their slots)
    wait_until(Duration::from_secs(30), "the connections to close", || {
        server.open_now() == 0
    });
    let received_at_halt = server.received_count();
    assert!(
        received_at_halt < N,
        "delivery stopped early: {received_at_halt}"
    );

    // over a few seconds: no retries of the refused journal, no new
    // connection, a quiet process
    let ticks = cpu_ticks(service.0.id());
    let watched = Instant::now();
    let body = metrics_when(&http, Duration::from_secs(30), "3 s to pass", |_| {
        watched.elapsed() >= Duration::from_secs(3)
    });
    let cpu = Duration::from_millis((cpu_ticks(service.0.id()) - ticks) * 10);
    eprintln!(
        "halted for {:?}: {cpu:?} of CPU over {:?}",
        unhealthy_at.elapsed(),
        watched.elapsed()
    );
    assert_eq!(
        value(&body, "volley_journal_errors_total"),
        Some(1.0),
        "the refused journal is not retried"
    );
    assert_eq!(value(&body, "volley_healthy"), Some(0.0));
    assert_eq!(server.received_count(), received_at_halt, "nothing sent");
    assert_eq!(server.open_now(), 0, "no new connection");

    // SIGTERM: stops, and says why it exits 1
    let mut service = service;
    // SAFETY: kill(2) with a pid we own; no memory is touched.
    unsafe {
        libc::kill(service.0.id() as libc::pid_t, libc::SIGTERM);
    }
    let status = service.0.wait().expect("waiting for volley run");
    let err = std::fs::read_to_string(&log).expect("read the log");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(status.code(), Some(1), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "one error line: {errors:#?}");
    assert!(
        errors[0].contains("the spool failed: delivery is halted")
            && errors[0].contains("Input/output error"),
        "{}",
        errors[0]
    );
    assert!(
        err.contains("stopped after the spool failed"),
        "the exit says why: {err}"
    );

    // a restart on a healthy disk delivers the rest; what was sent but not
    // journaled is sent again (at-least-once), every Delivery event once
    std::fs::remove_file(&trigger).expect("remove the trigger");
    let restarted = spawn(fx.path(), &["run", "--config", "config.toml"]);
    wait_until(Duration::from_secs(90), "every recipient delivered", || {
        per_recipient(&fx.events(), "Delivery").len() == N
    });
    stop(restarted);
    let delivered = per_recipient(&fx.events(), "Delivery");
    assert!(delivered.values().all(|&n| n == 1), "{delivered:?}");
    let resent = server.received_count() - N;
    eprintln!("received {received_at_halt} before the halt; {resent} sent again after it");
    assert!(resent <= 16, "at most one in-flight window again: {resent}");
}
