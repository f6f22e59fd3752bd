//! One kept-alive HTTP/1.1 connection to a webhook endpoint (plain or TLS,
//! certificates verified against the system's roots) and one POST on it,
//! its answer classified: 2xx taken; connection failures, timeouts, 5xx,
//! 408 and 429 worth retrying; any other answer refused for good.
//! Exposure: the endpoint's answers (status and up to 64 KiB of body read
//! and dropped; anything else closes the connection).

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Request, Uri, header};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Most bytes of an answer's body read (the rest closes the connection).
const MAX_ANSWER: usize = 64 * 1024;

/// Where requests go.
pub struct Endpoint {
    host: String,
    port: u16,
    /// `Host` header value.
    authority: String,
    path: String,
    tls: Option<TlsConnector>,
}

impl Endpoint {
    /// From an `http://` or `https://` URL.
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let uri: Uri = url.parse().map_err(|e| format!("{url:?}: {e}"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(format!("{url:?} is not an http(s) URL")),
        };
        let auth = uri.authority().ok_or(format!("{url:?} has no host"))?;
        let host = auth.host().trim_start_matches('[').trim_end_matches(']');
        let tls = if https {
            Some(mail_send::smtp::tls::build_tls_connector(false)?)
        } else {
            None
        };
        Ok(Endpoint {
            host: host.to_string(),
            port: auth.port_u16().unwrap_or(if https { 443 } else { 80 }),
            authority: auth.as_str().to_string(),
            path: uri
                .path_and_query()
                .map_or("/".to_string(), |p| p.as_str().to_string()),
            tls,
        })
    }
}

/// What became of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Taken,
    /// Try again later (the reason).
    Retry(String),
    /// Refused for good (the reason).
    Refused(String),
}

/// A kept-alive connection.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
}

async fn connect(ep: &Endpoint) -> Result<Conn, String> {
    let tcp = TcpStream::connect((ep.host.as_str(), ep.port))
        .await
        .map_err(|e| format!("connect {}:{}: {e}", ep.host, ep.port))?;
    let _ = tcp.set_nodelay(true);
    let sender = match &ep.tls {
        None => handshake(TokioIo::new(tcp)).await?,
        Some(tls) => {
            let name = rustls_pki_types::ServerName::try_from(ep.host.clone())
                .map_err(|e| format!("{}: {e}", ep.host))?;
            let stream = tls
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS with {}: {e}", ep.host))?;
            handshake(TokioIo::new(stream)).await?
        }
    };
    Ok(Conn { sender })
}

async fn handshake<T>(io: T) -> Result<SendRequest<Full<Bytes>>, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    tokio::spawn(async move {
        // ends when the connection closes or its sender is dropped
        let _ = conn.await;
    });
    Ok(sender)
}

/// POSTs `body` with `headers` on `conn` (connecting first when there is
/// none or it closed), within `timeout`; a connection that failed is
/// dropped.
pub async fn post(
    conn: &mut Option<Conn>,
    ep: &Endpoint,
    headers: &[(HeaderName, HeaderValue)],
    body: Bytes,
    timeout: Duration,
) -> Answer {
    match tokio::time::timeout(timeout, exchange(conn, ep, headers, body)).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => {
            *conn = None;
            Answer::Retry(e)
        }
        Err(_) => {
            *conn = None;
            Answer::Retry(format!("no answer within {timeout:?}"))
        }
    }
}

async fn exchange(
    conn: &mut Option<Conn>,
    ep: &Endpoint,
    headers: &[(HeaderName, HeaderValue)],
    body: Bytes,
) -> Result<Answer, String> {
    if let Some(c) = conn.as_mut()
        && c.sender.ready().await.is_err()
    {
        *conn = None;
    }
    if conn.is_none() {
        *conn = Some(connect(ep).await?);
    }
    let Some(c) = conn.as_mut() else {
        return Err("no connection".into());
    };
    let mut req = Request::post(ep.path.as_str())
        .header(header::HOST, ep.authority.as_str())
        .body(Full::new(body))
        .map_err(|e| format!("request: {e}"))?;
    for (k, v) in headers {
        req.headers_mut().insert(k.clone(), v.clone());
    }
    let resp = c
        .sender
        .send_request(req)
        .await
        .map_err(|e| format!("POST {}: {e}", ep.path))?;
    let status = resp.status();
    let keep = Limited::new(resp.into_body(), MAX_ANSWER)
        .collect()
        .await
        .is_ok();
    if !keep {
        *conn = None;
    }
    Ok(classify(status.as_u16()))
}

/// The verdict of an HTTP status.
pub fn classify(status: u16) -> Answer {
    match status {
        200..=299 => Answer::Taken,
        408 | 429 | 500..=599 => Answer::Retry(format!("HTTP {status}")),
        _ => Answer::Refused(format!("HTTP {status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_taken_retried_or_refused() {
        assert_eq!(classify(200), Answer::Taken);
        assert_eq!(classify(204), Answer::Taken);
        for s in [408, 429, 500, 502, 503] {
            assert!(matches!(classify(s), Answer::Retry(_)), "{s}");
        }
        for s in [301, 400, 401, 403, 404, 410, 413] {
            assert!(matches!(classify(s), Answer::Refused(_)), "{s}");
        }
    }

    #[test]
    fn endpoints_parse_from_urls() {
        let e = Endpoint::parse("http://127.0.0.1:9000/hooks/ses?x=1").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 9000));
        assert_eq!(e.path, "/hooks/ses?x=1");
        assert!(e.tls.is_none());
        let e = Endpoint::parse("http://[::1]/").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.authority.as_str()),
            ("::1", 80, "[::1]")
        );
        assert!(Endpoint::parse("ftp://x/").is_err());
    }
}
