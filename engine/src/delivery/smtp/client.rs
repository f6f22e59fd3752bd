//! Opening an SMTP session: connect (TCP_NODELAY), greeting, EHLO (HELO
//! fallback), STARTTLS when offered, EHLO again.
//!
//! Uses mail-send for the lock-step opening and the TLS upgrade, then hands
//! the stream to a [`Session`] that owns its own reply buffer for pipelined
//! transactions. Opportunistic TLS: certificates are not verified (as
//! receiving MTAs on port 25 commonly present self-signed ones); a refused
//! STARTTLS command continues in plain text, a failed handshake fails the
//! session. Exposure: the remote server is untrusted; every step is bounded
//! by a timeout and every failure is a [`SessionError`].

use std::net::SocketAddr;
use std::time::Duration;

use mail_send::SmtpClient;
use smtp_proto::{EXT_PIPELINING, EXT_SIZE, EXT_START_TLS, EhloResponse};
use tokio::net::TcpStream;

use super::reply::Reply;
use super::session::{Caps, Io, Session};

/// Per-phase timeouts (RFC 5321 §4.5.3.2 defaults, connect 30 s).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub greeting: Duration,
    pub ehlo: Duration,
    pub starttls: Duration,
    pub mail: Duration,
    pub rcpt: Duration,
    pub data: Duration,
    pub data_end: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(30),
            greeting: Duration::from_secs(300),
            ehlo: Duration::from_secs(300),
            starttls: Duration::from_secs(120),
            mail: Duration::from_secs(300),
            rcpt: Duration::from_secs(300),
            data: Duration::from_secs(120),
            data_end: Duration::from_secs(600),
        }
    }
}

/// Where in a session something went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Connect,
    Greeting,
    Ehlo,
    StartTls,
    Mail,
    Rcpt,
    Data,
    DataEnd,
    Rset,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::Greeting => "greeting",
            Phase::Ehlo => "EHLO",
            Phase::StartTls => "STARTTLS",
            Phase::Mail => "MAIL FROM",
            Phase::Rcpt => "RCPT TO",
            Phase::Data => "DATA",
            Phase::DataEnd => "end of data",
            Phase::Rset => "RSET",
        }
    }
}

/// A session-level failure (no per-recipient reply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    /// TCP connect failed.
    Connect(String),
    /// No reply within the phase's timeout.
    Timeout(Phase),
    /// The server closed the connection.
    Closed(Phase),
    /// Read or write error.
    Io(Phase, String),
    /// Unparseable or unexpected bytes.
    Protocol(Phase, String),
    /// TLS handshake failed.
    Tls(String),
    /// The server refused the session with this reply (greeting or EHLO).
    Refused(Phase, Reply),
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionError::Connect(e) => write!(f, "connect failed: {e}"),
            SessionError::Timeout(p) => write!(f, "timeout waiting for the {} reply", p.name()),
            SessionError::Closed(p) => {
                write!(f, "connection closed by the server during {}", p.name())
            }
            SessionError::Io(p, e) => write!(f, "I/O error during {}: {e}", p.name()),
            SessionError::Protocol(p, e) => write!(f, "protocol error during {}: {e}", p.name()),
            SessionError::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            SessionError::Refused(p, r) => write!(f, "{} refused: {r}", p.name()),
        }
    }
}

fn map_send_err(phase: Phase, e: mail_send::Error) -> SessionError {
    match e {
        mail_send::Error::Timeout => SessionError::Timeout(phase),
        mail_send::Error::UnexpectedReply(r) => {
            SessionError::Refused(phase, Reply::new(r.code, r.esc, r.message))
        }
        mail_send::Error::Io(e) => SessionError::Io(phase, e.to_string()),
        mail_send::Error::Tls(e) => SessionError::Tls(e.to_string()),
        mail_send::Error::UnparseableReply => {
            SessionError::Protocol(phase, "unparseable reply or connection closed".into())
        }
        other => SessionError::Protocol(phase, other.to_string()),
    }
}

