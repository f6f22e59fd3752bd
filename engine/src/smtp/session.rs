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
//! them again. The result is one
//! deciding reply per recipient: a rejected RCPT keeps its own reply, the
//! accepted ones share the DATA or end-of-data reply. After an unfinished
//! transaction the session sends RSET so it can be reused. Generic over the
//! stream (plain TCP, TLS, or an in-memory pipe in tests). Exposure: replies
//! come from a remote, untrusted server; all reads are bounded.

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

/// The next transaction, announced to [`Session::send_then`].
#[derive(Debug, Clone, Copy)]
pub struct Follow<'a> {
    pub from: &'a str,
    pub rcpts: &'a [&'a str],
    /// Its payload's length (for SIZE).
    pub len: usize,
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

    fn mail_cmd(&self, from: &str, size: usize) -> String {
        match self.caps.size {
            Some(_) => format!("MAIL FROM:<{from}> SIZE={size}\r\n"),
            None => format!("MAIL FROM:<{from}>\r\n"),
        }
    }

    /// MAIL, every RCPT and DATA of a pipelined transaction.
    fn commands(&self, from: &str, rcpts: &[&str], len: usize) -> String {
        let mut cmds = self.mail_cmd(from, len);
        for r in rcpts {
            cmds.push_str("RCPT TO:<");
            cmds.push_str(r);
            cmds.push_str(">\r\n");
        }
        cmds.push_str("DATA\r\n");
        cmds
    }

    /// The SIZE refusal of a payload of `len` bytes, if the server
    /// declared a smaller limit.
    fn over_size(&self, len: usize) -> Option<Reply> {
        let limit = self.caps.size.filter(|l| *l > 0 && len > *l)?;
        Some(Reply::new(
            552,
            [5, 3, 4],
            format!("message of {len} bytes exceeds the server's SIZE limit of {limit}"),
        ))
    }

    /// Whether the next transaction's commands are already out (sent
    /// behind the last message).
    pub fn announced(&self) -> bool {
        self.ahead.is_some()
    }

    /// Whether `next` can go out behind a message: the session pipelines
    /// and the server takes its size.
    pub fn can_follow(&self, next: &Follow<'_>) -> bool {
        self.caps.pipelining && self.over_size(next.len).is_none() && self.broken.is_none()
    }

    /// Runs one mail transaction; returns the deciding reply per recipient
    /// (in the order given). `data` must be dot-stuffed and end with
    /// `CRLF.CRLF`. A session error means the session is unusable; no
    /// recipient of this transaction is known to be delivered. A `421`
    /// reply to any command ends the session as `Refused(phase, reply)`.
    pub async fn send(
        &mut self,
        from: &str,
        rcpts: &[&str],
        data: &[u8],
    ) -> Result<Vec<RcptReply>, SessionError> {
        self.send_parts(from, rcpts, &[data]).await
    }

    /// [`Session::send`] with the payload in consecutive parts, written
    /// back to back (one `writev` where the socket takes them).
    pub async fn send_parts(
        &mut self,
        from: &str,
        rcpts: &[&str],
        data: &[&[u8]],
    ) -> Result<Vec<RcptReply>, SessionError> {
        Ok(self.send_then(from, rcpts, data, None).await?.0)
    }

    /// [`Session::send_parts`], writing `next`'s commands behind this
    /// message when it goes out (only if [`Session::can_follow`] allows).
    /// Returns whether they went out: then the next call must be that
    /// transaction (its replies are read, its commands not written again).
    /// After an error nothing was sent for `next` that counts: the session
    /// is over.
    pub async fn send_then(
        &mut self,
        from: &str,
        rcpts: &[&str],
        data: &[&[u8]],
        next: Option<Follow<'_>>,
    ) -> Result<(Vec<RcptReply>, bool), SessionError> {
        let len: usize = data.iter().map(|p| p.len()).sum();
        let announced = self.ahead.take();
        if let Some(n) = announced
            && n != rcpts.len()
        {
            return Err(SessionError::Protocol(
                Phase::Mail,
                "the transaction sent ahead was not the one that followed".into(),
            ));
        }
        if announced.is_none()
            && let Some(r) = self.over_size(len)
        {
            return Ok((
                rcpts.iter().map(|_| (Phase::Mail, r.clone())).collect(),
                false,
            ));
        }
        if self.caps.pipelining {
            let next = next.filter(|n| self.can_follow(n));
            self.send_pipelined(from, rcpts, data, len, announced.is_some(), next)
                .await
        } else {
            Ok((self.send_lockstep(from, rcpts, data, len).await?, false))
        }
    }

    async fn send_pipelined(
        &mut self,
        from: &str,
        rcpts: &[&str],
        data: &[&[u8]],
        len: usize,
        announced: bool,
        next: Option<Follow<'_>>,
    ) -> Result<(Vec<RcptReply>, bool), SessionError> {
        if !announced {
            let cmds = self.commands(from, rcpts, len);
            self.write(Phase::Mail, cmds.as_bytes()).await?;
        }
        let mail = self.read(Phase::Mail).await?;
        let mut rcpt_replies = Vec::with_capacity(rcpts.len());
        for _ in rcpts {
            rcpt_replies.push(self.read(Phase::Rcpt).await?);
        }
        let data_reply = self.read(Phase::Data).await?;
        let next = next.map(|n| (n.rcpts.len(), self.commands(n.from, n.rcpts, n.len)));
        self.finish(mail, rcpt_replies, data_reply, data, next)
            .await
    }

    async fn send_lockstep(
        &mut self,
        from: &str,
        rcpts: &[&str],
        data: &[&[u8]],
        len: usize,
    ) -> Result<Vec<RcptReply>, SessionError> {
        let cmd = self.mail_cmd(from, len);
        self.write(Phase::Mail, cmd.as_bytes()).await?;
        let mail = self.read(Phase::Mail).await?;
        if !mail.is_positive() {
            self.reset().await;
            return Ok(rcpts.iter().map(|_| (Phase::Mail, mail.clone())).collect());
        }
        let mut rcpt_replies = Vec::with_capacity(rcpts.len());
        for r in rcpts {
            self.write(Phase::Rcpt, format!("RCPT TO:<{r}>\r\n").as_bytes())
                .await?;
            rcpt_replies.push(self.read(Phase::Rcpt).await?);
        }
        if !rcpt_replies.iter().any(Reply::is_positive) {
            self.reset().await;
            return Ok(rcpt_replies.into_iter().map(|r| (Phase::Rcpt, r)).collect());
        }
        self.write(Phase::Data, b"DATA\r\n").await?;
        let data_reply = self.read(Phase::Data).await?;
        Ok(self
            .finish(mail, rcpt_replies, data_reply, data, None)
            .await?
            .0)
    }

    /// Common tail: decide per recipient given MAIL, RCPT and DATA replies,
    /// sending the message when DATA was accepted, with `next` (its
    /// recipient count and commands) behind it; says whether `next` went.
    async fn finish(
        &mut self,
        mail: Reply,
        rcpt_replies: Vec<Reply>,
        data_reply: Reply,
        data: &[&[u8]],
        next: Option<(usize, String)>,
    ) -> Result<(Vec<RcptReply>, bool), SessionError> {
        let any_accepted = rcpt_replies.iter().any(Reply::is_positive);
        if data_reply.code == 354 && (!mail.is_positive() || !any_accepted) {
            // The server wants data although nobody can receive it: end the
            // transaction with an empty message (its fate changes nothing).
            let ended = match self.write(Phase::DataEnd, b".\r\n").await {
                Ok(()) => self.read(Phase::DataEnd).await.map(drop),
                Err(e) => Err(e),
            };
            if let Err(e) = ended {
                self.broken = Some(e);
            }
        }
        if !mail.is_positive() {
            if data_reply.code != 354 {
                self.reset().await;
            }
            let replies = rcpt_replies.iter().map(|_| (Phase::Mail, mail.clone()));
            return Ok((replies.collect(), false));
        }
        if !any_accepted {
            if data_reply.code != 354 {
                self.reset().await;
            }
            let replies = rcpt_replies.into_iter().map(|r| (Phase::Rcpt, r));
            return Ok((replies.collect(), false));
        }
        if data_reply.code != 354 {
            self.reset().await;
            let replies = rcpt_replies.into_iter().map(|r| {
                if r.is_positive() {
                    (Phase::Data, data_reply.clone())
                } else {
                    (Phase::Rcpt, r)
                }
            });
            return Ok((replies.collect(), false));
        }
        let followed = match &next {
            Some((n, cmds)) => {
                let mut parts = data.to_vec();
                parts.push(cmds.as_bytes());
                self.write_parts(Phase::DataEnd, &parts).await?;
                self.ahead = Some(*n);
                true
            }
            None => {
                self.write_parts(Phase::DataEnd, data).await?;
                false
            }
        };
        let end = self.read(Phase::DataEnd).await?;
        let replies = rcpt_replies.into_iter().map(|r| {
            if r.is_positive() {
                (Phase::DataEnd, end.clone())
            } else {
                (Phase::Rcpt, r)
            }
        });
        Ok((replies.collect(), followed))
    }
}

