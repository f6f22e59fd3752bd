//! Running the `volley` binary: built once per test process, spawned with
//! its output drained in the background, stopped with SIGTERM, every wait
//! bounded.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Path of the `volley` binary, built once per test process with the same
/// profile as the tests (or `VOLLEY_BIN`).
pub fn volley() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("VOLLEY_BIN") {
            return PathBuf::from(p);
        }
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>")
            .to_path_buf();
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-q", "-p", "volley-engine", "--bin", "volley"]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd
            .status()
            .expect("running cargo build for the volley binary");
        assert!(status.success(), "building the volley binary failed");
        let bin = profile_dir.join("volley");
        assert!(bin.exists(), "{} missing after build", bin.display());
        bin
    })
    .clone()
}

/// Runs `volley` with `args` in `dir`, waiting at most `limit`.
pub fn run(dir: &Path, args: &[&str], limit: Duration) -> Output {
    let child = spawn(dir, args);
    wait_output(child, limit)
}

/// A running `volley` that is killed if the test ends without waiting for
/// it (a failed assertion must not leave a service running). Its stdout and
/// stderr are drained as it runs (a full pipe would block it).
pub struct Running(Option<Child>, Option<Drain>);

/// Threads collecting a child's output.
struct Drain {
    stdout: std::thread::JoinHandle<Vec<u8>>,
    stderr: std::thread::JoinHandle<Vec<u8>>,
}

impl Drain {
    fn start(child: &mut Child) -> Drain {
        fn collect<R: std::io::Read + Send + 'static>(
            r: Option<R>,
        ) -> std::thread::JoinHandle<Vec<u8>> {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut r) = r {
                    let _ = r.read_to_end(&mut buf);
                }
                buf
            })
        }
        Drain {
            stdout: collect(child.stdout.take()),
            stderr: collect(child.stderr.take()),
        }
    }

    fn finish(self, status: std::process::ExitStatus) -> Output {
        Output {
            status,
            stdout: self.stdout.join().unwrap_or_default(),
            stderr: self.stderr.join().unwrap_or_default(),
        }
    }
}

impl Running {
    pub fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    /// Sends SIGKILL.
    pub fn kill(&mut self) -> std::io::Result<()> {
        match self.0.as_mut() {
            Some(c) => c.kill(),
            None => Ok(()),
        }
    }

    pub fn try_wait(&mut self) -> std::io::Result<Option<std::process::ExitStatus>> {
        match self.0.as_mut() {
            Some(c) => c.try_wait(),
            None => Ok(None),
        }
    }

    pub fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        match self.0.as_mut() {
            Some(c) => c.wait(),
            None => Err(std::io::Error::other("already collected")),
        }
    }

    fn take(mut self) -> (Child, Drain) {
        (
            self.0.take().expect("child present"),
            self.1.take().expect("output drain present"),
        )
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `volley` with `args` in `dir` (stdout/stderr captured).
pub fn spawn(dir: &Path, args: &[&str]) -> Running {
    spawn_cmd(Command::new(volley()), dir, args)
}

/// [`spawn`] with more environment variables.
pub fn spawn_env(dir: &Path, args: &[&str], env: &[(&str, &Path)]) -> Running {
    let mut cmd = Command::new(volley());
    for (k, v) in env {
        cmd.env(k, v);
    }
    spawn_cmd(cmd, dir, args)
}

/// [`spawn`] with the open-file limit (soft and hard) set to `nofile`, as
/// `ulimit -n` in a shell would.
pub fn spawn_with_nofile(dir: &Path, args: &[&str], nofile: u64) -> Running {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(volley());
    // SAFETY: setrlimit(2) only, between fork and exec; no allocation.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: nofile,
                rlim_max: nofile,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    spawn_cmd(cmd, dir, args)
}

fn spawn_cmd(mut cmd: Command, dir: &Path, args: &[&str]) -> Running {
    let mut child = cmd
        .args(args)
        .current_dir(dir)
        .env(
            "VOLLEY_LOG",
            std::env::var("VOLLEY_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting volley");
    let drain = Drain::start(&mut child);
    Running(Some(child), Some(drain))
}

/// Waits for a child with a time limit (killing it when exceeded).
pub fn wait_output(child: Running, limit: Duration) -> Output {
    let (mut child, drain) = child.take();
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return drain.finish(status),
            Ok(None) if start.elapsed() > limit => {
                let _ = child.kill();
                let status = child.wait().expect("collecting output");
                let out = drain.finish(status);
                panic!(
                    "volley did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("waiting for volley: {e}"),
        }
    }
}

/// Sends SIGTERM to a child.
pub fn terminate(child: &Running) {
    // SAFETY: kill(2) with a pid we own; no memory is touched.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
}

/// Stops a service with SIGTERM and checks that it exits 0 within 60 s
/// without a panic; returns its output.
pub fn stop(service: Running) -> Output {
    terminate(&service);
    let out = wait_output(service, Duration::from_secs(60));
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    out
}

/// Text of an output stream.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Asserts that nothing in the output is a Rust panic.
pub fn assert_no_panic(out: &Output) {
    let err = text(&out.stderr);
    assert!(!err.contains("panicked"), "volley panicked:\n{err}");
}