/// TLS settings for opening sessions.
#[derive(Clone)]
pub struct TlsSettings {
    pub connector: Option<tokio_rustls::TlsConnector>,
}

impl TlsSettings {
    /// Opportunistic TLS without certificate verification.
    pub fn opportunistic() -> TlsSettings {
        TlsSettings {
            connector: mail_send::smtp::tls::build_tls_connector(true).ok(),
        }
    }

    /// Never use TLS.
    pub fn disabled() -> TlsSettings {
        TlsSettings { connector: None }
    }
}

async fn ehlo<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    client: &mut SmtpClient<T>,
    helo: &str,
) -> Result<EhloResponse<String>, SessionError> {
    match client.ehlo(helo).await {
        Ok(r) => Ok(r),
        Err(mail_send::Error::UnexpectedReply(r)) if r.code / 100 == 5 => {
            // EHLO not understood: HELO, without extensions.
            let r = client
                .cmd(format!("HELO {helo}\r\n").as_bytes())
                .await
                .map_err(|e| map_send_err(Phase::Ehlo, e))?;
            if r.code / 100 != 2 {
                return Err(SessionError::Refused(
                    Phase::Ehlo,
                    Reply::new(r.code, r.esc, r.message),
                ));
            }
            Ok(EhloResponse::default())
        }
        Err(e) => Err(map_send_err(Phase::Ehlo, e)),
    }
}

fn caps(e: &EhloResponse<String>, tls: bool) -> Caps {
    Caps {
        pipelining: e.has_capability(EXT_PIPELINING),
        size: e.has_capability(EXT_SIZE).then_some(e.size),
        tls,
    }
}

/// Opens a session to `addr`. `tls_name` is the server name for TLS.
pub async fn open(
    addr: SocketAddr,
    helo: &str,
    tls: &TlsSettings,
    tls_name: &str,
    t: &Timeouts,
) -> Result<Session, SessionError> {
    let tcp = tokio::time::timeout(t.connect, TcpStream::connect(addr))
        .await
        .map_err(|_| SessionError::Timeout(Phase::Connect))?
        .map_err(|e| SessionError::Connect(format!("{addr}: {e}")))?;
    tcp.set_nodelay(true)
        .map_err(|e| SessionError::Io(Phase::Connect, e.to_string()))?;
    let mut client = SmtpClient {
        stream: tcp,
        timeout: t.ehlo,
    };
    let greeting = tokio::time::timeout(t.greeting, client.read())
        .await
        .map_err(|_| SessionError::Timeout(Phase::Greeting))?
        .map_err(|e| match e {
            mail_send::Error::UnparseableReply => SessionError::Closed(Phase::Greeting),
            e => map_send_err(Phase::Greeting, e),
        })?;
    if greeting.code != 220 {
        return Err(SessionError::Refused(
            Phase::Greeting,
            Reply::new(greeting.code, greeting.esc, greeting.message),
        ));
    }
    let first = ehlo(&mut client, helo).await?;
    if let (true, Some(connector)) = (first.has_capability(EXT_START_TLS), &tls.connector) {
        client.timeout = t.starttls;
        let r = client
            .cmd(b"STARTTLS\r\n")
            .await
            .map_err(|e| map_send_err(Phase::StartTls, e))?;
        if r.code == 220 {
            let mut tls_client =
                client
                    .into_tls(connector, tls_name)
                    .await
                    .map_err(|e| match e {
                        mail_send::Error::Timeout => SessionError::Timeout(Phase::StartTls),
                        e => SessionError::Tls(e.to_string()),
                    })?;
            tls_client.timeout = t.ehlo;
            let second = ehlo(&mut tls_client, helo).await?;
            let stream: Box<dyn Io> = Box::new(tls_client.stream);
            return Ok(Session::new(stream, caps(&second, true), *t));
        }
        // STARTTLS refused: the session stays usable in plain text.
        tracing::debug!(%addr, reply = %Reply::new(r.code, r.esc, r.message), "STARTTLS refused; continuing without TLS");
    }
    let stream: Box<dyn Io> = Box::new(client.stream);
    Ok(Session::new(stream, caps(&first, false), *t))
}
