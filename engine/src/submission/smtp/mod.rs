//! SMTP submission listeners of `volley run`: STARTTLS (587) and implicit
//! TLS (465) on the configured addresses, with the certificate and key
//! from PEM files. Each connection gets a [`session::Session`]; a STARTTLS
//! upgrade starts a fresh one over TLS.
//!
//! [`Shared`] holds what sessions share: limits, trusted networks,
//! credentials, login failures, quotas, the acceptor. Exposure: network
//! input (see `session`).

pub mod session;
pub mod wire;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

use super::accept::Acceptor;
use super::auth::{Credentials, Failures};
use super::quota::Quotas;
use crate::config::Config;
use crate::config::submission::{ListenerTls, Network};

/// Size and recipient limits of submitted messages.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub max_size: usize,
    pub max_recipients: usize,
}

/// What every session shares.
pub struct Shared {
    pub hostname: String,
    pub limits: SessionLimits,
    pub trusted: Vec<Network>,
    pub plaintext_auth_on_loopback: bool,
    pub tls: Option<TlsAcceptor>,
    credentials: std::sync::RwLock<Arc<Credentials>>,
    pub failures: Failures,
    /// Shared with the API (one key, one quota).
    pub quotas: Arc<Quotas>,
    pub acceptor: Acceptor,
    /// Configuration sets a message may name.
    pub config: Arc<Config>,
    /// Places for open connections (`max_connections`).
    pub connections: Arc<tokio::sync::Semaphore>,
}

impl Shared {
    /// From the config; `tls` from [`load_tls`].
    pub fn new(
        config: Arc<Config>,
        credentials: Arc<Credentials>,
        tls: Option<TlsAcceptor>,
        acceptor: Acceptor,
        quotas: Arc<Quotas>,
    ) -> Shared {
        let s = &config.submission;
        Shared {
            hostname: s.hostname.clone(),
            limits: SessionLimits {
                max_size: usize::try_from(s.max_message_size).unwrap_or(usize::MAX),
                max_recipients: s.max_recipients as usize,
            },
            trusted: s.trusted(),
            plaintext_auth_on_loopback: s.insecure_plaintext_auth_on_loopback,
            tls,
            credentials: std::sync::RwLock::new(credentials),
            failures: Failures::new(
                s.auth_failures_slow_after,
                s.auth_failures_refuse_after,
                s.auth_failure_window,
            ),
            quotas,
            acceptor,
            connections: Arc::new(tokio::sync::Semaphore::new(s.max_connections as usize)),
            config: Arc::clone(&config),
        }
    }
}

impl Shared {
    /// The credentials in force.
    pub fn credentials(&self) -> Arc<Credentials> {
        Arc::clone(&self.credentials.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Replaces the credentials (SIGHUP: the users file read again).
    pub fn set_credentials(&self, c: Arc<Credentials>) {
        *self.credentials.write().unwrap_or_else(|e| e.into_inner()) = c;
    }
}

/// The TLS acceptor for a certificate chain and key in PEM files.
pub fn load_tls(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Binds every configured listener (errors name the address).
pub async fn bind(config: &Config) -> Result<Vec<(TcpListener, ListenerTls)>, String> {
    let mut out = Vec::new();
    for l in &config.submission.listeners {
        let addr: SocketAddr = l
            .address
            .parse()
            .map_err(|_| format!("submission listener {:?}: not ip:port", l.address))?;
        let sock = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("submission listener {addr}: {e}"))?;
        out.push((sock, l.tls));
    }
    Ok(out)
}

/// Accepts connections until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    mode: ListenerTls,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    let places = Arc::clone(&shared.connections);
    wire::accept_loop(listener, places, stop, "submission", move |conn, peer| {
        let shared = Arc::clone(&shared);
        async move { connection(conn, peer, mode, &shared).await }
    })
    .await;
}

async fn connection(
    mut conn: TcpStream,
    peer: SocketAddr,
    mode: ListenerTls,
    shared: &Shared,
) -> std::io::Result<()> {
    let Some(tls) = shared.tls.clone() else {
        return Err(std::io::Error::other("no TLS configured"));
    };
    if mode == ListenerTls::Implicit {
        let mut stream = tls.accept(conn).await?;
        session::Session::new(shared, peer, true)
            .run(&mut stream, true)
            .await?;
        return Ok(());
    }
    let end = session::Session::new(shared, peer, false)
        .run(&mut conn, true)
        .await?;
    if end == session::End::StartTls {
        let mut stream = tls.accept(conn).await?;
        session::Session::new(shared, peer, true)
            .run(&mut stream, false)
            .await?;
    }
    Ok(())
}
