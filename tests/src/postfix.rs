//! Postfix's `smtp-sink`, the independent receiving peer of the end-to-end
//! tests: started on an ephemeral loopback port (or a given loopback
//! address and port), dumping each transaction to a file whose recipients
//! the tests read back, or only counting them.

use std::io::BufRead;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// The counter file of a counting sink, in its dump directory.
const COUNTERS: &str = "counters.out";

/// Postfix's `smtp-sink` on an ephemeral loopback port, dumping each
/// transaction to a file (the independent receiving peer), or only counting.
pub struct PostfixSink {
    child: Child,
    ip: IpAddr,
    pub port: u16,
    pub dump: tempfile::TempDir,
}

impl PostfixSink {
    /// Starts smtp-sink dumping every transaction into [`PostfixSink::dump`];
    /// panics with a hint when Postfix is not installed.
    pub fn start() -> PostfixSink {
        let dump = tempfile::tempdir().expect("temp dir");
        let template = format!("{}/%M.", dump.path().display());
        PostfixSink::launch(dump, &["-d", &template, "-m", "512"], false, None)
    }

    /// Starts smtp-sink keeping no messages, only its running counters
    /// (`-c`, read by [`PostfixSink::counted`]); `extra` options such as
    /// `-p` (no PIPELINING) go before the address.
    pub fn counting(extra: &[&str]) -> PostfixSink {
        PostfixSink::counting_on(None, extra)
    }

    /// A [`PostfixSink::counting`] sink listening on `addr` (e.g. one of
    /// several loopback addresses that share one port); panics when it
    /// cannot listen there.
    pub fn counting_at(addr: SocketAddr, extra: &[&str]) -> PostfixSink {
        PostfixSink::counting_on(Some(addr), extra)
    }

    fn counting_on(at: Option<SocketAddr>, extra: &[&str]) -> PostfixSink {
        let dump = tempfile::tempdir().expect("temp dir");
        let mut args = vec!["-c", "-m", "1024"];
        args.extend_from_slice(extra);
        PostfixSink::launch(dump, &args, true, at)
    }

    /// Starts smtp-sink on `at`, or on a free port of 127.0.0.1 (trying
    /// another when the port was taken meanwhile).
    fn launch(
        dump: tempfile::TempDir,
        args: &[&str],
        counters: bool,
        at: Option<SocketAddr>,
    ) -> PostfixSink {
        let bin = ["/usr/sbin/smtp-sink", "/usr/bin/smtp-sink"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("Postfix smtp-sink not found: run .ci/run (or apt-get install postfix)");
        // smtp-sink drops to `nobody`, which must be able to write the dumps.
        std::fs::set_permissions(
            dump.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .expect("chmod");
        for _ in 0..if at.is_some() { 1 } else { 5 } {
            let addr = at.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], free_port())));
            let stdout = if counters {
                Stdio::from(
                    std::fs::File::create(dump.path().join(COUNTERS)).expect("counter file"),
                )
            } else {
                Stdio::null()
            };
            let mut child = Command::new(bin)
                .args(["-u", "nobody"])
                .args(args)
                .args([&addr.to_string(), "1024"])
                .stdout(stdout)
                .stderr(Stdio::null())
                .spawn()
                .expect("starting smtp-sink");
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(5) {
                if std::net::TcpStream::connect(addr).is_ok() {
                    return PostfixSink {
                        child,
                        ip: addr.ip(),
                        port: addr.port(),
                        dump,
                    };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // port taken: try another
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        match at {
            Some(addr) => panic!("smtp-sink did not start on {addr}"),
            None => panic!("smtp-sink did not start"),
        }
    }

    /// Messages whose end of data a [`PostfixSink::counting`] sink received
    /// so far (its `mesg=` counter).
    pub fn counted(&self) -> u64 {
        let s = std::fs::read_to_string(self.dump.path().join(COUNTERS)).unwrap_or_default();
        s.split(['\r', '\n', ' '])
            .filter_map(|t| t.strip_prefix("mesg="))
            .filter_map(|v| v.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
    }

    pub fn addr(&self) -> String {
        SocketAddr::new(self.ip, self.port).to_string()
    }

    /// The smtp-sink process's id (for reading its CPU time in /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The dumped transactions so far.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.dump.path())
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| !p.ends_with(COUNTERS))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Recipients (X-Rcpt-Args) of every completely dumped transaction.
    pub fn recipients(&self) -> Vec<String> {
        let mut out = Vec::new();
        for f in self.files() {
            let Ok(file) = std::fs::File::open(&f) else {
                continue;
            };
            for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
                if let Some(r) = line.strip_prefix("X-Rcpt-Args: ") {
                    out.push(
                        r.trim()
                            .trim_start_matches('<')
                            .split('>')
                            .next()
                            .unwrap_or("")
                            .to_string(),
                    );
                } else if !line.starts_with("X-") {
                    break;
                }
            }
        }
        out
    }
}

impl Drop for PostfixSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
