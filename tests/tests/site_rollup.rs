//! Site rollup against the in-process DNS server: domains whose MX host
//! sets are equal (whatever the preferences, case or repetition) share one
//! site: one pool (never more than its `connections` sessions over all its
//! hosts), one metrics label, one policy; a domain with other MX hosts and
//! one without MX get their own.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use volley_tests::dns::{DnsServer, Zones};
use volley_tests::mx_rig::*;
use volley_tests::prom::{metrics_when, samples, site_value};
use volley_tests::*;

/// Counts a group of listeners' concurrent SMTP sessions.
#[derive(Default)]
struct Census {
    active: AtomicUsize,
    max: AtomicUsize,
    sessions: AtomicUsize,
    rcpts: Mutex<Vec<String>>,
}

impl Census {
    fn enter(&self) {
        let now = self.active.fetch_add(1, Ordering::AcqRel) + 1;
        self.max.fetch_max(now, Ordering::AcqRel);
        self.sessions.fetch_add(1, Ordering::AcqRel);
    }

    fn leave(&self) {
        self.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A minimal SMTP server (no PIPELINING, no TLS) that accepts everything,
/// holds each message `delay` before accepting it (so that the client
/// wants more connections), and counts sessions in a shared [`Census`].
struct CountingSink {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl CountingSink {
    fn start(addr: SocketAddr, census: Arc<Census>, delay: Duration) -> CountingSink {
        let listener = TcpListener::bind(addr).expect("bind counting sink");
        let stop = Arc::new(AtomicBool::new(false));
        let st = Arc::clone(&stop);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::Acquire) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let census = Arc::clone(&census);
                std::thread::spawn(move || {
                    census.enter();
                    // a session ended by QUIT has already left the census
                    if !matches!(sink_session(conn, &census, delay), Ok(true)) {
                        census.leave();
                    }
                });
            }
        });
        CountingSink { addr, stop }
    }
}

impl Drop for CountingSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect(self.addr);
    }
}

/// One SMTP session; Ok(true) when it ended with QUIT (the session leaves
/// the census before 221 is sent, so that the client cannot open its next
/// connection before this one is counted out).
fn sink_session(conn: TcpStream, census: &Census, delay: Duration) -> std::io::Result<bool> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    w.write_all(b"220 census ESMTP\r\n")?;
    let mut rcpts: Vec<String> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(false);
        }
        let cmd = line.trim_end().to_ascii_uppercase();
        let reply = if cmd.starts_with("EHLO") || cmd.starts_with("HELO") {
            "250 census"
        } else if cmd.starts_with("MAIL FROM:") {
            rcpts.clear();
            "250 2.1.0 Ok"
        } else if cmd.starts_with("RCPT TO:") {
            let addr = line
                .split_once('<')
                .and_then(|(_, a)| a.split_once('>'))
                .map(|(a, _)| a.to_string())
                .unwrap_or_default();
            rcpts.push(addr);
            "250 2.1.5 Ok"
        } else if cmd == "DATA" {
            w.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
            loop {
                line.clear();
                if r.read_line(&mut line)? == 0 {
                    return Ok(false);
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
            }
            std::thread::sleep(delay);
            census.rcpts.lock().expect("lock").append(&mut rcpts);
            "250 2.0.0 Ok: queued"
        } else if cmd == "RSET" {
            rcpts.clear();
            "250 2.0.0 Ok"
        } else if cmd == "NOOP" {
            "250 2.0.0 Ok"
        } else if cmd == "QUIT" {
            census.leave();
            let _ = w.write_all(b"221 2.0.0 Bye\r\n");
            return Ok(true);
        } else {
            "502 5.5.2 Error: command not recognized"
        };
        w.write_all(format!("{reply}\r\n").as_bytes())?;
    }
}

