//! One inbound SMTP session (RFC 5321): the MX of the bounce and feedback
//! domains. EHLO (PIPELINING, SIZE, 8BITMIME, ENHANCEDSTATUSCODES and,
//! with a certificate, STARTTLS), MAIL (any sender, the null sender
//! included: bounces come from it), RCPT, DATA, RSET, NOOP, QUIT. No AUTH
//! and no relay: a recipient outside those domains is `550 5.7.1`. After
//! DATA the report is handled ([`super::handle`]) and `250` comes only
//! once what it changes is durable; what it is (a report, a forgery,
//! something else) is never told to the sender.
//!
//! Limits: 100 recipients per message, the size limit (the rest is read
//! and dropped, then `552`), messages per client address per minute
//! (`450 4.7.1` beyond), the line and idle limits of [`Wire`].
//! Exposure: every byte comes from the network; nothing panics.

use std::net::SocketAddr;
use std::sync::Arc;

use smtp_proto::Request;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Shared;
use crate::submission::smtp::wire::Wire;

/// Most recipients of one inbound message.
const MAX_RCPTS: usize = 100;
/// Bad commands after which the session is closed.
const MAX_ERRORS: u32 = 20;

/// How a session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    Closed,
    StartTls,
}

pub struct Session {
    shared: Arc<Shared>,
    peer: SocketAddr,
    tls: bool,
    mail_from: Option<String>,
    rcpts: Vec<String>,
    errors: u32,
    wire: Wire,
}

enum Step {
    Go,
    Close,
    StartTls,
}

impl Session {
    pub fn new(shared: Arc<Shared>, peer: SocketAddr, tls: bool) -> Session {
        Session {
            shared,
            peer,
            tls,
            mail_from: None,
            rcpts: Vec::new(),
            errors: 0,
            wire: Wire::default(),
        }
    }

