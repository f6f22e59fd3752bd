//! A private RabbitMQ broker for the tests: `rabbitmq-server` (Debian's,
//! installed by scripts/install-test-deps.sh) run as a child process with
//! its own node name, data directory, loopback-only AMQP port and its own
//! `epmd` on an ephemeral port, so tests do not touch a system broker and
//! can kill and restart theirs; plus the `pika` consumer
//! (`peers/amqp_queue.py`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, text, wait_until};

/// A broker (running or stopped) keeping its data across restarts.
pub struct Rabbit {
    dir: tempfile::TempDir,
    pub port: u16,
    epmd_port: u16,
    dist_port: u16,
    server: Option<Child>,
    epmd: Child,
}

impl Rabbit {
    /// Starts a broker; returns once it accepts AMQP connections.
    pub fn start() -> Rabbit {
        let dir = tempfile::tempdir().expect("temp dir");
        let epmd_port = free_port();
        let epmd = Command::new("epmd")
            .args(["-address", "127.0.0.1", "-port", &epmd_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("epmd (Debian's erlang, with rabbitmq-server)");
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n").expect("plugins file");
        let mut r = Rabbit {
            port: free_port(),
            dist_port: free_port(),
            epmd_port,
            dir,
            server: None,
            epmd,
        };
        r.restart();
        r
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2f`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Starts the broker again (after [`Rabbit::kill`]) on its data.
    pub fn restart(&mut self) {
        let d = self.dir.path();
        let child = Command::new("/usr/lib/rabbitmq/bin/rabbitmq-server")
            .env("HOME", d)
            .env(
                "RABBITMQ_NODENAME",
                format!("volley{}@localhost", self.port),
            )
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_LOGS", d.join("log/rabbit.log"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_PID_FILE", d.join("pid"))
            // no busy-waiting schedulers: the broker shares the cores with
            // what it is tested or measured against (RabbitMQ's advice for
            // shared machines)
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1} +sbwt none +sbwtdcpu none +sbwtdio none",
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("/usr/lib/rabbitmq/bin/rabbitmq-server (scripts/install-test-deps.sh)");
        self.server = Some(child);
        let port = self.port;
        wait_until(Duration::from_secs(120), "RabbitMQ listening", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    /// The broker's (Erlang VM's) process id, once it wrote it.
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.path().join("pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Kills the broker at once (as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // the Erlang VM may outlive the script that started it
        let pid = std::fs::read_to_string(self.dir.path().join("pid")).unwrap_or_default();
        if let Ok(pid) = pid.trim().parse::<i32>() {
            // SAFETY: kill(2) with a pid the broker wrote; no memory is touched.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        let port = self.port;
        wait_until(Duration::from_secs(30), "RabbitMQ gone", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
        });
    }

    /// Declares a durable topic `exchange` and a durable `queue` bound to
    /// it with `binding` (pika).
    pub fn declare(&self, exchange: &str, queue: &str, binding: &str) {
        let out = Command::new("/usr/bin/python3")
            .arg(script())
            .args(["declare", &self.url(), exchange, queue, binding])
            .output()
            .expect("python3 with pika");
        assert!(out.status.success(), "declare: {}", text(&out.stderr));
    }

    /// Empties `queue` (pika); how many messages it held.
    pub fn purge(&self, queue: &str) -> usize {
        let o = Command::new("/usr/bin/python3")
            .arg(script())
            .args(["purge", &self.url(), queue])
            .output()
            .expect("python3 with pika");
        assert!(o.status.success(), "purge: {}", text(&o.stderr));
        text(&o.stdout).trim().parse().expect("purged count")
    }

    /// Takes every message of `queue` (pika), appending them to `out`;
    /// how many there were.
    pub fn drain(&self, queue: &str, out: &Path) -> usize {
        let o = Command::new("/usr/bin/python3")
            .arg(script())
            .args(["drain", &self.url(), queue])
            .arg(out)
            .output()
            .expect("python3 with pika");
        assert!(o.status.success(), "drain: {}", text(&o.stderr));
        text(&o.stdout).trim().parse().expect("drained count")
    }
}

fn script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/amqp_queue.py")
}

impl Drop for Rabbit {
    fn drop(&mut self) {
        self.kill();
        let _ = self.epmd.kill();
        let _ = self.epmd.wait();
    }
}
