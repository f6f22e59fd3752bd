//! What can go wrong in an SMTP session, by phase: the structured failures
//! that the outcome classifier turns into delivered, deferred or bounced.

use super::reply::Reply;

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

/// Why a TCP connection could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectKind {
    /// The host answered with a reset (nothing listens).
    Refused,
    /// No route to the host or network.
    Unreachable,
    /// This machine ran out of something (file descriptors, buffers,
    /// local ports): not the remote site's fault.
    Local,
    /// The egress source's address could not be bound here: not the
    /// remote site's fault.
    Source,
    /// Anything else.
    Other,
}

impl ConnectKind {
    pub fn of(e: &std::io::Error) -> ConnectKind {
        if matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EADDRNOTAVAIL)
        ) {
            return ConnectKind::Local;
        }
        match e.kind() {
            std::io::ErrorKind::ConnectionRefused => ConnectKind::Refused,
            std::io::ErrorKind::HostUnreachable | std::io::ErrorKind::NetworkUnreachable => {
                ConnectKind::Unreachable
            }
            _ => ConnectKind::Other,
        }
    }
}

/// Why a destination's addresses could not be found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsFailure {
    /// The domain does not exist (NXDOMAIN).
    NoDomain,
    /// The domain publishes a null MX (RFC 7505): it takes no mail.
    NullMx,
    /// No MX host (or the domain itself) has an address.
    NoAddress,
    /// SERVFAIL, timeout or similar: try again later.
    Temporary,
}

/// A session-level failure (no per-recipient reply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    /// Looking up the destination failed.
    Dns(DnsFailure, String),
    /// TCP connect failed.
    Connect(ConnectKind, String),
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
    /// The policy requires TLS and the server does not offer or refuses
    /// STARTTLS.
    TlsRequired(String),
    /// The server refused the session with this reply (greeting or EHLO),
    /// or closed it with `421` at any phase.
    Refused(Phase, Reply),
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionError::Dns(_, e) => write!(f, "{e}"),
            SessionError::Connect(_, e) => write!(f, "connect failed: {e}"),
            SessionError::Timeout(p) => write!(f, "timeout waiting for the {} reply", p.name()),
            SessionError::Closed(p) => {
                write!(f, "connection closed by the server during {}", p.name())
            }
            SessionError::Io(p, e) => write!(f, "I/O error during {}: {e}", p.name()),
            SessionError::Protocol(p, e) => write!(f, "protocol error during {}: {e}", p.name()),
            SessionError::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            SessionError::TlsRequired(e) => write!(f, "TLS required by policy: {e}"),
            SessionError::Refused(p, r) => write!(f, "{} refused: {r}", p.name()),
        }
    }
}

pub(crate) fn map_send_err(phase: Phase, e: mail_send::Error) -> SessionError {
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
