//! A scripted SMTP server for fault tests: in-process, ephemeral loopback
//! port, one thread per connection, independent of the engine's code.
//!
//! A script decides the reply to each RCPT (given the address and how many
//! times that address was offered before); accepted recipients of a
//! transaction receive the message. PIPELINING is advertised when asked for;
//! replies to pipelined commands are written together once the client's
//! bytes are consumed, as real servers do. STARTTLS can be offered (rustls,
//! self-signed certificate).
//!
//! Faults, all off by default ([`Options`]):
//!
//! - `greeting_421: N`: the first N connections get `421 4.3.2` as their
//!   greeting and are closed.
//! - `refuse_greeting: Some((N, reply))`: the first N connections get
//!   `reply` (e.g. `554 5.7.1 ...`) as their greeting and are closed.
//! - `refuse_ehlo: Some((N, reply))`: on the first N connections, EHLO and
//!   HELO get `reply`.
//! - `drop_in_data: N`: the first N messages are cut off: the connection is
//!   closed after the first line of the message (no end-of-data reply).
//! - `tarpit: Some((stage, d))`: every reply at `stage` (greeting, EHLO,
//!   MAIL, RCPT, DATA, end of data) is delayed by `d`.
//! - `broken_tls: Some(how)`: STARTTLS is offered and answered `220`, then
//!   the server closes ([`BrokenTls::Close`]), answers the client's hello
//!   with text instead of a TLS handshake ([`BrokenTls::Garbage`]), or
//!   never answers it ([`BrokenTls::Silent`]).
//! - `size_limit: Some(n)`: messages over `n` bytes get `552 5.3.4 Message
//!   too big for system` at end of data (`advertise_size` also declares
//!   `SIZE n` in EHLO).
//! - `close_after: Some((n, how))`: after `n` messages on one connection the
//!   next command (other than QUIT) closes it, silently or with a `421`.
//! - `discard_early`: at end of data, bytes the client sent after the
//!   message before the reply (pipelined commands) are thrown away.
//! - `rcpt_rate: R`: at most R RCPTs are accepted per sliding second
//!   (across connections); the excess gets [`THROTTLE_REPLY`]. Changeable
//!   while running with [`ScriptedServer::set_rcpt_rate`] (0 = no limit).
//!
//! Observations: received messages (with the connection they came on and
//! when), RCPTs offered per address, the command log, the byte count of
//! each read, connections accepted and the most open at once, and when
//! each throttle reply was given.

use std::collections::{HashMap, VecDeque};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod conn;
use conn::{Ctx, serve};

/// Decides the reply line (without CRLF) to `RCPT TO:<addr>`; `seen` is how
/// many times this address was offered before.
pub type RcptScript = dyn Fn(&str, u32) -> String + Send + Sync;

/// The reply to RCPTs over the `rcpt_rate` limit.
pub const THROTTLE_REPLY: &str = "451 4.7.1 Rate limited, slow down";

/// One received message and who it was accepted for.
#[derive(Debug, Clone)]
pub struct Received {
    pub rcpts: Vec<String>,
    pub data: Vec<u8>,
    /// The transaction ran over TLS (after STARTTLS).
    pub tls: bool,
    /// The connection it came on (0, 1, ... in the order accepted).
    pub conn: usize,
    /// When its end of data was accepted.
    pub at: Instant,
}

/// Where a tarpit delays the server's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Greeting,
    Ehlo,
    Mail,
    Rcpt,
    Data,
    DataEnd,
}

/// How an offered STARTTLS fails after its `220`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokenTls {
    /// The server closes the connection.
    Close,
    /// The server reads the client's hello and answers with plain text
    /// instead of a TLS handshake.
    Garbage,
    /// The server reads the client's hello and never answers.
    Silent,
}

