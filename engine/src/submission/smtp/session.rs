//! One SMTP submission session (RFC 5321, 6409), generic over the stream:
//! EHLO (PIPELINING, 8BITMIME, SMTPUTF8, SIZE, ENHANCEDSTATUSCODES,
//! STARTTLS, AUTH PLAIN LOGIN), AUTH, MAIL, RCPT, DATA, RSET, NOOP, QUIT.
//!
//! Replies to pipelined commands are written together, when the client
//! has sent nothing more. STARTTLS ends the session with
//! [`End::StartTls`]; the caller wraps the stream and starts a fresh
//! session (RFC 3207: nothing said before counts after, and bytes sent
//! after the STARTTLS line are dropped). `250` after DATA comes only once
//! the acceptor says the message and its recipients are durable.
//!
//! Refusals: no AUTH (and not from a trusted network) → `530 5.7.0`; AUTH
//! without TLS → `538 5.7.11`; a sender outside the user's identities (MAIL
//! FROM or the From header) → `554 5.7.1` naming it; over the rate →
//! `454 4.7.0 Throttling failure`; over the daily quota → `554 5.7.0`.
//! Exposure: every byte comes from the network. Lines are bounded (4096
//! bytes), messages by the size limit (the rest is read and dropped),
//! idle clients by a timeout; nothing panics on any input.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use smtp_proto::Request;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Shared;
use super::wire::Wire;
use crate::campaign::MessageMeta;
use crate::submission::auth::{Principal, Standing};
use crate::submission::message::{self, Limits, Rejected};
use crate::submission::quota::Verdict;

/// Bad commands after which the session is closed.
const MAX_ERRORS: u32 = 20;

/// How a session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    Closed,
    /// The client asked for TLS (the `220` was sent).
    StartTls,
}

/// One session's state.
pub struct Session<'a> {
    shared: &'a Shared,
    peer: SocketAddr,
    tls: bool,
    principal: Option<Arc<Principal>>,
    trusted: bool,
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

