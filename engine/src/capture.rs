//! `volley sink`: a receiving SMTP server for development and tests, like
//! Mailpit. It advertises PIPELINING, accepts every transaction, counts
//! messages and optionally stores each one in a Maildir.
//!
//! Requests are parsed with smtp-proto's receivers; replies to pipelined
//! commands are written together when the client stops sending. Bounded:
//! command lines over 4 KiB get 500, messages over 50 MiB get 552, more
//! than [`MAX_RCPTS`] recipients get 452 and addresses over [`MAX_ADDRESS`]
//! bytes 501, a client silent for [`IDLE`] and connections beyond
//! [`MAX_CONNECTIONS`] get 421; no address is relayed anywhere (it only
//! stores).
//!
//! Memory is bounded whatever clients send: a message is streamed to its
//! Maildir file, or only counted, as it arrives ([`store`]), so a
//! connection holds its 64 KiB read buffer, at most one read of message
//! bytes, at most about 64 KiB of replies not yet written and its
//! recipients (at most 1,000 addresses of at most 256 bytes): under
//! 0.5 MiB each, about 0.5 GiB for 1,024 connections at worst. Exposure:
//! listens on the network; every byte from clients is hostile input.

pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use smtp_proto::Request;
use smtp_proto::request::receiver::RequestReceiver;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use store::{Finished, Incoming};

/// Largest message accepted.
pub const MAX_MESSAGE: usize = 50 << 20;
/// Most recipients of one transaction (more get `452 4.5.3`).
pub const MAX_RCPTS: usize = 1000;
/// Longest address accepted (RFC 5321 §4.5.3.1.3: a path of 256 octets).
pub const MAX_ADDRESS: usize = 256;
/// Bytes read from a connection at a time.
const READ: usize = 64 * 1024;
/// Most connections served at once (more are refused with `421`).
pub const MAX_CONNECTIONS: usize = 1024;
/// A connection that sends nothing for this long is closed with `421`.
pub const IDLE: std::time::Duration = std::time::Duration::from_secs(300);

/// Counters of a running sink.
#[derive(Debug, Default)]
pub struct Counters {
    pub messages: AtomicU64,
    pub recipients: AtomicU64,
    pub bytes: AtomicU64,
    pub connections: AtomicU64,
}

/// Why a sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create the Maildir {path}: {error}")]
    Maildir {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot listen on {addr}: {error}")]
    Listen {
        addr: SocketAddr,
        error: std::io::Error,
    },
}

