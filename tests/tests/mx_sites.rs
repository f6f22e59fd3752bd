//! MX routing and sites against the in-process DNS server
//! ([`volley_tests::dns`]): the lowest MX preference is used first, the next
//! MX is tried when one refuses connections, equal preferences share the
//! load, a domain without MX is reached at its A/AAAA address, a null MX or
//! a nonexistent domain bounces without any connection, SERVFAIL (and an MX
//! host without an address) defers, and domains whose MX host sets are equal
//! roll up into one site (one pool, one metrics label, one connection limit).
//!
//! Every receiving server of a test listens on the same port (the engine's
//! `smtp_port`) on its own loopback address `127.91.<test>.<host>`; an
//! address where nothing was bound refuses connections.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use volley_tests::dns::{DnsServer, Zones};
use volley_tests::scripted::{Options, ScriptedServer};
use volley_tests::*;

/// `127.91.<test>.<host>`: each test has its own /24.
fn ip(test: u8, host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 91, test, host))
}

fn v4(ip: IpAddr) -> Ipv4Addr {
    match ip {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => panic!("{ip} is not IPv4"),
    }
}

/// A port free on every one of `ips` (probed by binding; the servers bind
/// it right after).
fn common_port(ips: &[IpAddr]) -> u16 {
    for _ in 0..50 {
        let first = TcpListener::bind((ips[0], 0)).expect("binding a loopback address");
        let port = first.local_addr().expect("local address").port();
        let others: Vec<_> = ips[1..]
            .iter()
            .map(|ip| TcpListener::bind((*ip, port)))
            .collect();
        if others.iter().all(Result::is_ok) {
            return port;
        }
    }
    panic!("no port free on all of {ips:?}");
}

/// An accept-all scripted server at `addr`.
fn server_at(addr: SocketAddr) -> ScriptedServer {
    ScriptedServer::start_with(
        Options {
            pipelining: true,
            bind: Some(addr),
            ..Options::default()
        },
        Arc::new(|_: &str, _: u32| "250 2.1.5 Ok".to_string()),
    )
}

/// Accept-all scripted servers on `ips`, all on one port (returned).
fn servers(ips: &[IpAddr]) -> (u16, Vec<ScriptedServer>) {
    let port = common_port(ips);
    let s = ips
        .iter()
        .map(|ip| server_at(SocketAddr::new(*ip, port)))
        .collect();
    (port, s)
}

/// Writes `config.toml`: MX lookups at `dns`, MX hosts on `smtp_port`;
/// `delivery` goes into `[delivery]`, `extra` at the end. Retries are far
/// off, so that `send` ends with deferred recipients still deferred.
fn config(fx: &Fixture, dns: &DnsServer, smtp_port: u16, delivery: &str, extra: &str) {
    fx.write(
        "config.toml",
        format!(
            "[spool]\ndir = \"spool\"\n[events]\njsonl = \"events.jsonl\"\n\
             [http]\nlisten = \"127.0.0.1:{http}\"\n\
             [dns]\nnameservers = [\"{dns}\"]\n\
             [delivery]\nsmtp_port = {smtp_port}\nmessages_per_second = 1000\nconnections = 2\n\
             retry_first = \"60s\"\n{delivery}\n\
             [delivery.timeouts]\nconnect = \"2s\"\n{extra}\n",
            http = free_port(),
            dns = dns.addr,
        ),
    );
}

/// Writes the campaign for `rcpts`.
fn campaign(fx: &Fixture, rcpts: &[String]) {
    let mut csv = String::from("email,name\n");
    for (i, r) in rcpts.iter().enumerate() {
        csv.push_str(&format!("{r},N{i}\n"));
    }
    fx.write("list.csv", csv);
    fx.campaign("list.csv", "Hello {{name}}", "Hi {{name}}\n", "");
}

/// `n` recipients at `domain`.
fn rcpts(domain: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user{i}@{domain}")).collect()
}

/// Every recipient a server accepted a message for, sorted.
fn got(s: &ScriptedServer) -> Vec<String> {
    let mut v: Vec<String> = s.received().into_iter().flat_map(|m| m.rcpts).collect();
    v.sort();
    v
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}