    /// Runs the session to its end (greeting first when `greet`).
    pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        s: &mut S,
        greet: bool,
    ) -> std::io::Result<End> {
        if greet {
            let g = format!("220 {} ESMTP Volley", self.shared.hostname);
            self.wire.reply(&g);
        }
        loop {
            let Some(line) = self.wire.line(s).await? else {
                return Ok(End::Closed);
            };
            let step = self.command(s, &line).await?;
            match step {
                Step::Go => {}
                Step::Close => {
                    self.wire.flush(s).await?;
                    return Ok(End::Closed);
                }
                Step::StartTls => {
                    self.wire.flush(s).await?;
                    self.wire.buf.clear();
                    return Ok(End::StartTls);
                }
            }
            if self.errors >= MAX_ERRORS {
                self.wire.reply("421 4.7.0 Too many errors, closing");
                self.wire.flush(s).await?;
                return Ok(End::Closed);
            }
        }
    }

    fn error(&mut self, text: &str) -> Step {
        self.errors += 1;
        self.wire.reply(text);
        Step::Go
    }

    fn reset(&mut self) {
        self.mail_from = None;
        self.rcpts.clear();
    }

    async fn command<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        s: &mut S,
        line: &[u8],
    ) -> std::io::Result<Step> {
        let req = match Request::parse(&mut line.iter()) {
            Ok(r) => r,
            Err(smtp_proto::Error::UnknownCommand) => {
                return Ok(self.error("500 5.5.1 Command unrecognized"));
            }
            Err(e) => return Ok(self.error(&format!("501 5.5.4 Syntax error: {e}"))),
        };
        Ok(match req {
            Request::Ehlo { host } => {
                self.reset();
                self.ehlo(&host);
                Step::Go
            }
            Request::Helo { host } => {
                self.reset();
                let r = format!("250 {} Hello {host}", self.shared.hostname);
                self.wire.reply(&r);
                Step::Go
            }
            Request::StartTls => {
                if self.tls || self.shared.tls.is_none() {
                    self.error("503 5.5.1 TLS is not available here")
                } else {
                    self.wire.reply("220 2.0.0 Ready to start TLS");
                    Step::StartTls
                }
            }
            Request::Mail { from } => self.mail(&from.address, from.size),
            Request::Rcpt { to } => self.rcpt(&to.address),
            Request::Data => self.data(s).await?,
            Request::Rset => {
                self.reset();
                self.wire.reply("250 2.0.0 Reset");
                Step::Go
            }
            Request::Noop { .. } => {
                self.wire.reply("250 2.0.0 OK");
                Step::Go
            }
            Request::Quit => {
                self.wire.reply("221 2.0.0 Bye");
                Step::Close
            }
            _ => self.error("502 5.5.1 Command not implemented"),
        })
    }

    fn ehlo(&mut self, host: &str) {
        let mut lines = vec![
            format!("{} Hello {host}", self.shared.hostname),
            "PIPELINING".into(),
            format!("SIZE {}", self.shared.max_size),
            "8BITMIME".into(),
            "ENHANCEDSTATUSCODES".into(),
        ];
        if !self.tls && self.shared.tls.is_some() {
            lines.push("STARTTLS".into());
        }
        let n = lines.len();
        for (i, l) in lines.into_iter().enumerate() {
            let sep = if i + 1 == n { ' ' } else { '-' };
            self.wire.reply(&format!("250{sep}{l}"));
        }
    }

    fn mail(&mut self, from: &str, size: usize) -> Step {
        if self.mail_from.is_some() {
            return self.error("503 5.5.1 Nested MAIL command");
        }
        if size > self.shared.max_size {
            return self.error(&format!(
                "552 5.3.4 Message size exceeds fixed maximum message size ({} bytes)",
                self.shared.max_size
            ));
        }
        // the sender is only informational here (nothing is sent to it):
        // any plausible address is taken, as bounces come from odd hosts
        if from.len() > 320 || from.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return self.error("553 5.1.7 Bad sender address");
        }
        let from = from.to_ascii_lowercase();
        self.mail_from = Some(from);
        self.wire.reply("250 2.1.0 OK");
        Step::Go
    }

    fn rcpt(&mut self, to: &str) -> Step {
        if self.mail_from.is_none() {
            return self.error("503 5.5.1 Need MAIL before RCPT");
        }
        if self.rcpts.len() >= MAX_RCPTS {
            return self.error("452 4.5.3 Too many recipients");
        }
        let a = match crate::address::parse(to) {
            Ok(a) => a,
            Err(e) => return self.error(&format!("553 5.1.3 Bad recipient address: {e}")),
        };
        if !self.shared.domains.iter().any(|d| d == a.domain()) {
            return self
                .error("550 5.7.1 Relaying denied: this server takes no mail for that domain");
        }
        self.rcpts.push(a.email);
        self.wire.reply("250 2.1.5 OK");
        Step::Go
    }

    async fn data<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        s: &mut S,
    ) -> std::io::Result<Step> {
        if self.mail_from.is_none() {
            return Ok(self.error("503 5.5.1 Need MAIL before DATA"));
        }
        if self.rcpts.is_empty() {
            return Ok(self.error("554 5.5.1 No valid recipients"));
        }
        if !self.shared.rate.take(self.peer.ip()) {
            self.reset();
            return Ok(self.error("450 4.7.1 Too many messages from your address; try again later"));
        }
        self.wire.reply("354 End data with <CR><LF>.<CR><LF>");
        self.wire.flush(s).await?;
        let Some(data) = self.wire.read_data(s, self.shared.max_size).await? else {
            return Ok(Step::Close);
        };
        let reply = match data {
            None => format!(
                "552 5.3.4 Message size exceeds fixed maximum message size ({} bytes)",
                self.shared.max_size
            ),
            Some(d) => self.deliver(d).await,
        };
        self.reset();
        self.wire.reply(&reply);
        Ok(Step::Go)
    }

    async fn deliver(&mut self, data: Vec<u8>) -> String {
        let shared = Arc::clone(&self.shared);
        let from = self.mail_from.clone().unwrap_or_default();
        let rcpts = std::mem::take(&mut self.rcpts);
        let peer = self.peer;
        let done =
            tokio::task::spawn_blocking(move || shared.handler.handle(&from, &rcpts, &data)).await;
        match done {
            Ok(Ok(_)) => "250 2.0.0 OK".into(),
            Ok(Err(e)) => {
                tracing::error!(peer = %peer, error = %e, "inbound report not recorded");
                "451 4.3.0 Temporary failure, try again later".into()
            }
            Err(e) => {
                tracing::error!(peer = %peer, error = %e, "inbound report handling failed");
                "451 4.3.0 Temporary failure, try again later".into()
            }
        }
    }
}
