//! The server side of an SMTP connection's bytes, shared by the submission
//! and inbound sessions: replies gathered and written together (RFC 2920:
//! answers to pipelined commands go out when the client has sent nothing
//! more), command lines taken one at a time, and DATA read until its end.
//!
//! Invariants: a line is at most [`MAX_LINE`] bytes (longer ones are
//! answered `500` and end the session); a silent client is dropped after
//! [`IDLE`]; DATA beyond the caller's limit is read and dropped, never
//! kept. Exposure: every byte comes from the network; nothing panics.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

/// Longest command line.
pub const MAX_LINE: usize = 4096;
/// How long a client may stay silent.
pub const IDLE: Duration = Duration::from_secs(300);

/// Bytes read and not yet used, and replies not yet written.
pub struct Wire {
    pub buf: Vec<u8>,
    out: Vec<u8>,
}

impl Default for Wire {
    fn default() -> Self {
        Wire {
            buf: Vec::with_capacity(1024),
            out: Vec::with_capacity(512),
        }
    }
}

impl Wire {
    /// Queues a reply line (CRLF added).
    pub fn reply(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    /// Writes the queued replies.
    pub async fn flush<S: AsyncWrite + Unpin>(&mut self, s: &mut S) -> std::io::Result<()> {
        if !self.out.is_empty() {
            s.write_all(&self.out).await?;
            s.flush().await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Reads more bytes into `buf`; `false` at the end of the stream.
    pub async fn fill<S: AsyncRead + Unpin>(&mut self, s: &mut S) -> std::io::Result<bool> {
        self.buf.reserve(4096);
        match tokio::time::timeout(IDLE, s.read_buf(&mut self.buf)).await {
            Ok(Ok(0)) => Ok(false),
            Ok(Ok(_)) => Ok(true),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "client idle",
            )),
        }
    }

    /// Takes one line (with its CRLF) from `buf`, reading as needed (and
    /// writing the replies queued first); `None` at the end of the stream
    /// or for an overlong line.
    pub async fn line<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        s: &mut S,
    ) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf) {
                if i >= MAX_LINE {
                    self.reply("500 5.5.2 Line too long");
                    self.flush(s).await?;
                    return Ok(None);
                }
                return Ok(Some(self.buf.drain(..=i).collect()));
            }
            if self.buf.len() >= MAX_LINE {
                self.reply("500 5.5.2 Line too long");
                self.flush(s).await?;
                return Ok(None);
            }
            // nothing more pipelined: answer what was asked so far
            self.flush(s).await?;
            if !self.fill(s).await? {
                return Ok(None);
            }
        }
    }

    /// Reads the message after `354`: dot-unstuffed, at most `max` bytes
    /// kept (`Some(None)`: larger; the rest was read and dropped; `None`:
    /// the stream ended first).
    pub async fn read_data<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        s: &mut S,
        max: usize,
    ) -> std::io::Result<Option<Option<Vec<u8>>>> {
        let mut rx = smtp_proto::request::receiver::DataReceiver::new();
        let mut data = Vec::with_capacity(self.buf.len().min(max).max(16 * 1024));
        let mut over = false;
        loop {
            let mut it = self.buf.iter();
            let done = rx.ingest(&mut it, &mut data);
            let used = self.buf.len() - it.as_slice().len();
            self.buf.drain(..used);
            if data.len() > max {
                over = true;
                data.clear();
            }
            if done {
                return Ok(Some((!over).then_some(data)));
            }
            if !self.fill(s).await? {
                return Ok(None);
            }
        }
    }
}

/// Accepts connections until `stop` turns true, each in its own task
/// (`session`) while it holds one of `places`; a connection beyond them is
/// answered `421` and closed. `what` names the listener in logs.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    places: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
    what: &'static str,
    session: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = std::io::Result<()>> + Send + 'static,
{
    loop {
        let (conn, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(listener = what, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let Ok(place) = Arc::clone(&places).try_acquire_owned() else {
            tokio::spawn(async move {
                let mut conn = conn;
                let _ = conn
                    .write_all(b"421 4.3.2 Too many connections, try again later\r\n")
                    .await;
            });
            continue;
        };
        let _ = conn.set_nodelay(true);
        let run = session(conn, peer);
        tokio::spawn(async move {
            if let Err(e) = run.await {
                tracing::debug!(listener = what, peer = %peer, error = %e, "session ended");
            }
            drop(place);
        });
    }
}
