//! Test harness for Volley's integration tests: runs the real `volley`
//! binary against real peers (Postfix's `smtp-sink`, the scripted SMTP server
//! in [`scripted`]) and reads back what they received.
//!
//! Everything binds ephemeral loopback ports and every wait is bounded.

pub mod dns;
pub mod fault_rig;
pub mod feedback_rig;
pub mod mx_rig;
pub mod policy_server;
pub mod postfix;
pub mod process;
pub mod prom;
pub mod queue_rig;
pub mod rabbit;
pub mod receiver;
pub mod scripted;

pub use postfix::PostfixSink;
pub use process::*;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1, for peers that need a port number up
/// front (the service's `[http] listen`, smtp-sink). See [`port_free_on`].
pub fn free_port() -> u16 {
    port_free_on(&[std::net::IpAddr::from([127, 0, 0, 1])])
}

/// A TCP port free on every one of `ips` now, that no other caller in this
/// process is given and that the kernel does not hand out by itself: ports
/// come from a counter below the kernel's ephemeral range
/// (`ip_local_port_range`), starting at an offset of this process's id, so
/// an outgoing connection or a `bind(0)` elsewhere cannot take the port
/// between this check and the peer binding it. (A port released by the
/// kernel's own choice, as `bind(0)` gives, could be handed out again at
/// once.)
pub fn port_free_on(ips: &[std::net::IpAddr]) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u32, ephemeral_low.max(12_000));
    let span = high - low;
    let _ = NEXT.compare_exchange(
        0,
        std::process::id().wrapping_mul(7919) % span + 1,
        Ordering::AcqRel,
        Ordering::Acquire,
    );
    for _ in 0..span {
        let port = (low + NEXT.fetch_add(1, Ordering::AcqRel) % span) as u16;
        let free = ips
            .iter()
            .map(|ip| TcpListener::bind((*ip, port)))
            .collect::<Result<Vec<_>, _>>()
            .is_ok();
        if free {
            return port;
        }
    }
    panic!("no free port on {ips:?} between {low} and {high}");
}

/// Reads the JSONL events file (missing file = no events). Only whole
/// lines count: the service may be appending the last one right now (an
/// event that never gets its newline is missing from every later read too).
pub fn events(path: &Path) -> Vec<serde_json::Value> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    let whole = bytes
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(&bytes[..0], |end| &bytes[..end]);
    whole
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice(l).unwrap_or_else(|e| {
                panic!(
                    "event line is not JSON ({e}): {}",
                    String::from_utf8_lossy(l)
                )
            })
        })
        .collect()
}

/// The event type and first destination of every whole line of the JSONL
/// events file, read as a stream (for files too large to hold as JSON
/// values: a crash loop's hundreds of thousands of events).
pub fn event_keys(path: &Path) -> Vec<(String, String)> {
    use std::io::BufRead;
    #[derive(serde::Deserialize)]
    struct Mail {
        destination: Vec<String>,
    }
    #[derive(serde::Deserialize)]
    struct Brief {
        #[serde(rename = "eventType")]
        event_type: String,
        mail: Mail,
    }
    let Ok(f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut r = std::io::BufReader::with_capacity(1 << 20, f);
    let mut line = Vec::new();
    loop {
        line.clear();
        match r.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            // a last line without its newline may be half written
            Ok(_) if line.last() != Some(&b'\n') => break,
            Ok(_) => {}
        }
        let b: Brief = serde_json::from_slice(&line).unwrap_or_else(|e| {
            panic!(
                "event line is not JSON ({e}): {}",
                String::from_utf8_lossy(&line)
            )
        });
        let to = b.mail.destination.into_iter().next().unwrap_or_default();
        out.push((b.event_type, to));
    }
    out
}

/// Counts events of `event_type` per destination address.
pub fn per_recipient(events: &[serde_json::Value], event_type: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for e in events.iter().filter(|e| e["eventType"] == event_type) {
        let to = e["mail"]["destination"][0]
            .as_str()
            .expect("mail.destination[0]")
            .to_string();
        *out.entry(to).or_default() += 1;
    }
    out
}