#[test]
fn domains_with_the_same_mx_hosts_share_one_site() {
    // 31 domains hosted by the same two MX hosts (preferences, case and
    // repetition varying), one domain with other MX hosts, one without MX
    let (mx1, mx2, other, plain) = (ip(7, 2), ip(7, 3), ip(7, 4), ip(7, 5));
    let port = common_port(&[mx1, mx2, other, plain]);
    let census = Arc::new(Census::default());
    let delay = Duration::from_millis(15);
    let _sinks = [
        CountingSink::start(SocketAddr::new(mx1, port), Arc::clone(&census), delay),
        CountingSink::start(SocketAddr::new(mx2, port), Arc::clone(&census), delay),
    ];
    let other_srv = server_at(SocketAddr::new(other, port));
    let plain_srv = server_at(SocketAddr::new(plain, port));
    let mut zones = Zones::new("test")
        .a("mx1.shared.test", v4(mx1))
        .a("mx2.shared.test", v4(mx2))
        .mx("other.roll.test", 10, "mx.other.test")
        .a("mx.other.test", v4(other))
        .a("plain.roll.test", v4(plain));
    let mut shared = Vec::new();
    for i in 0..30 {
        let d = format!("d{i}.roll.test");
        let (first, second) = match i % 3 {
            0 => ("mx1.shared.test", "mx2.shared.test"),
            1 => ("mx2.shared.test", "MX1.Shared.Test"),
            _ => ("MX2.SHARED.TEST", "mx1.shared.test"),
        };
        zones = zones.mx(&d, 10, first).mx(&d, 10 + 10 * (i % 2), second);
        shared.extend(rcpts(&d, 2));
    }
    // the same host listed twice (at different preferences) is one host
    let zones = zones
        .mx("dup.roll.test", 10, "mx1.shared.test")
        .mx("dup.roll.test", 20, "mx2.shared.test")
        .mx("dup.roll.test", 30, "mx1.shared.test");
    shared.extend(rcpts("dup.roll.test", 2));
    let dns = DnsServer::start(zones);
    let (others, plains) = (rcpts("other.roll.test", 5), rcpts("plain.roll.test", 3));
    let all = [shared.clone(), others.clone(), plains.clone()].concat();
    let fx = Fixture::new();
    campaign(&fx, &all);
    // connections = 2 (set by `config`); the other site's policy comes
    // from an MX-suffix rule
    config(
        &fx,
        &dns,
        port,
        "messages_per_connection = 5",
        "[[mx]]\nsuffix = \".other.test\"\nmessages_per_second = 500\n",
    );

    fx.enqueue();
    let service = spawn(fx.path(), &["run", "--config", "config.toml"]);
    wait_until(Duration::from_secs(30), "every recipient delivered", || {
        per_recipient(&fx.events(), "Delivery").len() == all.len()
    });
    let shared_site = "mx:mx1.shared.test,mx2.shared.test";
    let metrics = metrics_when(
        &fx.http_addr(),
        Duration::from_secs(10),
        "every delivery counted",
        |m| {
            samples(m, "volley_site_outcomes_total")
                .iter()
                .filter(|(l, _)| l.get("outcome").is_some_and(|o| o == "delivered"))
                .map(|(_, v)| v)
                .sum::<f64>()
                == all.len() as f64
        },
    );

    let sites: BTreeSet<String> = samples(&metrics, "volley_site_attempts_total")
        .into_iter()
        .filter_map(|(l, _)| l.get("site").cloned())
        .collect();
    assert_eq!(
        sites,
        BTreeSet::from([
            shared_site.to_string(),
            "mx:mx.other.test".to_string(),
            "plain.roll.test (no MX)".to_string(),
        ]),
        "one site per MX host set (and one for the A fallback)\n{metrics}"
    );
    let attempts = |site| site_value(&metrics, "volley_site_attempts_total", site, &[]);
    assert_eq!(
        attempts(shared_site),
        Some(shared.len() as f64),
        "{metrics}"
    );
    assert_eq!(attempts("mx:mx.other.test"), Some(others.len() as f64));
    assert_eq!(
        attempts("plain.roll.test (no MX)"),
        Some(plains.len() as f64)
    );
    assert_eq!(
        site_value(
            &metrics,
            "volley_site_outcomes_total",
            shared_site,
            &[("outcome", "delivered")]
        ),
        Some(shared.len() as f64),
        "{metrics}"
    );
    let gauge = |name, site| site_value(&metrics, name, site, &[]);
    assert_eq!(
        gauge("volley_site_connection_limit", shared_site),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(gauge("volley_site_rate_limit", shared_site), Some(1000.0));
    assert_eq!(
        gauge("volley_site_rate_limit", "mx:mx.other.test"),
        Some(500.0),
        "[[mx]] suffix rule\n{metrics}"
    );
    assert_eq!(gauge("volley_site_queued", shared_site), Some(0.0));

    stop(service);

    // what arrived where
    let mut at_shared = census.rcpts.lock().unwrap().clone();
    at_shared.sort();
    assert_eq!(at_shared, sorted(&shared));
    assert_eq!(got(&other_srv), sorted(&others));
    assert_eq!(got(&plain_srv), sorted(&plains));
    assert_delivered_once(&fx.events(), &all);
    // one pool for the 30 domains: never more than `connections` sessions
    // at once over both hosts, and (60 messages, 5 per connection) reopened
    let max = census.max.load(Ordering::Acquire);
    let sessions = census.sessions.load(Ordering::Acquire);
    assert!(
        (1..=2).contains(&max),
        "at most 2 concurrent sessions to the shared site, saw {max}"
    );
    assert!(
        sessions >= shared.len() / 5,
        "{sessions} sessions for {} messages at 5 per connection",
        shared.len()
    );
}
