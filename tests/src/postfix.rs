//! Postfix's `smtp-sink`, the independent receiving peer of the end-to-end
//! tests: started on an ephemeral loopback port, dumping each transaction to
//! a file whose recipients the tests read back.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// Postfix's `smtp-sink` on an ephemeral loopback port, dumping each
/// transaction to a file (the independent receiving peer).
pub struct PostfixSink {
    child: Child,
    pub port: u16,
    pub dump: tempfile::TempDir,
}

impl PostfixSink {
    /// Starts smtp-sink; panics with a hint when Postfix is not installed.
    pub fn start() -> PostfixSink {
        let bin = ["/usr/sbin/smtp-sink", "/usr/bin/smtp-sink"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("Postfix smtp-sink not found: run .ci/run (or apt-get install postfix)");
        let dump = tempfile::tempdir().expect("temp dir");
        // smtp-sink drops to `nobody`, which must be able to write the dumps.
        std::fs::set_permissions(
            dump.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .expect("chmod");
        for _ in 0..5 {
            let port = free_port();
            let template = format!("{}/%M.", dump.path().display());
            let mut child = Command::new(bin)
                .args([
                    "-u",
                    "nobody",
                    "-d",
                    &template,
                    "-m",
                    "512",
                    &format!("127.0.0.1:{port}"),
                    "1024",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("starting smtp-sink");
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(5) {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return PostfixSink { child, port, dump };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // port taken: try another
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("smtp-sink did not start");
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The dumped transactions so far.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.dump.path())
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
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