/// Polls `cond` every 50 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A directory with a campaign, its list and a config.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Default for Fixture {
    fn default() -> Self {
        Fixture::new()
    }
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path().join(name);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).expect("create dir");
        }
        std::fs::write(&p, content).expect("write fixture file");
        p
    }

    /// Writes `config.toml` routing every domain to `route`, plus `extra`.
    pub fn config(&self, route: &str, extra: &str) -> PathBuf {
        self.write(
            "config.toml",
            format!(
                "[spool]\ndir = \"spool\"\n[events]\njsonl = \"events.jsonl\"\n[http]\nlisten = \"127.0.0.1:{}\"\n{extra}\n[routes]\n\"*\" = \"{route}\"\n",
                free_port()
            ),
        )
    }

    /// Writes `campaign.toml` with the given recipients file and templates.
    pub fn campaign(&self, recipients: &str, subject: &str, text: &str, extra: &str) -> PathBuf {
        self.write("body.txt", text);
        self.write(
            "campaign.toml",
            format!(
                "id = \"test-campaign\"\nfrom = \"Sender <news@example.com>\"\nsubject = {subject:?}\ntext = \"body.txt\"\nrecipients = {recipients:?}\n{extra}\n"
            ),
        )
    }

    pub fn events(&self) -> Vec<serde_json::Value> {
        events(&self.path().join("events.jsonl"))
    }

    /// Runs `volley CMD campaign.toml --config config.toml` (`send` or
    /// `enqueue`) here, within `limit`, and checks that it did not panic.
    pub fn volley(&self, cmd: &str, limit: Duration) -> Output {
        let out = run(
            self.path(),
            &[cmd, "campaign.toml", "--config", "config.toml"],
            limit,
        );
        assert_no_panic(&out);
        out
    }

    /// `volley send` within `limit`, checking exit 0 (nothing left
    /// deferred).
    pub fn send_ok(&self, limit: Duration) -> Output {
        let out = self.volley("send", limit);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        out
    }

    /// Spools the campaign (`volley enqueue`), checking exit 0.
    pub fn enqueue(&self) {
        let out = self.volley("enqueue", Duration::from_secs(60));
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }

    /// `volley status --json`, checking exit 0.
    pub fn status(&self) -> serde_json::Value {
        let out = run(
            self.path(),
            &["status", "--config", "config.toml", "--json"],
            Duration::from_secs(60),
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("status JSON")
    }

    /// One series' value (`name{labels}` as exposed) from the running
    /// service's `/metrics`; 0 when absent or the service does not answer.
    pub fn metric(&self, series: &str) -> f64 {
        let Ok((200, body)) = http_get(&self.http_addr(), "/metrics") else {
            return 0.0;
        };
        body.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    /// The `[http] listen` address written by [`Fixture::config`].
    pub fn http_addr(&self) -> String {
        let cfg = std::fs::read_to_string(self.path().join("config.toml")).expect("config.toml");
        cfg.lines()
            .find_map(|l| l.strip_prefix("listen = \""))
            .and_then(|l| l.strip_suffix('"'))
            .expect("listen address in config.toml")
            .to_string()
    }
}

/// A plain HTTP/1.1 GET; returns (status code, body).
pub fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    http_request(addr, "GET", path, &[], "").map(|(code, _, body)| (code, body))
}

/// A plain HTTP/1.1 request with `headers` and `body`; returns (status
/// code, response head, body).
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, String, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let code = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = resp
        .split_once("\r\n\r\n")
        .map(|(h, b)| (h.to_string(), b.to_string()))
        .unwrap_or_default();
    Ok((code, head, body))
}

/// `/usr/bin/python3` with dkimpy runs `verify_dkim.py` on a message.
pub fn verify_dkim(message: &Path, keys: &[String]) -> (bool, String) {
    let script = peers_dir().join("verify_dkim.py");
    let out = Command::new("/usr/bin/python3")
        .arg(&script)
        .arg(message)
        .args(keys)
        .arg("--all")
        .output()
        .expect("running verify_dkim.py");
    (
        out.status.success(),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

/// Where the shared peer scripts are (`VOLLEY_PEERS` or the in-repo copy).
pub fn peers_dir() -> PathBuf {
    if let Ok(p) = std::env::var("VOLLEY_PEERS") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers")
}
