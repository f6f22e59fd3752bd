//! Fetching a domain's MTA-STS policy file (RFC 8461 §3.3):
//! `GET https://mta-sts.<domain>/.well-known/mta-sts.txt` over HTTP/1.1,
//! the host's addresses from the engine's resolver, the certificate
//! verified for `mta-sts.<domain>` against the system roots. Only a `200`
//! with a `text/plain` body (or one of no named type) of at most
//! [`MAX_POLICY`] bytes is a policy; redirects are not followed. Exposure: the policy host is chosen by the
//! recipient domain: its address must not be internal (unless `[dns]
//! allow_internal`), its answer is read within a timeout and a size bound.

use std::time::Duration;

use axum::http::{Request, StatusCode, header};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::super::mx::Resolver;

/// Largest policy file read (RFC 8461 §3.3 suggests 64 KiB).
pub const MAX_POLICY: usize = 64 * 1024;
/// Where the policy file is.
pub const PATH: &str = "/.well-known/mta-sts.txt";

/// Why a fetch failed, as TLS reporting names it (RFC 8460 §4.3.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The host is unreachable, answered other than 200, or too slowly
    /// (`sts-policy-fetch-error`).
    Fetch(String),
    /// The host's certificate did not verify (`sts-webpki-invalid`).
    WebPki(String),
    /// The answer is not a valid policy (`sts-policy-invalid`).
    Invalid(String),
}

impl FetchError {
    /// The RFC 8460 result type.
    pub fn result_type(&self) -> &'static str {
        match self {
            FetchError::Fetch(_) => "sts-policy-fetch-error",
            FetchError::WebPki(_) => "sts-webpki-invalid",
            FetchError::Invalid(_) => "sts-policy-invalid",
        }
    }
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Fetch(e) | FetchError::WebPki(e) | FetchError::Invalid(e) => {
                write!(f, "{e}")
            }
        }
    }
}

/// Fetches the policy file of `domain` from port `port` (443 but in
/// tests), within `timeout`; returns its text.
pub async fn fetch(
    domain: &str,
    port: u16,
    resolver: &Resolver,
    tls: Option<&tokio_rustls::TlsConnector>,
    timeout: Duration,
) -> Result<String, FetchError> {
    let host = format!("mta-sts.{domain}");
    match tokio::time::timeout(timeout, get(&host, port, resolver, tls)).await {
        Ok(r) => r,
        Err(_) => Err(FetchError::Fetch(format!(
            "https://{host}{PATH}: no answer within {timeout:?}"
        ))),
    }
}

async fn get(
    host: &str,
    port: u16,
    resolver: &Resolver,
    tls: Option<&tokio_rustls::TlsConnector>,
) -> Result<String, FetchError> {
    let url = format!("https://{host}{PATH}");
    let fetch = |e: String| FetchError::Fetch(format!("{url}: {e}"));
    let tls = tls.ok_or_else(|| fetch("no certificate verifier (system roots)".into()))?;
    let addrs = resolver
        .addresses(host, port)
        .await
        .map_err(|e| fetch(e.to_string()))?;
    let mut last = fetch("no address".into());
    for addr in addrs.into_iter().take(4) {
        let tcp = match TcpStream::connect(addr).await {
            Ok(t) => t,
            Err(e) => {
                last = fetch(format!("connect {addr}: {e}"));
                continue;
            }
        };
        let name = rustls_pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| fetch(e.to_string()))?;
        let stream = tls
            .connect(name, tcp)
            .await
            .map_err(|e| FetchError::WebPki(format!("{url}: TLS with {addr}: {e}")))?;
        return request(host, &url, stream).await;
    }
    Err(last)
}

async fn request<S>(host: &str, url: &str, stream: S) -> Result<String, FetchError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let fetch = |e: String| FetchError::Fetch(format!("{url}: {e}"));
    let (mut sender, conn) = http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|e| fetch(format!("HTTP handshake: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::get(PATH)
        .header(header::HOST, host)
        .header(header::USER_AGENT, "volley")
        .body(Empty::new())
        .map_err(|e| fetch(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| fetch(e.to_string()))?;
    if resp.status() != StatusCode::OK {
        return Err(fetch(format!("HTTP {} (200 wanted)", resp.status())));
    }
    // text/plain (any parameters); a server that names no type at all is
    // taken at its word too: the body must still parse as a policy
    let plain = match resp.headers().get(header::CONTENT_TYPE) {
        None => true,
        Some(v) => v.to_str().ok().is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/plain"))
        }),
    };
    if !plain {
        return Err(FetchError::Invalid(format!(
            "{url}: the answer is not text/plain"
        )));
    }
    let body = Limited::new(resp.into_body(), MAX_POLICY)
        .collect()
        .await
        .map_err(|e| FetchError::Invalid(format!("{url}: body: {e}")))?
        .to_bytes();
    String::from_utf8(body.to_vec())
        .map_err(|_| FetchError::Invalid(format!("{url}: the body is not UTF-8")))
}
