//! One open SMTP session: mail transactions, pipelined (RFC 2920) when the
//! server offers PIPELINING, lock-step otherwise.
//!
//! A pipelined transaction writes MAIL, every RCPT and DATA in one write and
//! reads one reply per command; only then the message (already dot-stuffed
//! and terminated) goes out and the final reply is read. With
//! [`Session::send_then`] the next transaction's MAIL, RCPT and DATA go
//! out in the same write as this message (RFC 2920 §3.1: message content
//! may start a group), so a stream of messages costs one round trip and
//! one write each; the next call then reads their replies without writing
//! them again. The result is one deciding reply per recipient: a rejected
//! RCPT keeps its own reply, the accepted ones share the DATA or
//! end-of-data reply. After an unfinished transaction the session sends
//! RSET so it can be reused. Transactions are in `transaction.rs`, the
//! DATA wire form in `stuff.rs`; here the session, its bounded reads and
//! writes, RSET and QUIT. Generic over the stream (plain TCP, TLS, or an
//! in-memory pipe in tests). Exposure: replies come from a remote,
//! untrusted server; all reads are bounded.

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::client::Timeouts;
use super::error::{Phase, SessionError};
use super::reply::{ReadError, Reply, ReplyReader};

/// A bidirectional byte stream a session can run over.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// What the server offered in EHLO.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps {
    pub pipelining: bool,
    /// Declared SIZE limit (0 = no limit declared).
    pub size: Option<usize>,
    /// The session runs over TLS.
    pub tls: bool,
}

/// The most a QUIT and close may take.
pub const QUIT_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The reply that decided one recipient's fate, and where it came.
pub type RcptReply = (Phase, Reply);

/// An open session.
pub struct Session {
    io: Box<dyn Io>,
    reader: ReplyReader,
    caps: Caps,
    t: Timeouts,
    /// Cleanup after a decided transaction (RSET, an empty message) failed:
    /// the replies stand, but the session cannot carry another one.
    broken: Option<SessionError>,
    /// The commands of the next transaction went out behind the last
    /// message (its recipient count): the next call reads their replies.
    ahead: Option<usize>,
}

fn read_err(phase: Phase, e: ReadError) -> SessionError {
    match e {
        ReadError::Timeout => SessionError::Timeout(phase),
        ReadError::Closed => SessionError::Closed(phase),
        ReadError::Io(s) => SessionError::Io(phase, s),
        ReadError::Protocol(s) => SessionError::Protocol(phase, s),
    }
}

impl Session {
    /// Wraps a stream that has completed greeting and EHLO.
    pub fn new(io: Box<dyn Io>, caps: Caps, t: Timeouts) -> Session {
        Session {
            io,
            reader: ReplyReader::default(),
            caps,
            t,
            broken: None,
            ahead: None,
        }
    }

    /// Why the session cannot carry another transaction although the last
    /// one was decided (its RSET failed, e.g. `421` and closed), if so.
    pub fn take_broken(&mut self) -> Option<SessionError> {
        self.broken.take()
    }

    /// RSET after a decided transaction: a failure does not change the
    /// replies, it only ends the session.
    async fn reset(&mut self) {
        if let Err(e) = self.rset().await {
            self.broken = Some(e);
        }
    }

    pub fn caps(&self) -> Caps {
        self.caps
    }

    async fn write(&mut self, phase: Phase, bytes: &[u8]) -> Result<(), SessionError> {
        self.write_parts(phase, &[bytes]).await
    }

    /// Writes `parts` back to back (vectored) and flushes, within the
    /// phase's time limit.
    async fn write_parts(&mut self, phase: Phase, parts: &[&[u8]]) -> Result<(), SessionError> {
        let limit = self.t.data_end.max(self.t.mail);
        let w = async {
            let mut slices: Vec<std::io::IoSlice<'_>> = parts
                .iter()
                .filter(|p| !p.is_empty())
                .map(|p| std::io::IoSlice::new(p))
                .collect();
            let mut left = slices.as_mut_slice();
            while !left.is_empty() {
                let n = self.io.write_vectored(left).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::WriteZero.into());
                }
                std::io::IoSlice::advance_slices(&mut left, n);
            }
            self.io.flush().await
        };
        match tokio::time::timeout(limit, w).await {
            Err(_) => Err(SessionError::Timeout(phase)),
            Ok(Err(e)) => Err(SessionError::Io(phase, e.to_string())),
            Ok(Ok(())) => Ok(()),
        }
    }

    async fn read(&mut self, phase: Phase) -> Result<Reply, SessionError> {
        let limit = match phase {
            Phase::Mail | Phase::Rset => self.t.mail,
            Phase::Rcpt => self.t.rcpt,
            Phase::Data => self.t.data,
            Phase::DataEnd => self.t.data_end,
            _ => self.t.ehlo,
        };
        let r = self
            .reader
            .read(&mut self.io, limit)
            .await
            .map_err(|e| read_err(phase, e))?;
        if r.code == 421 {
            // the server is closing the connection (RFC 5321 §3.8): the
            // session is over, and this reply (not the closed connection
            // that follows) is what happened to the transaction
            return Err(SessionError::Refused(phase, r));
        }
        Ok(r)
    }

    /// Sends RSET and checks the reply.
    pub async fn rset(&mut self) -> Result<(), SessionError> {
        self.write(Phase::Rset, b"RSET\r\n").await?;
        let r = self.read(Phase::Rset).await?;
        if r.is_positive() {
            Ok(())
        } else {
            Err(SessionError::Refused(Phase::Rset, r))
        }
    }

    /// Says QUIT and closes, best effort and within [`QUIT_LIMIT`] in all
    /// (a peer that stops reading cannot hold the connection).
    pub async fn quit(mut self) {
        let bye = async {
            if self.write(Phase::Rset, b"QUIT\r\n").await.is_ok() {
                let _ = self.reader.read(&mut self.io, QUIT_LIMIT).await;
            }
            let _ = self.io.shutdown().await;
        };
        let _ = tokio::time::timeout(QUIT_LIMIT, bye).await;
    }
}

mod stuff;
mod transaction;

pub use stuff::{dot_stuff, dot_stuff_parts};
pub use transaction::Follow;

#[cfg(test)]
mod tests;
