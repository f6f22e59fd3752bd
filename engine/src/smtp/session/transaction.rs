//! Mail transactions on an open [`Session`]: pipelined (MAIL, every RCPT
//! and DATA in one write, then the message), streamed (the next
//! transaction's commands behind the message, see [`Session::send_then`])
//! or lock-step; one deciding reply per recipient, RSET after an
//! unfinished transaction. Exposure: replies come from an untrusted
//! server; every read is bounded (see the session's reads).

use super::{RcptReply, Session};
use crate::smtp::error::{Phase, SessionError};
use crate::smtp::reply::Reply;

/// The next transaction, announced to [`Session::send_then`].
#[derive(Debug, Clone, Copy)]
pub struct Follow<'a> {
    pub from: &'a str,
    pub rcpts: &'a [&'a str],
    /// Its payload's length (for SIZE).
    pub len: usize,
}

impl Session {
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