/// Events of `kind` for the recipients, by recipient.
fn by_rcpt<'a>(
    ev: &'a [serde_json::Value],
    kind: &str,
) -> BTreeMap<String, Vec<&'a serde_json::Value>> {
    let mut out: BTreeMap<String, Vec<&serde_json::Value>> = BTreeMap::new();
    for e in ev.iter().filter(|e| e["eventType"] == kind) {
        let to = e["mail"]["destination"][0].as_str().expect("destination");
        out.entry(to.to_string()).or_default().push(e);
    }
    out
}

/// Exactly one Delivery for each of `rcpts`, and no other outcome for them.
fn assert_delivered_once(ev: &[serde_json::Value], rcpts: &[String]) {
    let delivered = per_recipient(ev, "Delivery");
    let bounced = per_recipient(ev, "Bounce");
    let delayed = per_recipient(ev, "DeliveryDelay");
    for r in rcpts {
        assert_eq!(delivered.get(r), Some(&1), "one Delivery for {r}");
        assert!(!bounced.contains_key(r), "{r} bounced");
        assert!(!delayed.contains_key(r), "{r} deferred");
    }
}

#[test]
fn lowest_preference_is_used_first() {
    let (a, b) = (ip(1, 2), ip(1, 3));
    let (port, s) = servers(&[a, b]);
    // declared in the reverse order: the preference decides, not the order
    let dns = DnsServer::start(
        Zones::new("test")
            .mx("pref.test", 20, "mx2.pref.test")
            .mx("pref.test", 10, "mx1.pref.test")
            .a("mx1.pref.test", v4(a))
            .a("mx2.pref.test", v4(b)),
    );
    let fx = Fixture::new();
    let list = rcpts("pref.test", 12);
    campaign(&fx, &list);
    config(&fx, &dns, port, "", "");

    let out = fx.volley("send", Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(got(&s[0]), sorted(&list), "every message at MX 10");
    assert!(s[1].received().is_empty(), "nothing at MX 20");
    assert!(
        s[1].command_log().is_empty(),
        "MX 20 was not even talked to: {:?}",
        s[1].command_log()
    );
    assert_delivered_once(&fx.events(), &list);
}

#[test]
fn next_mx_is_tried_when_one_refuses_connections() {
    // fb.test: MX 10 where nothing listens, MX 20 up, MX 30 up but never
    // needed; multi.test: one MX host with two addresses, the first dead
    let (dead, b, c, m) = (ip(2, 9), ip(2, 2), ip(2, 3), ip(2, 4));
    let (port, s) = servers(&[b, c, m]);
    let dns = DnsServer::start(
        Zones::new("test")
            .mx("fb.test", 10, "mx1.fb.test")
            .mx("fb.test", 20, "mx2.fb.test")
            .mx("fb.test", 30, "mx3.fb.test")
            .a("mx1.fb.test", v4(dead))
            .a("mx2.fb.test", v4(b))
            .a("mx3.fb.test", v4(c))
            .mx("multi.test", 10, "mx.multi.test")
            .a("mx.multi.test", v4(dead))
            .a("mx.multi.test", v4(m)),
    );
    let fx = Fixture::new();
    let (fb, multi) = (rcpts("fb.test", 10), rcpts("multi.test", 4));
    campaign(&fx, &[fb.clone(), multi.clone()].concat());
    config(&fx, &dns, port, "", "");

    let out = fx.volley("send", Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(got(&s[0]), sorted(&fb), "every fb.test message at MX 20");
    assert!(s[1].command_log().is_empty(), "MX 30 not used");
    assert_eq!(got(&s[2]), sorted(&multi), "the MX host's live address");
    let ev = fx.events();
    assert_delivered_once(&ev, &[fb, multi].concat());
    for d in ev.iter().filter(|e| e["eventType"] == "Delivery") {
        assert!(
            d["delivery"]["smtpResponse"]
                .as_str()
                .unwrap()
                .starts_with("250"),
            "{d}"
        );
    }
}

#[test]
fn equal_preferences_share_the_load() {
    let (a, b) = (ip(3, 2), ip(3, 3));
    let (port, s) = servers(&[a, b]);
    let dns = DnsServer::start(
        Zones::new("test")
            .mx("eq.test", 10, "mx1.eq.test")
            .mx("eq.test", 10, "mx2.eq.test")
            .a("mx1.eq.test", v4(a))
            .a("mx2.eq.test", v4(b)),
    );
    let fx = Fixture::new();
    let list = rcpts("eq.test", 40);
    campaign(&fx, &list);
    // a connection per message: 40 opens, each picking among the equals
    config(&fx, &dns, port, "messages_per_connection = 1", "");

    let out = fx.volley("send", Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (at_a, at_b) = (got(&s[0]), got(&s[1]));
    assert!(
        !at_a.is_empty() && !at_b.is_empty(),
        "both equal-preference hosts get traffic: {} and {}",
        at_a.len(),
        at_b.len()
    );
    let mut all = [at_a, at_b].concat();
    all.sort();
    assert_eq!(all, sorted(&list), "each message once, at one of them");
    assert_delivered_once(&fx.events(), &list);
}

#[test]
fn domain_without_mx_is_reached_at_its_address() {
    // plain.test: A only; six.test: AAAA only (::1)
    let (a, six) = (ip(4, 2), IpAddr::V6(Ipv6Addr::LOCALHOST));
    let (port, s) = servers(&[a, six]);
    let dns = DnsServer::start(
        Zones::new("test")
            .a("plain.test", v4(a))
            .aaaa("six.test", Ipv6Addr::LOCALHOST),
    );
    let fx = Fixture::new();
    let (plain, v6) = (rcpts("plain.test", 4), rcpts("six.test", 3));
    campaign(&fx, &[plain.clone(), v6.clone()].concat());
    config(&fx, &dns, port, "", "");

    let out = fx.volley("send", Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(got(&s[0]), sorted(&plain), "A fallback");
    assert_eq!(got(&s[1]), sorted(&v6), "AAAA fallback");
    assert_delivered_once(&fx.events(), &[plain, v6].concat());
}

#[test]
fn null_mx_and_nonexistent_domain_bounce_without_connecting() {
    // null.test has an address too (a listening server): a null MX must
    // not fall back to it
    let (ok, trap) = (ip(5, 2), ip(5, 3));
    let (port, s) = servers(&[ok, trap]);
    let dns = DnsServer::start(
        Zones::new("test")
            .null_mx("null.test")
            .a("null.test", v4(trap))
            .nxdomain("gone.test")
            .mx("ok.test", 10, "mx.ok.test")
            .a("mx.ok.test", v4(ok)),
    );
    let fx = Fixture::new();
    let (null, gone, fine) = (
        rcpts("null.test", 3),
        rcpts("gone.test", 3),
        rcpts("ok.test", 2),
    );
    campaign(&fx, &[null.clone(), gone.clone(), fine.clone()].concat());
    config(&fx, &dns, port, "", "");

    let out = fx.volley("send", Duration::from_secs(30));
    assert_eq!(
        out.status.code(),
        Some(0),
        "bounces are final: {}",
        text(&out.stderr)
    );
    assert!(
        s[1].command_log().is_empty(),
        "null MX: no connection to the domain's address"
    );
    assert_eq!(got(&s[0]), sorted(&fine));

    let ev = fx.events();
    assert_delivered_once(&ev, &fine);
    assert_eq!(per_recipient(&ev, "DeliveryDelay").len(), 0);
    let bounces = by_rcpt(&ev, "Bounce");
    assert_eq!(
        bounces.keys().cloned().collect::<Vec<_>>(),
        sorted(&[null.clone(), gone.clone()].concat())
    );
    for (r, list) in &bounces {
        assert_eq!(list.len(), 1, "one Bounce for {r}");
        let b = &list[0]["bounce"];
        assert_eq!(b["bounceType"], "Permanent", "{b}");
        let br = &b["bouncedRecipients"][0];
        assert_eq!(br["emailAddress"], r.as_str());
        assert_eq!(br["action"], "failed");
        let diag = br["diagnosticCode"].as_str().unwrap();
        if r.ends_with("@null.test") {
            assert_eq!(br["status"], "5.1.10", "{b}");
            assert!(
                diag.contains("null MX") && diag.contains("null.test"),
                "{diag}"
            );
        } else {
            assert_eq!(br["status"], "5.1.2", "{b}");
            assert!(
                diag.contains("gone.test") && diag.contains("does not exist"),
                "{diag}"
            );
        }
    }
    assert!(
        per_recipient(&ev, "Delivery")
            .keys()
            .all(|r| r.ends_with("@ok.test"))
    );
}

#[test]
fn servfail_and_missing_host_address_defer() {
    // broken.test: SERVFAIL for the domain; sfhost.test: its MX host's
    // address lookup fails (SERVFAIL); noaddr.test: its MX host does not
    // exist; ok.test: delivered
    let ok = ip(6, 2);
    let (port, s) = servers(&[ok]);
    let dns = DnsServer::start(
        Zones::new("test")
            .servfail("broken.test")
            .mx("sfhost.test", 10, "mx.sfhost.test")
            .servfail("mx.sfhost.test")
            .mx("noaddr.test", 10, "nohost.noaddr.test")
            .nxdomain("nohost.noaddr.test")
            .mx("ok.test", 10, "mx.ok.test")
            .a("mx.ok.test", v4(ok)),
    );
    let fx = Fixture::new();
    let (broken, sfhost, noaddr, fine) = (
        rcpts("broken.test", 3),
        rcpts("sfhost.test", 2),
        rcpts("noaddr.test", 2),
        rcpts("ok.test", 2),
    );
    campaign(
        &fx,
        &[broken.clone(), sfhost.clone(), noaddr.clone(), fine.clone()].concat(),
    );
    config(&fx, &dns, port, "", "");

    let out = fx.volley("send", Duration::from_secs(30));
    assert_eq!(
        out.status.code(),
        Some(3),
        "deferred recipients remain: exit 3\n{}",
        text(&out.stderr)
    );
    assert_eq!(got(&s[0]), sorted(&fine));
    let ev = fx.events();
    assert_delivered_once(&ev, &fine);
    assert_eq!(
        per_recipient(&ev, "Bounce").len(),
        0,
        "temporary DNS failures never bounce"
    );
    let delays = by_rcpt(&ev, "DeliveryDelay");
    assert_eq!(
        delays.keys().cloned().collect::<Vec<_>>(),
        sorted(&[broken.clone(), sfhost.clone(), noaddr.clone()].concat())
    );
    for (r, list) in &delays {
        assert_eq!(list.len(), 1, "one DeliveryDelay for {r}");
        let d = &list[0]["deliveryDelay"];
        assert_eq!(d["delayType"], "TransientCommunicationFailure", "{d}");
        assert!(d["expirationTime"].as_str().unwrap().ends_with('Z'), "{d}");
        let dr = &d["delayedRecipients"][0];
        assert_eq!(dr["emailAddress"], r.as_str());
        let diag = dr["diagnosticCode"].as_str().unwrap();
        if r.ends_with("@noaddr.test") {
            assert_eq!(dr["status"], "4.4.4", "{d}");
            assert!(diag.contains("nohost.noaddr.test"), "{diag}");
        } else {
            assert_eq!(dr["status"], "4.4.3", "{d}");
            let host = if r.ends_with("@broken.test") {
                "broken.test"
            } else {
                "mx.sfhost.test"
            };
            assert!(diag.contains(host), "{diag}");
        }
    }
}

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

/// Samples of metric `name` in a Prometheus text exposition: (labels,
/// value).
fn samples(metrics: &str, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (labels, value) = match rest.strip_prefix('{') {
            Some(r) => {
                let (l, v) = parse_labels(r);
                (l, v)
            }
            None if rest.starts_with(' ') => (BTreeMap::new(), rest),
            None => continue, // a longer name with this prefix
        };
        let value: f64 = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        out.push((labels, value));
    }
    out
}

/// Parses `k="v",k2="v2"} rest` into the labels and `rest`.
fn parse_labels(s: &str) -> (BTreeMap<String, String>, &str) {
    let mut labels = BTreeMap::new();
    let mut rest = s;
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return (labels, r);
        }
        rest = rest.strip_prefix(',').unwrap_or(rest);
        let (key, r) = rest.split_once("=\"").expect("label key");
        let mut value = String::new();
        let mut chars = r.char_indices();
        let end = loop {
            match chars.next().expect("closing quote") {
                (i, '"') => break i,
                (_, '\\') => value.push(chars.next().expect("escaped char").1),
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.to_string(), value);
        rest = &r[end + 1..];
    }
}

/// The value of `name{site="<site>", ...}` (other labels as given).
fn site_value(metrics: &str, name: &str, site: &str, more: &[(&str, &str)]) -> Option<f64> {
    samples(metrics, name)
        .into_iter()
        .find(|(l, _)| {
            l.get("site").map(String::as_str) == Some(site)
                && more
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| v)
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
    let (code, metrics) = http_get(&fx.http_addr(), "/metrics").expect("GET /metrics");
    assert_eq!(code, 200);

    let shared_site = "mx:mx1.shared.test,mx2.shared.test";
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