impl<'a> Session<'a> {
    pub fn new(shared: &'a Shared, peer: SocketAddr, tls: bool) -> Session<'a> {
        let trusted = shared.trusted.iter().any(|n| n.contains(peer.ip()));
        Session {
            shared,
            peer,
            tls,
            principal: None,
            trusted,
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
            if self
                .shared
                .failures
                .standing(self.peer.ip(), Instant::now())
                == Standing::Refused
            {
                self.wire
                    .reply("421 4.7.0 Too many failed logins from your address; try later");
                self.wire.flush(s).await?;
                return Ok(End::Closed);
            }
            let greeting = format!("220 {} ESMTP Volley", self.shared.hostname);
            self.wire.reply(&greeting);
        }
        loop {
            let Some(line) = self.wire.line(s).await? else {
                return Ok(End::Closed);
            };
            match self.command(s, &line).await? {
                Step::Go => {}
                Step::Close => {
                    self.wire.flush(s).await?;
                    return Ok(End::Closed);
                }
                Step::StartTls => {
                    self.wire.flush(s).await?;
                    // anything pipelined after STARTTLS was sent in the
                    // clear: it must not count as sent over TLS
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
            Request::Helo { host } | Request::Lhlo { host } => {
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
            Request::Auth {
                mechanism,
                initial_response,
            } => self.auth(s, mechanism, &initial_response).await?,
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
            Request::Vrfy { .. } => {
                self.wire
                    .reply("252 2.5.0 Cannot verify, but will accept the message");
                Step::Go
            }
            _ => self.error("502 5.5.1 Command not implemented"),
        })
    }

    fn auth_allowed(&self) -> bool {
        self.tls || (self.shared.plaintext_auth_on_loopback && self.peer.ip().is_loopback())
    }

    fn ehlo(&mut self, host: &str) {
        let mut lines = vec![format!("{} Hello {host}", self.shared.hostname)];
        lines.push("PIPELINING".into());
        lines.push(format!("SIZE {}", self.shared.limits.max_size));
        lines.push("8BITMIME".into());
        lines.push("SMTPUTF8".into());
        lines.push("ENHANCEDSTATUSCODES".into());
        if !self.tls && self.shared.tls.is_some() {
            lines.push("STARTTLS".into());
        }
        if self.auth_allowed() {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        let n = lines.len();
        for (i, l) in lines.into_iter().enumerate() {
            let sep = if i + 1 == n { ' ' } else { '-' };
            self.wire.reply(&format!("250{sep}{l}"));
        }
    }

    async fn auth<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        s: &mut S,
        mechanism: u64,
        initial: &str,
    ) -> std::io::Result<Step> {
        if self.principal.is_some() {
            return Ok(self.error("503 5.5.1 Already authenticated"));
        }
        if self.mail_from.is_some() {
            return Ok(self.error("503 5.5.1 AUTH not allowed during a transaction"));
        }
        if !self.auth_allowed() {
            return Ok(
                self.error("538 5.7.11 Encryption required for requested authentication mechanism")
            );
        }
        let ip = self.peer.ip();
        match self.shared.failures.standing(ip, Instant::now()) {
            Standing::Refused => {
                self.wire
                    .reply("421 4.7.0 Too many failed logins from your address; try later");
                return Ok(Step::Close);
            }
            Standing::Slow(d) => tokio::time::sleep(d).await,
            Standing::Ok => {}
        }
        let creds = match mechanism {
            smtp_proto::AUTH_PLAIN => {
                let resp = if initial.is_empty() {
                    self.wire.reply("334 ");
                    match self.wire.line(s).await? {
                        Some(l) => l,
                        None => return Ok(Step::Close),
                    }
                } else {
                    initial.as_bytes().to_vec()
                };
                match decode(&resp) {
                    Decoded::Cancel => return Ok(self.error("501 5.7.0 Authentication cancelled")),
                    Decoded::Bad => None,
                    Decoded::Ok(b) => plain(&b),
                }
            }
            smtp_proto::AUTH_LOGIN => {
                let user = if initial.is_empty() {
                    self.wire.reply("334 VXNlcm5hbWU6");
                    match self.wire.line(s).await? {
                        Some(l) => l,
                        None => return Ok(Step::Close),
                    }
                } else {
                    initial.as_bytes().to_vec()
                };
                let user = match decode(&user) {
                    Decoded::Cancel => return Ok(self.error("501 5.7.0 Authentication cancelled")),
                    Decoded::Bad => None,
                    Decoded::Ok(b) => String::from_utf8(b).ok(),
                };
                self.wire.reply("334 UGFzc3dvcmQ6");
                let pass = match self.wire.line(s).await? {
                    Some(l) => l,
                    None => return Ok(Step::Close),
                };
                match decode(&pass) {
                    Decoded::Cancel => return Ok(self.error("501 5.7.0 Authentication cancelled")),
                    Decoded::Bad => None,
                    Decoded::Ok(b) => user.zip(String::from_utf8(b).ok()),
                }
            }
            _ => {
                return Ok(
                    self.error("504 5.5.4 Unrecognized authentication type (PLAIN or LOGIN)")
                );
            }
        };
        let shared_creds = self.shared.credentials();
        let principal = match creds {
            Some((user, pass)) => {
                tokio::task::spawn_blocking(move || shared_creds.check(&user, &pass))
                    .await
                    .ok()
                    .flatten()
            }
            None => None,
        };
        match principal {
            Some(p) => {
                tracing::debug!(user = %p.name, peer = %self.peer, "submission login");
                self.principal = Some(p);
                self.wire.reply("235 2.7.0 Authentication successful");
            }
            None => {
                self.shared.failures.failed(ip, Instant::now());
                tracing::info!(peer = %self.peer, "submission login failed");
                self.errors += 1;
                self.wire
                    .reply("535 5.7.8 Authentication credentials invalid");
            }
        }
        Ok(Step::Go)
    }

    fn mail(&mut self, from: &str, size: usize) -> Step {
        if self.principal.is_none() && !self.trusted {
            return self.error("530 5.7.0 Authentication required");
        }
        if self.mail_from.is_some() {
            return self.error("503 5.5.1 Nested MAIL command");
        }
        if size > self.shared.limits.max_size {
            return self.error(&format!(
                "552 5.3.4 Message size exceeds fixed maximum message size ({} bytes)",
                self.shared.limits.max_size
            ));
        }
        let from = if from.is_empty() {
            String::new()
        } else {
            match crate::address::parse(from) {
                Ok(a) => a.email,
                Err(e) => {
                    return self.error(&format!("553 5.1.7 Bad sender address <{from}>: {e}"));
                }
            }
        };
        if let Some(p) = &self.principal
            && !from.is_empty()
            && !p.may_send_as(&from)
        {
            return self.error(&format!(
                "554 5.7.1 Sender address not authorized for user {}: <{from}>",
                p.name
            ));
        }
        self.mail_from = Some(from);
        self.wire.reply("250 2.1.0 OK");
        Step::Go
    }

    fn rcpt(&mut self, to: &str) -> Step {
        if self.mail_from.is_none() {
            return self.error("503 5.5.1 Need MAIL before RCPT");
        }
        if self.rcpts.len() >= self.shared.limits.max_recipients {
            return self.error(&format!(
                "452 4.5.3 Too many recipients (at most {} per message)",
                self.shared.limits.max_recipients
            ));
        }
        match crate::address::parse(to) {
            Ok(a) => {
                self.rcpts.push(a.email);
                self.wire.reply("250 2.1.5 OK");
                Step::Go
            }
            Err(e) => self.error(&format!("553 5.1.3 Bad recipient address <{to}>: {e}")),
        }
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
        self.wire.reply("354 End data with <CR><LF>.<CR><LF>");
        self.wire.flush(s).await?;
        let Some(data) = self.wire.read_data(s, self.shared.limits.max_size).await? else {
            return Ok(Step::Close);
        };
        let reply = match data {
            None => format!(
                "552 5.3.4 Message size exceeds fixed maximum message size ({} bytes)",
                self.shared.limits.max_size
            ),
            Some(d) => self.submit(d).await,
        };
        self.reset();
        self.wire.reply(&reply);
        Ok(Step::Go)
    }

    /// Checks and stores a message; the reply to give.
    async fn submit(&mut self, data: Vec<u8>) -> String {
        let meta = MessageMeta {
            mail_from: self.mail_from.clone().unwrap_or_default(),
            source: "smtp".into(),
            user: self.principal.as_ref().map(|p| p.name.clone()),
            add_message_id: false,
        };
        let limits = Limits {
            max_size: self.shared.limits.max_size,
            max_recipients: self.shared.limits.max_recipients,
        };
        let now = (volley_spool::now_ms() / 1000) as i64;
        let prepared = match message::prepare(
            &data,
            meta,
            &self.rcpts,
            &limits,
            self.shared.config.as_ref(),
            unique_id("smtp"),
            now,
        ) {
            Ok(p) => p,
            Err(e) => return refusal(&e),
        };
        drop(data);
        if let Some(p) = &self.principal {
            if !p.may_send_as(prepared.from_addr()) {
                return format!(
                    "554 5.7.1 Sender address not authorized for user {}: From <{}>",
                    p.name,
                    prepared.from_addr()
                );
            }
            let n = prepared.rcpts.len() as u64;
            match self.shared.quotas.take(p, n, Instant::now()) {
                Verdict::Ok => {}
                Verdict::Rate => {
                    return "454 4.7.0 Throttling failure: Maximum sending rate exceeded".into();
                }
                Verdict::Daily(limit) => {
                    return format!(
                        "554 5.7.0 Throttling failure: Daily message quota exceeded ({limit} recipients per 24 hours)"
                    );
                }
            }
        }
        match self.shared.acceptor.accept(prepared).await {
            Ok(id) => format!("250 2.0.0 Ok {id}"),
            Err(e) => format!("451 4.3.0 Message not accepted: {e}"),
        }
    }
}

/// The reply to a message [`message::prepare`] refused.
fn refusal(e: &Rejected) -> String {
    match e {
        Rejected::TooLarge { .. } => format!("552 5.3.4 {e}"),
        Rejected::HeaderTooLarge | Rejected::TooManyFields => format!("552 5.3.4 {e}"),
        Rejected::TooManyRecipients { .. } => format!("452 4.5.3 {e}"),
        Rejected::BadRecipient { .. } => format!("553 5.1.3 {e}"),
        Rejected::NoRecipients => format!("554 5.5.1 {e}"),
        Rejected::UnknownSet(_) | Rejected::UnknownPool(_) => format!("554 5.3.0 {e}"),
        Rejected::NoFrom | Rejected::BadFrom(_) | Rejected::BadTags(_) => {
            format!("554 5.6.0 {e}")
        }
    }
}

/// A new unique campaign id for a message from `source` (`source:hex`: a
/// colon, which campaign files cannot use, marks a message's id).
pub fn unique_id(source: &str) -> String {
    let mut r = [0u8; 12];
    let _ = aws_lc_rs::rand::fill(&mut r);
    format!("{source}:{}", data_encoding::HEXLOWER.encode(&r))
}

enum Decoded {
    Ok(Vec<u8>),
    Cancel,
    Bad,
}

fn decode(line: &[u8]) -> Decoded {
    let t = line.trim_ascii();
    if t == b"*" {
        return Decoded::Cancel;
    }
    if t == b"=" {
        return Decoded::Ok(Vec::new());
    }
    B64.decode(t).map_or(Decoded::Bad, Decoded::Ok)
}

/// `authzid NUL authcid NUL password` (RFC 4616); the authorization id,
/// when given, must be the user.
fn plain(b: &[u8]) -> Option<(String, String)> {
    let mut parts = b.split(|&c| c == 0);
    let (Some(authz), Some(user), Some(pass), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    if !authz.is_empty() && authz != user {
        return None;
    }
    Some((
        String::from_utf8(user.to_vec()).ok()?,
        String::from_utf8(pass.to_vec()).ok()?,
    ))
}

#[cfg(test)]
mod tests;
