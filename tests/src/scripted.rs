//! A scripted SMTP server for fault tests: in-process, ephemeral loopback
//! port, one thread per connection, independent of the engine's code.
//!
//! A script decides the reply to each RCPT (given the address and how many
//! times that address was offered before); accepted recipients of a
//! transaction receive the message. PIPELINING is advertised when asked for;
//! replies to pipelined commands are written together once the client's
//! bytes are consumed, as real servers do. STARTTLS can be offered (rustls,
//! self-signed certificate).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Decides the reply line (without CRLF) to `RCPT TO:<addr>`; `seen` is how
/// many times this address was offered before.
pub type RcptScript = dyn Fn(&str, u32) -> String + Send + Sync;

/// One received message and who it was accepted for.
#[derive(Debug, Clone)]
pub struct Received {
    pub rcpts: Vec<String>,
    pub data: Vec<u8>,
    /// The transaction ran over TLS (after STARTTLS).
    pub tls: bool,
}

/// How the server behaves.
#[derive(Clone, Default)]
pub struct Options {
    /// Advertise PIPELINING.
    pub pipelining: bool,
    /// Offer STARTTLS with this server configuration.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Listen here instead of an ephemeral port on 127.0.0.1 (e.g. another
    /// loopback address, for MX tests).
    pub bind: Option<SocketAddr>,
}

#[derive(Default)]
struct Shared {
    offered: HashMap<String, u32>,
    received: Vec<Received>,
    /// Every command line received, in order (for protocol assertions).
    log: Vec<String>,
    /// Bytes of each read() from clients (how commands were grouped).
    reads: Vec<usize>,
}

/// A running scripted server.
pub struct ScriptedServer {
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
}

impl ScriptedServer {
    /// Starts a server answering RCPTs with `script`.
    pub fn start(pipelining: bool, script: Arc<RcptScript>) -> ScriptedServer {
        ScriptedServer::start_with(
            Options {
                pipelining,
                ..Options::default()
            },
            script,
        )
    }

    /// Starts a server with `opts`, answering RCPTs with `script`.
    pub fn start_with(opts: Options, script: Arc<RcptScript>) -> ScriptedServer {
        let bind = opts
            .bind
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let listener = TcpListener::bind(bind).expect("bind scripted server");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (sh, st) = (Arc::clone(&shared), Arc::clone(&stop));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::Acquire) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (sh, script, opts) = (Arc::clone(&sh), Arc::clone(&script), opts.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &opts, &*script, &sh);
                });
            }
        });
        ScriptedServer { addr, shared, stop }
    }

    /// A server that accepts everything.
    pub fn accept_all(pipelining: bool) -> ScriptedServer {
        ScriptedServer::start(
            pipelining,
            Arc::new(|_: &str, _: u32| "250 2.1.5 Ok".to_string()),
        )
    }

    /// How many messages were received so far.
    pub fn received_count(&self) -> usize {
        self.shared.lock().expect("lock").received.len()
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.lock().expect("lock").received.clone()
    }

    /// How many times each address was offered in RCPT.
    pub fn offered(&self) -> HashMap<String, u32> {
        self.shared.lock().expect("lock").offered.clone()
    }

    /// Byte counts of each read from clients: pipelined commands written
    /// together arrive together.
    pub fn reads(&self) -> Vec<usize> {
        self.shared.lock().expect("lock").reads.clone()
    }

    pub fn command_log(&self) -> Vec<String> {
        self.shared.lock().expect("lock").log.clone()
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(
    conn: TcpStream,
    opts: &Options,
    script: &RcptScript,
    shared: &Mutex<Shared>,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn);
    reader.get_mut().write_all(b"220 scripted ESMTP\r\n")?;
    let Some(tcp) = session(
        reader,
        opts.pipelining,
        opts.tls.is_some(),
        false,
        script,
        shared,
    )?
    else {
        return Ok(());
    };
    let Some(cfg) = &opts.tls else { return Ok(()) };
    let conn = rustls::ServerConnection::new(Arc::clone(cfg)).map_err(std::io::Error::other)?;
    let tls = rustls::StreamOwned::new(conn, tcp);
    // after STARTTLS the client starts over with EHLO
    session(
        BufReader::new(tls),
        opts.pipelining,
        false,
        true,
        script,
        shared,
    )?;
    Ok(())
}

