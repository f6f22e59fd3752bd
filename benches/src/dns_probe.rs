//! A probe of a nameserver's responsiveness during a run: one A query
//! every 100 ms over UDP, each waited for up to 5 s, and the round-trip
//! times seen. It tells whether the test DNS server kept answering
//! promptly while the engine looked up thousands of domains (if the
//! engine's lookups time out while the probe's do not, the waiting was on
//! the engine's side).
//!
//! Input: the server's address and a name to ask (a hand-encoded query:
//! header, name, type A, class IN). Output: [`ProbeReport`] when stopped.
//! Only answers of loopback peers; replies are matched by query id.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the probe asks.
const EVERY: Duration = Duration::from_millis(100);
/// How long one question is waited for.
const PATIENCE: Duration = Duration::from_secs(5);

/// Round trips seen by a probe.
#[derive(Debug, Clone, Default)]
pub struct ProbeReport {
    /// Round-trip times of answered queries.
    pub rtts: Vec<Duration>,
    /// Queries not answered within 5 s.
    pub lost: usize,
}

impl ProbeReport {
    /// The `q` quantile (0..=1) of the answered round trips.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let mut v = self.rtts.clone();
        v.sort();
        let i = ((v.len() as f64 - 1.0) * q).round() as usize;
        v.get(i).copied()
    }
}

impl std::fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1e3);
        write!(
            f,
            "{} probes, median {:.1} ms, p99 {:.1} ms, max {:.1} ms, {} unanswered",
            self.rtts.len() + self.lost,
            ms(self.quantile(0.5)),
            ms(self.quantile(0.99)),
            ms(self.quantile(1.0)),
            self.lost
        )
    }
}

/// A running probe; [`Probe::stop`] ends it and returns what it saw (at
/// least one question).
pub struct Probe {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<ProbeReport>,
}

impl Probe {
    /// Starts asking `server` for the A record of `name`.
    pub fn start(server: SocketAddr, name: &str) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let name = name.to_string();
        let thread = std::thread::spawn(move || {
            let sock = UdpSocket::bind("127.0.0.1:0").expect("probe socket");
            let mut report = ProbeReport::default();
            let mut id: u16 = 0;
            loop {
                id = id.wrapping_add(1);
                match ask(&sock, server, id, &name, PATIENCE) {
                    Some(rtt) => report.rtts.push(rtt),
                    None => report.lost += 1,
                }
                if flag.load(Ordering::Relaxed) {
                    return report;
                }
                std::thread::sleep(EVERY);
            }
        });
        Probe { stop, thread }
    }

    pub fn stop(self) -> ProbeReport {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// One question and its round trip, or `None` when no answer with its id
/// came within `patience`.
fn ask(
    sock: &UdpSocket,
    server: SocketAddr,
    id: u16,
    name: &str,
    patience: Duration,
) -> Option<Duration> {
    let q = query(id, name);
    let start = Instant::now();
    sock.send_to(&q, server).ok()?;
    let mut buf = [0u8; 1500];
    loop {
        let left = patience.checked_sub(start.elapsed())?;
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .ok()?;
        let n = sock.recv(&mut buf).ok()?;
        // a late answer to an earlier probe has another id: skip it
        if n >= 2 && buf[..2] == id.to_be_bytes() {
            return Some(start.elapsed());
        }
    }
}

/// A DNS query (RFC 1035 section 4.1) for the A record of `name`,
/// recursion desired.
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        let len = u8::try_from(label.len()).expect("DNS label of at most 63 bytes");
        q.push(len);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_an_a_query() {
        assert_eq!(
            query(0x1234, "mx1.sites.test."),
            [
                &[0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0][..],
                b"\x03mx1\x05sites\x04test\x00",
                &[0, 1, 0, 1],
            ]
            .concat()
        );
    }

    #[test]
    fn measures_round_trips_to_the_test_server() {
        use std::net::Ipv4Addr;
        use volley_tests::dns::{DnsServer, Zones};
        let dns = DnsServer::start(Zones::new("test").a("h.test", Ipv4Addr::LOCALHOST));
        let r = Probe::start(dns.addr, "h.test").stop();
        assert_eq!((r.lost, r.rtts.len()), (0, 1), "{r}");
    }

    #[test]
    fn a_question_without_answer_is_lost() {
        let silent = UdpSocket::bind("127.0.0.1:0").expect("silent socket");
        let sock = UdpSocket::bind("127.0.0.1:0").expect("probe socket");
        let server = silent.local_addr().expect("address");
        let patience = Duration::from_millis(200);
        assert_eq!(ask(&sock, server, 1, "h.test", patience), None);
    }
}