/// How a connection is closed after `close_after` messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// No reply to the next command; the connection is just closed.
    Silently,
    /// `421 4.7.0` to the next command, then closed.
    With421,
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
    /// Greet the first this many connections with `421` and close them.
    pub greeting_421: u32,
    /// Greet the first this many connections with this reply (no CRLF)
    /// and close them.
    pub refuse_greeting: Option<(u32, &'static str)>,
    /// Greet every connection from this address with this reply (no
    /// CRLF) and close it (a blocklisted source).
    pub refuse_from: Option<(std::net::IpAddr, &'static str)>,
    /// Answer EHLO and HELO on the first this many connections with this
    /// reply (no CRLF).
    pub refuse_ehlo: Option<(u32, &'static str)>,
    /// Close the connection in the middle of DATA for the first this many
    /// messages.
    pub drop_in_data: u32,
    /// Delay every reply at this stage by this long.
    pub tarpit: Option<(Stage, Duration)>,
    /// Offer STARTTLS (instead of `tls`), then fail it this way.
    pub broken_tls: Option<BrokenTls>,
    /// Refuse messages over this many bytes with `552 5.3.4` at end of data.
    pub size_limit: Option<usize>,
    /// Declare `size_limit` in EHLO (`SIZE n`).
    pub advertise_size: bool,
    /// After this many messages on a connection, close it at the next
    /// command.
    pub close_after: Option<(u32, Close)>,
    /// Accept at most this many RCPTs per sliding second (0 = no limit).
    pub rcpt_rate: u32,
    /// At end of data, throw away what the client already sent after the
    /// message (commands sent ahead of the reply), as some servers do.
    pub discard_early: bool,
}

#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) offered: HashMap<String, u32>,
    pub(crate) received: Vec<Received>,
    /// Every command line received, in order (for protocol assertions).
    pub(crate) log: Vec<String>,
    /// Bytes of each read() from clients (how commands were grouped).
    pub(crate) reads: Vec<usize>,
    /// Connections accepted, open now, most open at once.
    pub(crate) connections: usize,
    pub(crate) open: usize,
    pub(crate) max_open: usize,
    /// Messages whose DATA was cut off so far.
    pub(crate) dropped: u32,
    /// Times input sent ahead was thrown away (`discard_early`).
    pub(crate) discarded: u32,
    /// The RCPT rate limit (0 = none), the accepted RCPTs of the last
    /// second, and when each throttle reply was given.
    pub(crate) rcpt_rate: u32,
    pub(crate) recent: VecDeque<Instant>,
    pub(crate) throttled: Vec<Instant>,
    /// Each connection's peer address and the last EHLO name it gave.
    pub(crate) peers: Vec<(std::net::IpAddr, String)>,
}

impl Shared {
    /// Whether one more RCPT may be accepted now (counting it if so).
    pub(crate) fn admit_rcpt(&mut self) -> bool {
        let now = Instant::now();
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            self.recent.pop_front();
        }
        if self.rcpt_rate > 0 && self.recent.len() >= self.rcpt_rate as usize {
            self.throttled.push(now);
            return false;
        }
        self.recent.push_back(now);
        true
    }
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
        let shared = Arc::new(Mutex::new(Shared {
            rcpt_rate: opts.rcpt_rate,
            ..Shared::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (sh, st) = (Arc::clone(&shared), Arc::clone(&stop));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::Acquire) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let peer = conn
                    .peer_addr()
                    .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |a| a.ip());
                let id = {
                    let mut s = sh.lock().expect("lock");
                    s.peers.push((peer, String::new()));
                    s.connections += 1;
                    s.open += 1;
                    s.max_open = s.max_open.max(s.open);
                    s.connections - 1
                };
                let (sh, script, opts) = (Arc::clone(&sh), Arc::clone(&script), opts.clone());
                std::thread::spawn(move || {
                    let ctx = Ctx {
                        opts: &opts,
                        script: &*script,
                        shared: &sh,
                        conn: id,
                        ended: std::cell::Cell::new(false),
                    };
                    let _ = serve(conn, &ctx);
                    ctx.end();
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

    /// A pipelining server that refuses recipients whose address starts
    /// with `prefix` (`550 5.1.1`) and accepts the others.
    pub fn bouncing(prefix: &'static str) -> ScriptedServer {
        ScriptedServer::start(
            true,
            Arc::new(move |rcpt: &str, _: u32| {
                if rcpt.starts_with(prefix) {
                    "550 5.1.1 no such user".to_string()
                } else {
                    "250 2.1.5 ok".to_string()
                }
            }),
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
    /// Times input sent ahead was thrown away (`discard_early`).
    pub fn discarded(&self) -> u32 {
        self.shared.lock().expect("lock").discarded
    }

    pub fn reads(&self) -> Vec<usize> {
        self.shared.lock().expect("lock").reads.clone()
    }

    /// Each connection's peer address and EHLO name, in the order
    /// accepted (a [`Received`]'s `conn` indexes it).
    pub fn peers(&self) -> Vec<(std::net::IpAddr, String)> {
        self.shared.lock().expect("lock").peers.clone()
    }

    pub fn command_log(&self) -> Vec<String> {
        self.shared.lock().expect("lock").log.clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.lock().expect("lock").connections
    }

    /// Connections open now (QUIT not yet received).
    pub fn open_now(&self) -> usize {
        self.shared.lock().expect("lock").open
    }

    /// The most connections that were open at once.
    pub fn max_concurrent(&self) -> usize {
        self.shared.lock().expect("lock").max_open
    }

    /// When each throttle reply ([`THROTTLE_REPLY`]) was given.
    pub fn throttled(&self) -> Vec<Instant> {
        self.shared.lock().expect("lock").throttled.clone()
    }

    /// Changes the RCPT rate limit (0 lifts it).
    pub fn set_rcpt_rate(&self, per_second: u32) {
        self.shared.lock().expect("lock").rcpt_rate = per_second;
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect(self.addr);
    }
}

/// A self-signed certificate for `localhost`, made with the openssl tool.
pub fn self_signed_tls() -> Arc<rustls::ServerConfig> {
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
    server_config(&cert, &key)
}

/// A test certificate authority (made with `openssl`): its certificate in
/// `ca.pem` under `dir`, for a verifying client's `SSL_CERT_FILE`.
pub struct TestCa {
    pub dir: std::path::PathBuf,
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let ok = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("running openssl (apt-get install openssl)");
    assert!(ok.success(), "openssl {args:?} failed");
}

impl TestCa {
    /// A new CA in `dir`.
    pub fn new(dir: &std::path::Path) -> TestCa {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=Volley Test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        TestCa {
            dir: dir.to_path_buf(),
        }
    }

    /// The CA's certificate (PEM file).
    pub fn pem(&self) -> std::path::PathBuf {
        self.dir.join("ca.pem")
    }

    /// A server configuration with a certificate this CA signed for
    /// `names` (`IP:127.0.0.1`, `DNS:mx.test`, ...).
    pub fn server(&self, stem: &str, names: &[&str]) -> Arc<rustls::ServerConfig> {
        let (key, csr, cert, ext) = (
            format!("{stem}.key"),
            format!("{stem}.csr"),
            format!("{stem}.pem"),
            format!("{stem}.ext"),
        );
        std::fs::write(
            self.dir.join(&ext),
            format!(
                "subjectAltName={}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
                names.join(",")
            ),
        )
        .expect("extensions file");
        openssl(
            &self.dir,
            &[
                "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=mx", "-keyout", &key, "-out",
                &csr,
            ],
        );
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &cert,
                "-extfile",
                &ext,
            ],
        );
        server_config(&self.dir.join(cert), &self.dir.join(key))
    }
}

fn server_config(cert: &std::path::Path, key: &std::path::Path) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .expect("cert file")
        .map(|c| c.expect("cert"))
        .collect();
    let key = PrivateKeyDer::from_pem_file(key).expect("key file");
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
