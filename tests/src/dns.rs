//! An authoritative DNS server for MX tests: hickory-server's [`Catalog`] of
//! in-memory zones, in-process on a thread with its own tokio runtime,
//! answering on UDP and TCP at one ephemeral port on 127.0.0.1.
//!
//! Zones are declared with [`Zones`]: the origins served (e.g. `test`), and
//! MX, null MX, A and AAAA records under them. Every origin gets an SOA, so
//! that negative answers are proper: a name under an origin with no records
//! at all answers NXDOMAIN, a name with records but none of the asked type
//! answers NOERROR with no answers (NODATA). Names declared with
//! [`Zones::servfail`] answer SERVFAIL to every query (a wrapper
//! [`RequestHandler`] in front of the catalog); names declared with
//! [`Zones::silent`] are never answered (a nameserver that cannot reach
//! their authoritative servers). Names under no served origin
//! answer REFUSED (the catalog's answer); declare an origin for them.
//!
//! The server answers thousands of names at once: zones of tens of
//! thousands of records (negative answers from an index, [`negative`],
//! instead of the in-memory zone's scan of every record), and a UDP receive
//! buffer that queues a burst of some ten thousand queries instead of
//! dropping them.
//!
//! The server stops when [`DnsServer`] is dropped.

use std::collections::HashSet;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Header, HeaderCounts, MessageType, Metadata, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, MX, SOA, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record};
use hickory_server::Server;
use hickory_server::net::runtime::{Time, TokioRuntimeProvider};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{
    AxfrPolicy, Catalog, MessageResponseBuilder, ZoneHandler, ZoneType,
};

mod negative;
use negative::{Negatives, send_negative};

/// TTL of declared records (seconds).
pub const TTL: u32 = 300;
/// Negative-caching TTL (the SOA minimum; seconds).
pub const NEGATIVE_TTL: u32 = 60;
const SERIAL: u32 = 1;

type Zone = InMemoryZoneHandler<TokioRuntimeProvider>;

/// A fully qualified name from `name` (a trailing dot is optional).
fn fqdn(name: &str) -> Name {
    let mut n = Name::from_ascii(name).unwrap_or_else(|e| panic!("bad DNS name {name:?}: {e}"));
    n.set_fqdn(true);
    n
}

/// The SOA record of `origin`.
fn soa_record(origin: &Name) -> Record {
    let soa = SOA::new(
        fqdn(&format!("ns.{origin}")),
        fqdn(&format!("hostmaster.{origin}")),
        SERIAL,
        3600,
        600,
        86400,
        NEGATIVE_TTL,
    );
    Record::from_rdata(origin.clone(), TTL, RData::SOA(soa))
}

/// The zones a [`DnsServer`] serves.
#[derive(Debug, Clone)]
pub struct Zones {
    origins: Vec<Name>,
    records: Vec<Record>,
    servfail: Vec<Name>,
    silent: Vec<Name>,
    nxdomain: Vec<Name>,
}

impl Zones {
    /// Serves the zone `origin` (e.g. `"test"`), empty but for its SOA.
    pub fn new(origin: &str) -> Zones {
        Zones {
            origins: vec![fqdn(origin)],
            records: Vec::new(),
            servfail: Vec::new(),
            silent: Vec::new(),
            nxdomain: Vec::new(),
        }
    }

    /// Also serves the zone `origin`.
    pub fn origin(mut self, origin: &str) -> Zones {
        self.origins.push(fqdn(origin));
        self
    }

    fn record(mut self, name: &str, rdata: RData) -> Zones {
        self.records
            .push(Record::from_rdata(fqdn(name), TTL, rdata));
        self
    }

    /// `name MX preference exchange`.
    pub fn mx(self, name: &str, preference: u16, exchange: &str) -> Zones {
        self.record(name, RData::MX(MX::new(preference, fqdn(exchange))))
    }

    /// `name MX 0 .` (RFC 7505: the domain accepts no mail).
    pub fn null_mx(self, name: &str) -> Zones {
        self.record(name, RData::MX(MX::new(0, Name::root())))
    }

    /// `name A ip`.
    pub fn a(self, name: &str, ip: Ipv4Addr) -> Zones {
        self.record(name, RData::A(A(ip)))
    }

