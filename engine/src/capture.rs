//! `volley sink`: a receiving SMTP server for development and tests, like
//! Mailpit. It advertises PIPELINING, accepts every transaction, counts
//! messages and optionally stores each one in a Maildir.
//!
//! Requests are parsed with smtp-proto's receivers; replies to pipelined
//! commands are written together when the client stops sending. Bounded:
//! command lines over 4 KiB get 500, messages over 50 MiB get 552, more
//! than [`MAX_RCPTS`] recipients get 452, a client silent for [`IDLE`] and
//! connections beyond [`MAX_CONNECTIONS`] get 421; no address is relayed
//! anywhere (it only stores). Exposure: listens on the
//! network; every byte from clients is hostile input.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use smtp_proto::Request;
use smtp_proto::request::receiver::{DataReceiver, RequestReceiver};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Largest message accepted.
pub const MAX_MESSAGE: usize = 50 << 20;
/// Most recipients of one transaction (more get `452 4.5.3`).
pub const MAX_RCPTS: usize = 1000;
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

/// A running capture server.
pub struct Capture {
    pub addr: SocketAddr,
    pub counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl Capture {
    /// Binds `listen` and serves until dropped/stopped.
    pub async fn start(listen: SocketAddr, maildir: Option<PathBuf>) -> std::io::Result<Capture> {
        if let Some(dir) = &maildir {
            for sub in ["tmp", "new", "cur"] {
                std::fs::create_dir_all(dir.join(sub))?;
            }
        }
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
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

fn store(dir: &Path, counters: &Counters, tx: &Tx, body: &[u8]) -> std::io::Result<()> {
    let n = counters.messages.load(Ordering::Relaxed);
    let name = format!(
        "{}.{}_{}_{}.volley-sink",
        volley_spool::now_ms(),
        std::process::id(),
        n,
        fastrand::u32(..)
    );
    let mut out = Vec::with_capacity(body.len() + 256);
    out.extend_from_slice(
        format!("Return-Path: <{}>\r\n", tx.from.as_deref().unwrap_or("")).as_bytes(),
    );
    for r in &tx.rcpts {
        out.extend_from_slice(format!("Delivered-To: {r}\r\n").as_bytes());
    }
    out.extend_from_slice(body);
    let tmp = dir.join("tmp").join(&name);
    std::fs::write(&tmp, &out)?;
    std::fs::rename(&tmp, dir.join("new").join(&name))
}

async fn serve(mut stream: TcpStream, counters: Arc<Counters>, maildir: Option<Arc<PathBuf>>) {
    let mut out: Vec<u8> = b"220 volley-sink ESMTP ready\r\n".to_vec();
    let mut requests = RequestReceiver::default();
    let mut data: Option<DataReceiver> = None;
    let mut body = Vec::new();
    let mut too_big = false;
    let mut skip_line = false;
    let mut tx = Tx {
        from: None,
        rcpts: Vec::new(),
    };
    let mut chunk = vec![0u8; 64 * 1024];
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
            if let Some(d) = data.as_mut() {
                let done = d.ingest(&mut it, &mut body);
                if body.len() > MAX_MESSAGE {
                    too_big = true;
                    body.clear();
                }
                if !done {
                    break;
                }
                data = None;
                if too_big {
                    out.extend_from_slice(b"552 5.3.4 Message too big\r\n");
                } else {
                    counters.messages.fetch_add(1, Ordering::Relaxed);
                    counters
                        .recipients
                        .fetch_add(tx.rcpts.len() as u64, Ordering::Relaxed);
                    counters
                        .bytes
                        .fetch_add(body.len() as u64, Ordering::Relaxed);
                    let stored = match &maildir {
                        Some(dir) => store(dir, &counters, &tx, &body),
                        None => Ok(()),
                    };
                    match stored {
                        Ok(()) => out.extend_from_slice(
                            format!(
                                "250 2.0.0 Ok: queued as {}\r\n",
                                counters.messages.load(Ordering::Relaxed)
                            )
                            .as_bytes(),
                        ),
                        Err(e) => {
                            tracing::warn!(error = %e, "sink cannot store a message");
                            out.extend_from_slice(b"451 4.3.0 Cannot store the message\r\n");
                        }
                    }
                }
                body.clear();
                too_big = false;
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
                        Request::Mail { from } => {
                            tx = Tx { from: Some(from.address.to_string()), rcpts: Vec::new() };
                            b"250 2.1.0 Ok\r\n"
                        }
                        Request::Rcpt { to } => {
                            if tx.from.is_none() {
                                b"503 5.5.1 MAIL first\r\n"
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
                                data = Some(DataReceiver::new());
                                b"354 End data with <CR><LF>.<CR><LF>\r\n"
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
