//! An HTTPS server for MTA-STS policy files: answers
//! `GET /.well-known/mta-sts.txt` with the policy given for the request's
//! `Host` (`mta-sts.<domain>`), 404 for any other host or path, over TLS
//! with the certificate it was given (a [`crate::scripted::TestCa`] one).
//! One thread accepts on 127.0.0.1 at an ephemeral port; each connection
//! is answered on a thread of its own and closed. The requests are kept
//! (`host path`). The server stops when dropped.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct PolicyServer {
    pub port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl PolicyServer {
    /// Serves `policies` (host → policy text) with `tls`.
    pub fn start(
        tls: Arc<rustls::ServerConfig>,
        policies: BTreeMap<String, String>,
    ) -> PolicyServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the policy server");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("local address").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let policies = Arc::new(policies);
        let (r, s) = (Arc::clone(&requests), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !s.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((tcp, _)) => {
                        let (tls, policies, r) =
                            (Arc::clone(&tls), Arc::clone(&policies), Arc::clone(&r));
                        std::thread::spawn(move || {
                            let _ = answer(tcp, tls, &policies, &r);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        PolicyServer {
            port,
            requests,
            stop,
        }
    }

    /// The requests so far (`host path`).
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for PolicyServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

fn answer(
    tcp: TcpStream,
    tls: Arc<rustls::ServerConfig>,
    policies: &BTreeMap<String, String>,
    requests: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    tcp.set_nonblocking(false)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let conn = rustls::ServerConnection::new(tls).map_err(std::io::Error::other)?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let path = head
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("")
        .to_string();
    let host = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("host"))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    requests.lock().unwrap().push(format!("{host} {path}"));
    let body = (path == "/.well-known/mta-sts.txt")
        .then(|| policies.get(&host))
        .flatten();
    let reply = match body {
        Some(b) => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
            b.len()
        ),
        None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
    };
    s.write_all(reply.as_bytes())?;
    s.flush()?;
    s.conn.send_close_notify();
    let _ = s.flush();
    Ok(())
}