    /// `name AAAA ip`.
    pub fn aaaa(self, name: &str, ip: Ipv6Addr) -> Zones {
        self.record(name, RData::AAAA(AAAA(ip)))
    }

    /// `name A` or `AAAA ip`, by the address family.
    pub fn addr(self, name: &str, ip: IpAddr) -> Zones {
        match ip {
            IpAddr::V4(v4) => self.a(name, v4),
            IpAddr::V6(v6) => self.aaaa(name, v6),
        }
    }

    /// `name TXT text` (one string).
    pub fn txt(self, name: &str, text: &str) -> Zones {
        self.record(name, RData::TXT(TXT::new(vec![text.to_string()])))
    }

    /// Every query for exactly `name` (any type) answers SERVFAIL.
    pub fn servfail(mut self, name: &str) -> Zones {
        self.servfail.push(fqdn(name));
        self
    }

    /// No query for exactly `name` (any type) is ever answered: the
    /// client's lookup times out.
    pub fn silent(mut self, name: &str) -> Zones {
        self.silent.push(fqdn(name));
        self
    }

    /// Declares that `name` answers NXDOMAIN. Any name under a served origin
    /// without records does; this only checks, when the server starts, that
    /// `name` is such a name (under an origin, no records at or below it).
    pub fn nxdomain(mut self, name: &str) -> Zones {
        self.nxdomain.push(fqdn(name));
        self
    }

    /// The served origin `name` belongs to (the longest that contains it).
    fn origin_of(&self, name: &Name) -> Option<&Name> {
        self.origins
            .iter()
            .filter(|o| o.zone_of(name))
            .max_by_key(|o| o.num_labels())
    }

    /// The catalog of in-memory zones, one per origin.
    fn catalog(&self) -> Catalog {
        for n in &self.nxdomain {
            assert!(
                self.origin_of(n).is_some(),
                "{n} is under no served origin (it would answer REFUSED, not NXDOMAIN)"
            );
            assert!(
                !self.records.iter().any(|r| n.zone_of(&r.name)),
                "{n} has records at or below it (it would not answer NXDOMAIN)"
            );
        }
        let mut catalog = Catalog::new();
        for origin in &self.origins {
            let mut zone = Zone::empty(origin.clone(), ZoneType::Primary, AxfrPolicy::Deny);
            assert!(zone.upsert_mut(soa_record(origin), SERIAL));
            for r in self
                .records
                .iter()
                .filter(|r| self.origin_of(&r.name) == Some(origin))
            {
                assert!(
                    zone.upsert_mut(r.clone(), SERIAL),
                    "record not accepted by zone {origin}: {r}"
                );
            }
            let handler: Arc<dyn ZoneHandler> = Arc::new(zone);
            catalog.upsert(LowerName::new(origin), vec![handler]);
        }
        for r in &self.records {
            assert!(
                self.origin_of(&r.name).is_some(),
                "{} is under no served origin ({:?})",
                r.name,
                self.origins
            );
        }
        catalog
    }

    /// The index of negative answers over the records and the SOAs.
    fn negatives(&self) -> Negatives {
        let soas: Vec<Record> = self.origins.iter().map(soa_record).collect();
        let all: Vec<Record> = self.records.iter().cloned().chain(soas).collect();
        Negatives::new(&self.origins, &all)
    }
}

/// The catalog, with SERVFAIL or silence for chosen names and the index of
/// negative answers in front of it.
struct Handler {
    catalog: Catalog,
    servfail: HashSet<LowerName>,
    silent: HashSet<LowerName>,
    negatives: Negatives,
}

