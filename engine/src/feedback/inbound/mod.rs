//! The inbound listener of `volley run`: the MX of the bounce domain (and
//! the feedback domains), where delivery status notifications, complaint
//! reports and unsubscribe mail come back. Each connection gets a
//! [`session::Session`] (a STARTTLS upgrade a fresh one); a message's
//! report is handled by [`handle::Handler`] (parse, check its tokens,
//! journal its events, suppress).
//!
//! [`Shared`] holds what sessions share: the domains taken, limits, the
//! per-address message rate, the handler. Exposure: network input.

pub mod attribute;
pub mod handle;
pub mod session;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::submission::smtp::wire::accept_loop;

pub use handle::{Counts, Handler};

/// Messages per client address per window.
pub struct Rate {
    per_window: u32,
    window: Duration,
    seen: Mutex<Seen>,
}

/// Counts per address, and when they were last pruned.
struct Seen {
    by_ip: HashMap<IpAddr, (Instant, u32)>,
    pruned: Option<Instant>,
}

/// Addresses counted before old ones are pruned (once per window).
const PRUNE_AFTER: usize = 100_000;

impl Rate {
    pub fn new(per_window: u32, window: Duration) -> Rate {
        Rate {
            per_window,
            window,
            seen: Mutex::new(Seen {
                by_ip: HashMap::new(),
                pruned: None,
            }),
        }
    }

    /// Counts one message from `ip`; false when it is over the rate.
    pub fn take(&self, ip: IpAddr) -> bool {
        self.take_at(ip, Instant::now())
    }

    fn take_at(&self, ip: IpAddr, now: Instant) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let due = seen
            .pruned
            .is_none_or(|t| now.duration_since(t) >= self.window);
        if seen.by_ip.len() > PRUNE_AFTER && due {
            let window = self.window;
            seen.by_ip
                .retain(|_, (start, _)| now.duration_since(*start) < window);
            seen.pruned = Some(now);
        }
        let (start, n) = seen.by_ip.entry(ip).or_insert((now, 0));
        if now.duration_since(*start) >= self.window {
            *start = now;
            *n = 0;
        }
        if *n >= self.per_window {
            return false;
        }
        *n += 1;
        true
    }
}

/// What every inbound session shares.
pub struct Shared {
    pub hostname: String,
    /// The domains mail is taken for (lowercase).
    pub domains: Vec<String>,
    pub max_size: usize,
    pub tls: Option<TlsAcceptor>,
    pub rate: Rate,
    pub handler: Arc<Handler>,
    pub connections: Arc<tokio::sync::Semaphore>,
    /// Open connections per client address.
    pub open: PerAddress,
}

/// Most open connections from one client address: one host cannot hold
/// every place of the listener.
pub const PER_ADDRESS: u32 = 10;

/// Open connections by client address.
#[derive(Default)]
pub struct PerAddress(Mutex<HashMap<IpAddr, u32>>);

/// A connection counted against its address while it lives.
pub struct Counted<'a> {
    all: &'a PerAddress,
    ip: IpAddr,
}

impl PerAddress {
    /// Counts a connection from `ip`; `None` when it has [`PER_ADDRESS`]
    /// open already.
    pub fn count(&self, ip: IpAddr) -> Option<Counted<'_>> {
        let mut open = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= PER_ADDRESS {
            return None;
        }
        *n += 1;
        Some(Counted { all: self, ip })
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        let mut open = self.all.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Binds the configured inbound listeners (errors name the address).
pub async fn bind(addresses: &[String]) -> Result<Vec<TcpListener>, String> {
    let mut out = Vec::new();
    for a in addresses {
        let addr: SocketAddr = a
            .parse()
            .map_err(|_| format!("feedback listener {a:?}: not ip:port"))?;
        let sock = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("feedback listener {addr}: {e}"))?;
        out.push(sock);
    }
    Ok(out)
}

/// Accepts connections until `stop` turns true.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, stop: watch::Receiver<bool>) {
    let places = Arc::clone(&shared.connections);
    accept_loop(listener, places, stop, "inbound", move |conn, peer| {
        connection(conn, peer, Arc::clone(&shared))
    })
    .await;
}

async fn connection(
    mut conn: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let Some(_counted) = shared.open.count(peer.ip()) else {
        conn.write_all(b"421 4.7.0 Too many connections from your address, try again later\r\n")
            .await?;
        return Ok(());
    };
    let end = session::Session::new(Arc::clone(&shared), peer, false)
        .run(&mut conn, true)
        .await?;
    if end == session::End::StartTls
        && let Some(tls) = shared.tls.clone()
    {
        let mut stream = tls.accept(conn).await?;
        session::Session::new(Arc::clone(&shared), peer, true)
            .run(&mut stream, false)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_counted_per_address() {
        let all = PerAddress::default();
        let a: IpAddr = "192.0.2.9".parse().unwrap();
        let b: IpAddr = "192.0.2.10".parse().unwrap();
        let held: Vec<Counted<'_>> = (0..PER_ADDRESS).map(|_| all.count(a).unwrap()).collect();
        assert!(all.count(a).is_none(), "one more from the same address");
        assert!(all.count(b).is_some(), "another address is not held back");
        drop(held);
        assert!(
            all.count(a).is_some(),
            "places come back when connections end"
        );
        assert!(
            all.0.lock().unwrap().get(&b).is_none(),
            "idle addresses are forgotten"
        );
    }

    #[test]
    fn the_rate_is_per_address_and_window() {
        let r = Rate::new(2, Duration::from_secs(60));
        let t = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(r.take_at(a, t));
        assert!(r.take_at(a, t));
        assert!(!r.take_at(a, t + Duration::from_secs(1)));
        assert!(r.take_at(b, t));
        assert!(r.take_at(a, t + Duration::from_secs(61)));
    }
}
