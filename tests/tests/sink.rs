//! `volley sink`: its memory stays bounded however large and many the
//! messages (each is streamed to its Maildir file as it arrives, stored
//! byte for byte), and a Maildir it cannot create is named as the failure.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use volley_tests::*;

/// A running `volley sink`, killed when dropped.
struct Sink {
    child: Child,
    addr: String,
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `volley sink` on an ephemeral port, storing in `maildir`, and
/// reads the address it listens on from its log.
fn start_sink(dir: &Path, maildir: &Path) -> Sink {
    let log = dir.join("sink.log");
    let child = Command::new(volley())
        .args(["sink", "--listen", "127.0.0.1:0", "--maildir"])
        .arg(maildir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("starting volley sink");
    let mut sink = Sink {
        child,
        addr: String::new(),
    };
    wait_until(Duration::from_secs(60), "the sink to listen", || {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        match log
            .lines()
            .find_map(|l| l.strip_prefix("volley sink listening on "))
        {
            Some(rest) => {
                sink.addr = rest.split(',').next().unwrap_or("").to_string();
                true
            }
            None => false,
        }
    });
    sink
}

/// Peak resident memory of a process (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .expect("VmHWM")
        * 1024
}

/// Reads one (possibly multi-line) reply; returns its last line.
fn reply(r: &mut BufReader<TcpStream>) -> String {
    loop {
        let mut line = String::new();
        r.read_line(&mut line).expect("reply line");
        assert!(line.len() >= 4, "reply {line:?}");
        if line.as_bytes()[3] == b' ' {
            return line;
        }
    }
}

/// The body of message `i`: `lines` lines of 1,000 bytes, some starting
/// with a dot (dot-stuffed on the wire).
fn body(i: usize, lines: usize) -> Vec<u8> {
    let mut b = format!("Subject: message {i}\r\n\r\n").into_bytes();
    for n in 0..lines {
        let lead = if n % 97 == 0 { "." } else { "x" };
        let fill = (b'a' + (n % 26) as u8) as char;
        b.extend_from_slice(
            format!("{lead}{i:04}{n:08}{}\r\n", fill.to_string().repeat(986)).as_bytes(),
        );
    }
    b
}

#[test]
fn many_large_messages_at_once_keep_the_sink_small_and_arrive_intact() {
    const CONNECTIONS: usize = 40;
    const LINES: usize = 8 * 1024; // 8 MiB a message
    let fx = Fixture::new();
    let maildir = fx.path().join("mail");
    let sink = start_sink(fx.path(), &maildir);
    let all_sent = Arc::new(Barrier::new(CONNECTIONS + 1));
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|i| {
            let (addr, all_sent) = (sink.addr.clone(), Arc::clone(&all_sent));
            std::thread::spawn(move || {
                let s = TcpStream::connect(&addr).expect("connect to the sink");
                s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                assert!(reply(&mut r).starts_with("220"));
                for (cmd, want) in [
                    ("EHLO t".to_string(), "250"),
                    ("MAIL FROM:<a@x.test>".to_string(), "250"),
                    (format!("RCPT TO:<r{i}@y.test>"), "250"),
                    ("DATA".to_string(), "354"),
                ] {
                    w.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
                    let got = reply(&mut r);
                    assert!(got.starts_with(want), "{cmd}: {got}");
                }
                let b = body(i, LINES);
                let mut wire = Vec::with_capacity(b.len() + 200);
                for line in b.split_inclusive(|&c| c == b'\n') {
                    if line[0] == b'.' {
                        wire.push(b'.');
                    }
                    wire.extend_from_slice(line);
                }
                wire.extend_from_slice(b".\r\n");
                for part in wire.chunks(100_003) {
                    w.write_all(part).unwrap();
                }
                let got = reply(&mut r);
                assert!(got.starts_with("250"), "end of data: {got}");
                // every connection stays open until all messages are in
                all_sent.wait();
                w.write_all(b"QUIT\r\n").unwrap();
                assert!(reply(&mut r).starts_with("221"));
            })
        })
        .collect();
    all_sent.wait();
    let peak = peak_rss(sink.child.id());
    for c in clients {
        c.join().expect("client");
    }
    let sent = CONNECTIONS * body(0, LINES).len();
    eprintln!(
        "{CONNECTIONS} messages, {} MiB in all: the sink's peak RSS was {} MiB",
        sent >> 20,
        peak >> 20
    );
    assert!(
        peak < 100 << 20,
        "peak RSS {} MiB for {} MiB of messages",
        peak >> 20,
        sent >> 20
    );

    let mut stored: Vec<_> = std::fs::read_dir(maildir.join("new"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(stored.len(), CONNECTIONS);
    assert_eq!(std::fs::read_dir(maildir.join("tmp")).unwrap().count(), 0);
    // in message order, by the number in their subject
    stored.sort_by_key(|m| {
        let at = m
            .windows(17)
            .position(|w| w == b"Subject: message ")
            .unwrap()
            + 17;
        let digits = m[at..].iter().take_while(|b| b.is_ascii_digit()).count();
        String::from_utf8_lossy(&m[at..at + digits])
            .parse::<usize>()
            .unwrap()
    });
    for (i, m) in stored.iter().enumerate() {
        let mut want =
            format!("Return-Path: <a@x.test>\r\nDelivered-To: r{i}@y.test\r\n").into_bytes();
        want.extend_from_slice(&body(i, LINES));
        assert!(*m == want, "message {i} stored exactly ({} bytes)", m.len());
    }
}

#[test]
fn a_maildir_that_cannot_be_created_is_named() {
    let fx = Fixture::new();
    let out = run(
        fx.path(),
        &["sink", "--listen", "127.0.0.1:0", "--maildir", "/proc/nope"],
        Duration::from_secs(60),
    );
    assert_no_panic(&out);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot create the Maildir /proc/nope/tmp: No such file or directory"),
        "{err}"
    );
    assert!(!err.contains("cannot listen"), "{err}");
}