impl Handler {
    async fn handle<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let info = request.request_info();
        if let Ok(i) = &info
            && self.silent.contains(i.query.name())
        {
            return unsent(request, ResponseCode::NoError);
        }
        let fail = info
            .as_ref()
            .is_ok_and(|info| self.servfail.contains(info.query.name()));
        if fail {
            let msg = MessageResponseBuilder::from_message_request(request)
                .error_msg(&request.metadata, ResponseCode::ServFail);
            return match response.send_response(msg).await {
                Ok(info) => info,
                Err(_) => unsent(request, ResponseCode::ServFail),
            };
        }
        // EDNS versions other than 0 get the catalog's BADVERS
        let edns_v0 = request.edns.as_ref().is_none_or(|e| e.version() == 0);
        let negative = info.ok().filter(|_| edns_v0).and_then(|info| {
            let q = &info.query;
            self.negatives
                .answer(q.name(), q.query_type(), q.query_class())
        });
        match negative {
            Some((rcode, soa)) => send_negative(request, rcode, soa, response).await,
            None => self.catalog.handle_request::<R, T>(request, response).await,
        }
    }
}

/// What a response with `rcode` would have said, when sending it failed.
fn unsent(request: &Request, rcode: ResponseCode) -> ResponseInfo {
    let mut metadata = Metadata::new(
        request.metadata.id,
        MessageType::Response,
        request.metadata.op_code,
    );
    metadata.response_code = rcode;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

// `RequestHandler` is an `#[async_trait]`; this is its expanded form.
impl RequestHandler for Handler {
    fn handle_request<'life0, 'life1, 'async_trait, R, T>(
        &'life0 self,
        request: &'life1 Request,
        response_handle: R,
    ) -> Pin<Box<dyn Future<Output = ResponseInfo> + Send + 'async_trait>>
    where
        R: 'async_trait + ResponseHandler,
        T: 'async_trait + Time,
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.handle::<R, T>(request, response_handle))
    }
}

/// A running DNS server; stops when dropped.
pub struct DnsServer {
    /// Where it answers (UDP and TCP).
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A UDP socket and a TCP listener on the same ephemeral port of 127.0.0.1.
fn bind_pair() -> (std::net::UdpSocket, std::net::TcpListener) {
    for _ in 0..50 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("binding a UDP socket");
        let addr = udp.local_addr().expect("UDP local address");
        if let Ok(tcp) = std::net::TcpListener::bind(addr) {
            return (udp, tcp);
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1");
}

/// Receive buffer of the UDP socket: room for a burst of some ten thousand
/// queries (a datagram takes about a kilobyte of buffer, whatever its
/// size), so that the engine's lookups for thousands of domains at once are
/// queued rather than dropped while the server works through them.
const UDP_RECEIVE_BUFFER: libc::c_int = 32 << 20;

/// Gives `sock` a receive buffer of [`UDP_RECEIVE_BUFFER`]: beyond the
/// system's `net.core.rmem_max` where permitted (SO_RCVBUFFORCE, with
/// CAP_NET_ADMIN), else as much as `rmem_max` allows.
pub(crate) fn large_receive_buffer(sock: &std::net::UdpSocket) {
    use std::os::fd::AsRawFd;
    let size = UDP_RECEIVE_BUFFER;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: the option value is a c_int of the given length.
        let r = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&raw const size).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            break;
        }
    }
}

impl DnsServer {
    /// Starts serving `zones`.
    pub fn start(zones: Zones) -> DnsServer {
        let handler = Handler {
            catalog: zones.catalog(),
            servfail: zones.servfail.iter().map(LowerName::new).collect(),
            silent: zones.silent.iter().map(LowerName::new).collect(),
            negatives: zones.negatives(),
        };
        let (udp, tcp) = bind_pair();
        let addr = udp.local_addr().expect("UDP local address");
        large_receive_buffer(&udp);
        udp.set_nonblocking(true).expect("non-blocking UDP socket");
        tcp.set_nonblocking(true)
            .expect("non-blocking TCP listener");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("dns-{addr}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("DNS server runtime");
                rt.block_on(async move {
                    let mut server = Server::new(handler);
                    server.register_socket(
                        tokio::net::UdpSocket::from_std(udp).expect("tokio UDP socket"),
                    );
                    server.register_listener(
                        tokio::net::TcpListener::from_std(tcp).expect("tokio TCP listener"),
                        Duration::from_secs(10),
                        64,
                    );
                    // runs until the owner is dropped; dropping the server
                    // and the runtime then ends every task
                    let _ = stopped.await;
                    drop(server);
                });
            })
            .expect("starting the DNS server thread");
        DnsServer {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests;