/// A running capture server.
pub struct Capture {
    pub addr: SocketAddr,
    pub counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl Capture {
    /// Creates the Maildir (if any), binds `listen` and serves until
    /// dropped/stopped.
    pub async fn start(
        listen: SocketAddr,
        maildir: Option<PathBuf>,
    ) -> Result<Capture, StartError> {
        if let Some(dir) = &maildir {
            for sub in ["tmp", "new", "cur"] {
                let path = dir.join(sub);
                std::fs::create_dir_all(&path)
                    .map_err(|error| StartError::Maildir { path, error })?;
            }
        }
        let listening = |error| StartError::Listen {
            addr: listen,
            error,
        };
        let listener = TcpListener::bind(listen).await.map_err(listening)?;
        let addr = listener.local_addr().map_err(listening)?;
        let counters = Arc::new(Counters::default());
        let c = Arc::clone(&counters);
        let maildir = maildir.map(Arc::new);
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        let task = tokio::spawn(async move {
            loop {
                let stream = match listener.accept().await {
                    Ok((s, _)) => s,
                    Err(e) => {
                        // out of file descriptors or similar: wait, do not spin
                        tracing::warn!(error = %e, "sink cannot accept a connection");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                    let mut stream = stream;
                    tokio::spawn(async move {
                        let _ = stream
                            .write_all(b"421 4.3.2 Too many connections, try later\r\n")
                            .await;
                    });
                    continue;
                };
                c.connections.fetch_add(1, Ordering::Relaxed);
                let (c, maildir) = (Arc::clone(&c), maildir.clone());
                tokio::spawn(async move {
                    serve(stream, c, maildir).await;
                    drop(slot);
                });
            }
        });
        Ok(Capture {
            addr,
            counters,
            task,
        })
    }

    /// Stops accepting connections.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Tx {
    from: Option<String>,
    rcpts: Vec<String>,
}

/// A unique file name for a message in the Maildir.
fn file_name(counters: &Counters) -> String {
    format!(
        "{}.{}_{}_{}.volley-sink",
        volley_spool::now_ms(),
        std::process::id(),
        counters.messages.load(Ordering::Relaxed),
        fastrand::u32(..)
    )
}

/// The reply to the end of a message's data.
fn finished(counters: &Counters, tx: &Tx, done: Finished) -> Vec<u8> {
    match done {
        Finished::TooBig => b"552 5.3.4 Message too big\r\n".to_vec(),
        Finished::Failed(e) => {
            tracing::warn!(error = %e, "sink cannot store a message");
            b"451 4.3.0 Cannot store the message\r\n".to_vec()
        }
        Finished::Stored(size) => {
            let n = counters.messages.fetch_add(1, Ordering::Relaxed) + 1;
            counters
                .recipients
                .fetch_add(tx.rcpts.len() as u64, Ordering::Relaxed);
            counters.bytes.fetch_add(size as u64, Ordering::Relaxed);
            format!("250 2.0.0 Ok: queued as {n}\r\n").into_bytes()
        }
    }
}

async fn serve(mut stream: TcpStream, counters: Arc<Counters>, maildir: Option<Arc<PathBuf>>) {
    let mut out: Vec<u8> = b"220 volley-sink ESMTP ready\r\n".to_vec();
    let mut requests = RequestReceiver::default();
    let mut data: Option<Incoming> = None;
    let mut skip_line = false;
    let mut tx = Tx {
        from: None,
        rcpts: Vec::new(),
    };
    let mut chunk = vec![0u8; READ];
    loop {
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        let n = match tokio::time::timeout(IDLE, stream.read(&mut chunk)).await {
            Err(_) => {
                let _ = stream
                    .write_all(b"421 4.4.2 Idle too long, closing\r\n")
                    .await;
                return;
            }
            Ok(Ok(0) | Err(_)) => return,
            Ok(Ok(n)) => n,
        };
        let mut it = chunk[..n].iter();
        loop {
            // replies to a long pipelined burst go out as they pile up
            if out.len() >= READ {
                if stream.write_all(&out).await.is_err() {
                    return;
                }
                out.clear();
            }
            if let Some(m) = data.as_mut() {
                if !m.feed(&mut it) {
                    break;
                }
                if let Some(m) = data.take() {
                    out.extend_from_slice(&finished(&counters, &tx, m.finish()));
                }
                tx = Tx {
                    from: None,
                    rcpts: Vec::new(),
                };
                continue;
            }
            if it.as_slice().is_empty() {
                break;
            }
            if skip_line {
                match it.as_slice().iter().position(|&b| b == b'\n') {
                    Some(p) => {
                        it = it.as_slice()[p + 1..].iter();
                        skip_line = false;
                    }
                    None => break,
                }
                continue;
            }
            let before = it.as_slice();
            match requests.ingest(&mut it) {
                Ok(req) => {
                    let reply: &[u8] = match req {
                        Request::Ehlo { .. } | Request::Lhlo { .. } => {
                            b"250-volley-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 52428800\r\n250 ENHANCEDSTATUSCODES\r\n"
                        }
                        Request::Helo { .. } => b"250 volley-sink\r\n",
                        Request::Mail { from } if from.address.len() > MAX_ADDRESS => {
                            b"501 5.1.7 Address too long\r\n"
                        }
                        Request::Mail { from } => {
                            tx = Tx { from: Some(from.address.to_string()), rcpts: Vec::new() };
                            b"250 2.1.0 Ok\r\n"
                        }
                        Request::Rcpt { to } => {
                            if tx.from.is_none() {
                                b"503 5.5.1 MAIL first\r\n"
                            } else if to.address.len() > MAX_ADDRESS {
                                b"501 5.1.3 Address too long\r\n"
                            } else if tx.rcpts.len() >= MAX_RCPTS {
                                b"452 4.5.3 Too many recipients\r\n"
                            } else {
                                tx.rcpts.push(to.address.to_string());
                                b"250 2.1.5 Ok\r\n"
                            }
                        }
                        Request::Data => {
                            if tx.rcpts.is_empty() {
                                b"503 5.5.1 No valid recipients\r\n"
                            } else {
                                let dir = maildir.as_deref().map(PathBuf::as_path);
                                let from = tx.from.as_deref().unwrap_or("");
                                match Incoming::start(dir, &file_name(&counters), from, &tx.rcpts) {
                                    Ok(m) => {
                                        data = Some(m);
                                        b"354 End data with <CR><LF>.<CR><LF>\r\n"
                                    }
                                    Err(e) => {
                                        tracing::warn!(error = %e, "sink cannot create a message file");
                                        b"451 4.3.0 Cannot store the message\r\n"
                                    }
                                }
                            }
                        }
                        Request::Rset => {
                            tx = Tx { from: None, rcpts: Vec::new() };
                            b"250 2.0.0 Ok\r\n"
                        }
                        Request::Noop { .. } => b"250 2.0.0 Ok\r\n",
                        Request::Quit => {
                            let _ = stream.write_all(&out).await;
                            let _ = stream.write_all(b"221 2.0.0 Bye\r\n").await;
                            return;
                        }
                        Request::StartTls => b"454 4.7.0 TLS not available\r\n",
                        _ => b"502 5.5.1 Command not implemented\r\n",
                    };
                    out.extend_from_slice(reply);
                }
                Err(smtp_proto::Error::NeedsMoreData { .. }) => break,
                Err(e) => {
                    let used = before.len() - it.as_slice().len();
                    if used == 0 || before[used - 1] != b'\n' {
                        skip_line = true;
                    }
                    let msg = match e {
                        smtp_proto::Error::ResponseTooLong => {
                            "500 5.5.2 Line too long\r\n".to_string()
                        }
                        smtp_proto::Error::UnknownCommand => {
                            "500 5.5.2 Unknown command\r\n".to_string()
                        }
                        e => format!("501 5.5.4 Syntax error: {e:?}\r\n"),
                    };
                    out.extend_from_slice(msg.as_bytes());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn recipients_beyond_the_limit_get_452() {
        let cap = Capture::start("127.0.0.1:0".parse().unwrap(), None)
            .await
            .unwrap();
        let mut s = TcpStream::connect(cap.addr).await.unwrap();
        let mut cmds = String::from("EHLO t\r\nMAIL FROM:<a@x.test>\r\n");
        for i in 0..MAX_RCPTS + 2 {
            cmds.push_str(&format!("RCPT TO:<r{i}@y.test>\r\n"));
        }
        cmds.push_str("QUIT\r\n");
        s.write_all(cmds.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(&got);
        assert_eq!(text.matches("250 2.1.5").count(), MAX_RCPTS);
        assert_eq!(text.matches("452 4.5.3").count(), 2);
        assert!(text.ends_with("221 2.0.0 Bye\r\n"), "{text}");
        cap.stop();
    }
}
