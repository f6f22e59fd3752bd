//! A private Postfix instance as the submission peer to beat: its own
//! config directory, queue and log under a temporary directory (the
//! system's `/etc/postfix` instance is not touched), `smtpd` on a loopback
//! port, every accepted message put on hold by a header check (so the
//! instance only accepts and queues durably: the same work Volley's submission does before its
//! `250`). The settings follow `shared/peers/postfix-baseline.sh`. Needs
//! root and Debian's `postfix` package.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A running private Postfix instance.
pub struct PostfixSmtpd {
    pub base: PathBuf,
    pub port: u16,
}

fn postfix(etc: &Path, args: &[&str]) -> std::process::Output {
    Command::new("/usr/sbin/postfix")
        .arg("-c")
        .arg(etc)
        .args(args)
        .output()
        .expect("running postfix")
}

impl PostfixSmtpd {
    /// Configures and starts an instance under `base` with smtpd on
    /// 127.0.0.1:`port`.
    pub fn start(base: &Path, port: u16, processes: u32) -> PostfixSmtpd {
        let etc = base.join("etc");
        let spool = base.join("spool");
        let data = base.join("data");
        for d in [&etc, &spool, &data] {
            std::fs::create_dir_all(d).expect("postfix dirs");
        }
        let _ = Command::new("chown").arg("postfix").arg(&data).status();
        let _ = Command::new("chmod").arg("755").arg(base).status();
        let master = std::fs::read_to_string("/etc/postfix/master.cf")
            .or_else(|_| std::fs::read_to_string("/usr/share/postfix/master.cf.dist"))
            .expect("a master.cf to start from");
        let master: String = master
            .lines()
            .map(|l| {
                let mut parts = l.splitn(2, char::is_whitespace);
                match (parts.next(), parts.next()) {
                    (Some("smtp"), Some(rest)) if rest.trim_start().starts_with("inet") => {
                        format!("127.0.0.1:{port} {rest}")
                    }
                    _ => l.to_string(),
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(etc.join("master.cf"), master + "\n").expect("master.cf");
        let main = format!(
            "compatibility_level = 3.6\n\
             queue_directory = {spool}\n\
             data_directory = {data}\n\
             maillog_file = {log}\n\
             maillog_file_prefixes = {base}, /var, /dev/stdout\n\
             myhostname = mta.peers.test\nmydomain = peers.test\nmyorigin = $mydomain\n\
             inet_interfaces = loopback-only\ninet_protocols = ipv4\nmynetworks = 127.0.0.0/8\n\
             mydestination =\nlocal_recipient_maps =\nlocal_transport = error:local delivery disabled\n\
             alias_maps =\nalias_database =\nrelay_domains =\n\
             relayhost = [127.0.0.1]:9\nsmtp_dns_support_level = disabled\nsmtpd_peername_lookup = no\n\
             smtpd_relay_restrictions = permit_mynetworks, reject\n\
             header_checks = static:HOLD\n\
             smtputf8_enable = no\nbiff = no\nappend_dot_mydomain = no\n\
             default_process_limit = {processes}\nin_flow_delay = 0\ndelay_warning_time = 0\n",
            spool = spool.display(),
            data = data.display(),
            log = base.join("maillog").display(),
            base = base.display(),
        );
        std::fs::write(etc.join("main.cf"), main).expect("main.cf");
        let _ = Command::new("/usr/sbin/postconf")
            .arg("-c")
            .arg(&etc)
            .args(["-F", "*/*/chroot = n"])
            .output();
        let _ = postfix(&etc, &["stop"]);
        let out = postfix(&etc, &["start"]);
        assert!(
            out.status.success(),
            "postfix start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        PostfixSmtpd {
            base: base.to_path_buf(),
            port,
        }
    }

    /// Messages accepted and queued (on hold, or anywhere in the queue
    /// past the drop directory).
    pub fn held(&self) -> usize {
        ["incoming", "active", "deferred", "hold"]
            .iter()
            .map(|q| count_files(&self.base.join("spool").join(q)))
            .sum()
    }

    /// Files waiting in the drop directory (`maildrop`).
    pub fn maildrop(&self) -> usize {
        count_files(&self.base.join("spool").join("maildrop"))
    }

    /// The instance's config directory.
    pub fn etc(&self) -> PathBuf {
        self.base.join("etc")
    }

    /// Empties the queue (between rounds).
    pub fn purge(&self) {
        let _ = Command::new("/usr/sbin/postsuper")
            .arg("-c")
            .arg(self.etc())
            .args(["-d", "ALL"])
            .output();
    }
}

fn count_files(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(_) => n += 1,
                Err(_) => {}
            }
        }
    }
    n
}

impl Drop for PostfixSmtpd {
    fn drop(&mut self) {
        let _ = postfix(&self.etc(), &["stop"]);
    }
}