/// Dot-stuffs a message for DATA and appends the terminating `CRLF.CRLF`
/// (see [`dot_stuff_parts`]).
pub fn dot_stuff(message: &[u8], out: &mut Vec<u8>) {
    dot_stuff_parts(&[message], out);
}

/// Dot-stuffs a message given in consecutive parts (e.g. signature headers
/// and the message) without joining them first, and appends the
/// terminating `CRLF.CRLF`.
///
/// The wire form is canonical whatever the message holds: every line end
/// (CRLF, a bare LF or a bare CR) goes out as CRLF (RFC 5321 §2.3.8), and a
/// `.` that starts any line is doubled (§4.5.2). Messages built by
/// `message::mime` have CRLF line ends only, so for them this copies and
/// stuffs; the conversion keeps a stray CR or LF from ever reaching a server
/// as one, where it could end the data early (SMTP smuggling).
pub fn dot_stuff_parts(parts: &[&[u8]], out: &mut Vec<u8>) {
    out.reserve(parts.iter().map(|p| p.len()).sum::<usize>() + 64);
    let mut at_line_start = true;
    // the last part ended in CR: an LF starting the next one belongs to it
    let mut after_cr = false;
    for part in parts {
        let mut rest = *part;
        if after_cr && !rest.is_empty() {
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
            after_cr = false;
        }
        while let Some(&first) = rest.first() {
            if at_line_start && first == b'.' {
                out.push(b'.');
            }
            match memchr::memchr2(b'\r', b'\n', rest) {
                Some(i) if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') => {
                    out.extend_from_slice(&rest[..i + 2]);
                    rest = &rest[i + 2..];
                    at_line_start = true;
                }
                Some(i) => {
                    // a bare CR or LF
                    out.extend_from_slice(&rest[..i]);
                    out.extend_from_slice(b"\r\n");
                    after_cr = rest[i] == b'\r' && i + 1 == rest.len();
                    rest = &rest[i + 1..];
                    at_line_start = true;
                }
                None => {
                    out.extend_from_slice(rest);
                    at_line_start = false;
                    break;
                }
            }
        }
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

#[cfg(test)]
mod tests;
