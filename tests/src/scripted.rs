//! A scripted SMTP server for fault tests: in-process, ephemeral loopback
//! port, one thread per connection, independent of the engine's code.
//!
//! A script decides the reply to each RCPT (given the address and how many
//! times that address was offered before); accepted recipients of a
//! transaction receive the message. PIPELINING is advertised when asked for;
//! replies to pipelined commands are written together once the client's
//! bytes are consumed, as real servers do.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Decides the reply line (without CRLF) to `RCPT TO:<addr>`; `seen` is how
/// many times this address was offered before.
pub type RcptScript = dyn Fn(&str, u32) -> String + Send + Sync;

/// One received message and who it was accepted for.
#[derive(Debug, Clone)]
pub struct Received {
    pub rcpts: Vec<String>,
    pub data: Vec<u8>,
}

#[derive(Default)]
struct Shared {
    offered: HashMap<String, u32>,
    received: Vec<Received>,
    /// Every command line received, in order (for protocol assertions).
    log: Vec<String>,
    /// Bytes of each read() from clients (how commands were grouped).
    reads: Vec<usize>,
}

/// A running scripted server.
pub struct ScriptedServer {
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
}

impl ScriptedServer {
    /// Starts a server answering RCPTs with `script`.
    pub fn start(pipelining: bool, script: Arc<RcptScript>) -> ScriptedServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind scripted server");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (sh, st) = (Arc::clone(&shared), Arc::clone(&stop));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::Acquire) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (sh, script) = (Arc::clone(&sh), Arc::clone(&script));
                std::thread::spawn(move || {
                    let _ = serve(conn, pipelining, &*script, &sh);
                });
            }
        });
        ScriptedServer { addr, shared, stop }
    }

    /// A server that accepts everything.
    pub fn accept_all(pipelining: bool) -> ScriptedServer {
        ScriptedServer::start(
            pipelining,
            Arc::new(|_: &str, _: u32| "250 2.1.5 Ok".to_string()),
        )
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.lock().expect("lock").received.clone()
    }

    /// How many times each address was offered in RCPT.
    pub fn offered(&self) -> HashMap<String, u32> {
        self.shared.lock().expect("lock").offered.clone()
    }

    /// Byte counts of each read from clients: pipelined commands written
    /// together arrive together.
    pub fn reads(&self) -> Vec<usize> {
        self.shared.lock().expect("lock").reads.clone()
    }

    pub fn command_log(&self) -> Vec<String> {
        self.shared.lock().expect("lock").log.clone()
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(
    conn: TcpStream,
    pipelining: bool,
    script: &RcptScript,
    shared: &Mutex<Shared>,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = BufWriter::new(conn);
    out.write_all(b"220 scripted ESMTP\r\n")?;
    out.flush()?;
    let mut from: Option<String> = None;
    let mut accepted: Vec<String> = Vec::new();
    let mut line = String::new();
    loop {
        if reader.buffer().is_empty() {
            out.flush()?;
            let n = reader.fill_buf()?.len();
            if n == 0 {
                return Ok(());
            }
            shared.lock().expect("lock").reads.push(n);
        }
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_string();
        shared.lock().expect("lock").log.push(cmd.clone());
        let upper = cmd.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            let p = if pipelining { "250-PIPELINING\r\n" } else { "" };
            write!(
                out,
                "250-scripted\r\n{p}250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n"
            )?;
        } else if upper.starts_with("HELO") {
            out.write_all(b"250 scripted\r\n")?;
        } else if upper.starts_with("MAIL FROM:") {
            from = Some(cmd[10..].to_string());
            accepted.clear();
            out.write_all(b"250 2.1.0 Ok\r\n")?;
        } else if upper.starts_with("RCPT TO:") {
            let addr = cmd[8..]
                .trim()
                .trim_start_matches('<')
                .split('>')
                .next()
                .unwrap_or("")
                .to_string();
            let seen = {
                let mut s = shared.lock().expect("lock");
                let n = s.offered.entry(addr.clone()).or_insert(0);
                *n += 1;
                *n - 1
            };
            let reply = if from.is_none() {
                "503 5.5.1 MAIL first".to_string()
            } else {
                script(&addr, seen)
            };
            if reply.starts_with('2') {
                accepted.push(addr);
            }
            write!(out, "{reply}\r\n")?;
        } else if upper == "DATA" {
            if accepted.is_empty() {
                out.write_all(b"554 5.5.1 No valid recipients\r\n")?;
                continue;
            }
            out.write_all(b"354 go ahead\r\n")?;
            out.flush()?;
            let mut data = Vec::new();
            loop {
                let mut l = Vec::new();
                if reader.by_ref().take(1 << 20).read_until(b'\n', &mut l)? == 0 {
                    return Ok(());
                }
                if l == b".\r\n" || l == b".\n" {
                    break;
                }
                let l = if l.starts_with(b"..") {
                    &l[1..]
                } else {
                    &l[..]
                };
                data.extend_from_slice(l);
            }
            shared.lock().expect("lock").received.push(Received {
                rcpts: std::mem::take(&mut accepted),
                data,
            });
            from = None;
            out.write_all(b"250 2.0.0 Ok: queued\r\n")?;
        } else if upper == "RSET" {
            from = None;
            accepted.clear();
            out.write_all(b"250 2.0.0 Ok\r\n")?;
        } else if upper == "NOOP" {
            out.write_all(b"250 2.0.0 Ok\r\n")?;
        } else if upper == "QUIT" {
            out.write_all(b"221 2.0.0 Bye\r\n")?;
            out.flush()?;
            return Ok(());
        } else {
            out.write_all(b"502 5.5.2 Not implemented\r\n")?;
        }
    }
}
