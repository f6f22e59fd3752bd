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

use super::error::{ConnectKind, Phase, SessionError, map_send_err};
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

impl From<&crate::config::TimeoutsConfig> for Timeouts {
    fn from(c: &crate::config::TimeoutsConfig) -> Timeouts {
        Timeouts {
            connect: c.connect,
            greeting: c.greeting,
            ehlo: c.ehlo,
            starttls: c.starttls,
            mail: c.mail,
            rcpt: c.rcpt,
            data: c.data,
            data_end: c.data_end,
        }
    }
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

/// TLS settings for opening sessions.
#[derive(Clone)]
pub struct TlsSettings {
    /// Without certificate verification (`opportunistic`, `required`).
    pub connector: Option<tokio_rustls::TlsConnector>,
    /// Verifying the certificate and host name against the system roots
    /// (`verify`; the roots are the platform's: on Linux the system store,
    /// or `SSL_CERT_FILE` / `SSL_CERT_DIR` when set).
    pub verifying: Option<tokio_rustls::TlsConnector>,
}

impl TlsSettings {
    /// TLS without certificate verification, and with it for `verify`.
    pub fn opportunistic() -> TlsSettings {
        let verifying = match mail_send::smtp::tls::build_tls_connector(false) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "no certificate verifier: destinations with tls = \"verify\" are deferred");
                None
            }
        };
        TlsSettings {
            connector: mail_send::smtp::tls::build_tls_connector(true).ok(),
            verifying,
        }
    }

    /// Never use TLS.
    pub fn disabled() -> TlsSettings {
        TlsSettings {
            connector: None,
            verifying: None,
        }
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

/// How to use STARTTLS on one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Never.
    Disabled,
    /// When offered; a refused STARTTLS continues in plain text, a failed
    /// handshake is an error the caller may answer by reconnecting
    /// with `Disabled`.
    Opportunistic,
    /// Must succeed, or the session fails with `TlsRequired` / `Tls`.
    Required,
    /// Must succeed with a certificate that verifies for the host name,
    /// or the session fails with `TlsRequired` / `Tls`.
    Verify,
}

/// A TCP connection to `addr`, from the local address `from` when given
/// (a failure to bind it is [`ConnectKind::Source`]).
async fn connect(
    addr: SocketAddr,
    from: Option<std::net::IpAddr>,
) -> Result<TcpStream, SessionError> {
    let failed =
        |e: std::io::Error| SessionError::Connect(ConnectKind::of(&e), format!("{addr}: {e}"));
    let Some(ip) = from else {
        return TcpStream::connect(addr).await.map_err(failed);
    };
    if ip.is_ipv4() != addr.is_ipv4() {
        return Err(SessionError::Connect(
            ConnectKind::Other,
            format!("{addr}: the source address {ip} is of the other IP version"),
        ));
    }
    let socket = if ip.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(failed)?;
    socket.bind(SocketAddr::new(ip, 0)).map_err(|e| {
        SessionError::Connect(
            ConnectKind::Source,
            format!("cannot bind the source address {ip}: {e}"),
        )
    })?;
    socket.connect(addr).await.map_err(failed)
}

/// Opens a session to `addr`. `tls_name` is the server name for TLS.
pub async fn open(
    addr: SocketAddr,
    from: Option<std::net::IpAddr>,
    helo: &str,
    tls: &TlsSettings,
    mode: TlsMode,
    tls_name: &str,
    t: &Timeouts,
) -> Result<Session, SessionError> {
    let tcp = tokio::time::timeout(t.connect, connect(addr, from))
        .await
        .map_err(|_| SessionError::Timeout(Phase::Connect))??;
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
    let offered = first.has_capability(EXT_START_TLS);
    let connector = match (mode, offered, &tls.connector) {
        (TlsMode::Verify, false, _) => {
            return Err(SessionError::TlsRequired(format!(
                "{addr} does not offer STARTTLS (tls = \"verify\")"
            )));
        }
        (TlsMode::Verify, true, _) => match &tls.verifying {
            Some(c) => Some(c),
            None => {
                return Err(SessionError::TlsRequired(
                    "no certificate verifier (system roots) is available".into(),
                ));
            }
        },
        (TlsMode::Disabled, _, _) | (TlsMode::Opportunistic, false, _) => None,
        (TlsMode::Required, false, _) => {
            return Err(SessionError::TlsRequired(format!(
                "{addr} does not offer STARTTLS"
            )));
        }
        (_, true, None) => {
            return match mode {
                TlsMode::Required => {
                    Err(SessionError::TlsRequired("no TLS client available".into()))
                }
                _ => Ok(Session::new(
                    Box::new(client.stream),
                    caps(&first, false),
                    *t,
                )),
            };
        }
        (_, true, Some(c)) => Some(c),
    };
    let Some(connector) = connector else {
        let stream: Box<dyn Io> = Box::new(client.stream);
        return Ok(Session::new(stream, caps(&first, false), *t));
    };
    client.timeout = t.starttls;
    let r = client
        .cmd(b"STARTTLS\r\n")
        .await
        .map_err(|e| map_send_err(Phase::StartTls, e))?;
    if r.code != 220 {
        let reply = Reply::new(r.code, r.esc, r.message);
        if matches!(mode, TlsMode::Required | TlsMode::Verify) {
            return Err(SessionError::TlsRequired(format!(
                "STARTTLS refused: {reply}"
            )));
        }
        // refused: the session stays usable in plain text
        tracing::debug!(%addr, %reply, "STARTTLS refused; continuing without TLS");
        let stream: Box<dyn Io> = Box::new(client.stream);
        return Ok(Session::new(stream, caps(&first, false), *t));
    }
    let mut tls_client = client
        .into_tls(connector, tls_name)
        .await
        .map_err(|e| match e {
            // the 220 came; the handshake itself did not finish in time
            mail_send::Error::Timeout => {
                SessionError::Tls(format!("no handshake within {:?}", t.starttls))
            }
            e => SessionError::Tls(e.to_string()),
        })?;
    tls_client.timeout = t.ehlo;
    let second = ehlo(&mut tls_client, helo).await?;
    let stream: Box<dyn Io> = Box::new(tls_client.stream);
    Ok(Session::new(stream, caps(&second, true), *t))
}
