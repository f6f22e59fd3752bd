//! The SNS endpoint of the tests (`peers/sns_receiver.py`, Python with
//! `cryptography`: it checks every SNS signature with the certificate it
//! fetches, independently of Volley's code, and confirms subscriptions),
//! run as a child process on a fixed port so that it can be stopped and
//! started again in the middle of a run.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A running (or stopped) receiver.
pub struct Receiver {
    pub port: u16,
    out: PathBuf,
    child: Option<Child>,
}

impl Receiver {
    /// Starts one on `port` writing its records to `out`.
    pub fn start(port: u16, out: &Path) -> Receiver {
        let mut r = Receiver {
            port,
            out: out.to_path_buf(),
            child: None,
        };
        r.restart();
        r
    }

    /// The URL to post to.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// Starts it again (after [`Receiver::stop`]); returns once it listens.
    pub fn restart(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/sns_receiver.py");
        let mut child = Command::new("/usr/bin/python3")
            .arg(&script)
            .arg(self.port.to_string())
            .arg(&self.out)
            .stdout(Stdio::piped())
            .spawn()
            .expect("/usr/bin/python3 with cryptography (scripts/install-test-deps.sh)");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("receiver stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("receiver output");
        assert_eq!(line.trim(), "ready", "the receiver did not start");
        self.child = Some(child);
    }

    /// Stops it (connections are refused until [`Receiver::restart`]).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Answers 500 to everything while `on`.
    pub fn failing(&self, on: bool) {
        self.switch("fail", on);
    }

    /// Answers 400 to notifications of `event_type` while `on`.
    pub fn refusing(&self, event_type: &str, on: bool) {
        self.switch(&format!("refuse-{event_type}"), on);
    }

    fn switch(&self, name: &str, on: bool) {
        let p = PathBuf::from(format!("{}.{name}", self.out.display()));
        if on {
            std::fs::write(&p, "").expect("switch file");
        } else {
            let _ = std::fs::remove_file(&p);
        }
    }

    /// Every record so far.
    pub fn records(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Records of `kind`.
    pub fn of_kind(&self, kind: &str) -> Vec<serde_json::Value> {
        self.records()
            .into_iter()
            .filter(|r| r["kind"] == kind)
            .collect()
    }

    /// Events taken (notifications and raw deliveries) by id; panics when
    /// one id came with two different events.
    pub fn events_by_id(&self) -> BTreeMap<String, serde_json::Value> {
        let mut out: BTreeMap<String, serde_json::Value> = BTreeMap::new();
        for r in self.records() {
            if r["kind"] != "notification" && r["kind"] != "raw" {
                continue;
            }
            let id = r["id"].as_str().expect("record id").to_string();
            if let Some(seen) = out.get(&id) {
                assert_eq!(seen, &r["event"], "id {id} came with two events");
            }
            out.insert(id, r["event"].clone());
        }
        out
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}