/// Runs SMTP on `reader` until QUIT or EOF (None), or until STARTTLS is
/// accepted (Some(stream), for the caller to wrap in TLS).
fn session<S: Read + Write>(
    mut reader: BufReader<S>,
    pipelining: bool,
    offer_tls: bool,
    is_tls: bool,
    script: &RcptScript,
    shared: &Mutex<Shared>,
) -> std::io::Result<Option<S>> {
    let mut out: Vec<u8> = Vec::new();
    let mut from: Option<String> = None;
    let mut accepted: Vec<String> = Vec::new();
    let mut line = String::new();
    loop {
        if reader.buffer().is_empty() {
            if !out.is_empty() {
                reader.get_mut().write_all(&out)?;
                reader.get_mut().flush()?;
                out.clear();
            }
            let n = reader.fill_buf()?.len();
            if n == 0 {
                return Ok(None);
            }
            shared.lock().expect("lock").reads.push(n);
        }
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let cmd = line.trim_end().to_string();
        shared.lock().expect("lock").log.push(cmd.clone());
        let upper = cmd.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            let p = if pipelining { "250-PIPELINING\r\n" } else { "" };
            let t = if offer_tls { "250-STARTTLS\r\n" } else { "" };
            write!(
                out,
                "250-scripted\r\n{p}{t}250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n"
            )?;
        } else if upper.starts_with("HELO") {
            out.extend_from_slice(b"250 scripted\r\n");
        } else if upper == "STARTTLS" {
            if !offer_tls {
                out.extend_from_slice(b"503 5.5.1 TLS already active or not offered\r\n");
                continue;
            }
            out.extend_from_slice(b"220 2.0.0 Ready to start TLS\r\n");
            reader.get_mut().write_all(&out)?;
            reader.get_mut().flush()?;
            return Ok(Some(reader.into_inner()));
        } else if upper.starts_with("MAIL FROM:") {
            from = Some(cmd[10..].to_string());
            accepted.clear();
            out.extend_from_slice(b"250 2.1.0 Ok\r\n");
        } else if upper.starts_with("RCPT TO:") {
            let addr = cmd[8..]
                .trim()
                .trim_start_matches('<')
                .split('>')
                .next()
                .unwrap_or("")
                .to_string();
            let seen = {
                let mut s = shared.lock().expect("lock");
                let n = s.offered.entry(addr.clone()).or_insert(0);
                *n += 1;
                *n - 1
            };
            let reply = if from.is_none() {
                "503 5.5.1 MAIL first".to_string()
            } else {
                script(&addr, seen)
            };
            if reply.starts_with('2') {
                accepted.push(addr);
            }
            write!(out, "{reply}\r\n")?;
        } else if upper == "DATA" {
            if accepted.is_empty() {
                out.extend_from_slice(b"554 5.5.1 No valid recipients\r\n");
                continue;
            }
            out.extend_from_slice(b"354 go ahead\r\n");
            reader.get_mut().write_all(&out)?;
            reader.get_mut().flush()?;
            out.clear();
            let mut data = Vec::new();
            loop {
                let mut l = Vec::new();
                if reader.by_ref().take(1 << 20).read_until(b'\n', &mut l)? == 0 {
                    return Ok(None);
                }
                if l == b".\r\n" || l == b".\n" {
                    break;
                }
                let l = if l.starts_with(b"..") {
                    &l[1..]
                } else {
                    &l[..]
                };
                data.extend_from_slice(l);
            }
            shared.lock().expect("lock").received.push(Received {
                rcpts: std::mem::take(&mut accepted),
                data,
                tls: is_tls,
            });
            from = None;
            out.extend_from_slice(b"250 2.0.0 Ok: queued\r\n");
        } else if upper == "RSET" {
            from = None;
            accepted.clear();
            out.extend_from_slice(b"250 2.0.0 Ok\r\n");
        } else if upper == "NOOP" {
            out.extend_from_slice(b"250 2.0.0 Ok\r\n");
        } else if upper == "QUIT" {
            out.extend_from_slice(b"221 2.0.0 Bye\r\n");
            reader.get_mut().write_all(&out)?;
            reader.get_mut().flush()?;
            return Ok(None);
        } else {
            out.extend_from_slice(b"502 5.5.2 Not implemented\r\n");
        }
    }
}

/// A self-signed certificate for `localhost`, made with the openssl tool.
pub fn self_signed_tls() -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = tempfile::tempdir().expect("temp dir");
    let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
    let ok = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("running openssl (apt-get install openssl)");
    assert!(ok.success(), "openssl req failed");
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .expect("cert file")
        .map(|c| c.expect("cert"))
        .collect();
    let key = PrivateKeyDer::from_pem_file(&key).expect("key file");
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server config");
    Arc::new(cfg)
}
