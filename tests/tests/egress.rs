//! Egress sources and pools (`[egress]`): mail leaves from loopback
//! addresses 127.0.0.2 and 127.0.0.3 with each source's EHLO name, as a
//! scripted server on 127.0.0.1 sees from each connection's peer address;
//! a campaign's `pool`, a configuration set's `pool` and a message's
//! `X-Volley-Pool` keep their mail to that pool's source; a source whose address cannot be bound (192.0.2.1,
//! not on this machine) is taken out of its pool and reported
//! (`volley_egress_source_up 0`), and its pool delivers everything through
//! the others.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use volley_tests::queue_rig::{campaign, enqueue};
use volley_tests::scripted::ScriptedServer;
use volley_tests::*;

#[test]
fn mail_leaves_from_its_pools_sources_and_a_source_that_cannot_bind_is_taken_out() {
    let fx = Fixture::new();
    let server = ScriptedServer::accept_all(true);
    fx.write(
        "config.toml",
        format!(
            "[spool]\ndir = \"spool\"\n[events]\njsonl = \"events.jsonl\"\n[http]\nlisten = \"127.0.0.1:{}\"\n\
             [delivery]\nretry_first = \"1s\"\nretry_cap = \"2s\"\n\
             [routes]\n\"*\" = \"{}\"\n\
             [[egress.sources]]\nname = \"s2\"\naddress = \"127.0.0.2\"\nehlo = \"mta2.test\"\n\
             [[egress.sources]]\nname = \"s3\"\naddress = \"127.0.0.3\"\nehlo = \"mta3.test\"\n\
             [[egress.sources]]\nname = \"gone\"\naddress = \"192.0.2.1\"\nehlo = \"gone.test\"\n\
             [[egress.pools]]\nname = \"solo\"\nsources = [\"s3\"]\n\
             [configuration_sets.promo]\npool = \"solo\"\n",
            free_port(),
            server.addr
        ),
    );
    let http = fx.http_addr();
    let service = spawn(fx.path(), &["run", "--config", "config.toml"]);
    wait_until(Duration::from_secs(60), "the service", || {
        http_get(&http, "/healthz").is_ok()
    });
    let main: Vec<String> = (0..12).map(|i| format!("m{i}@d{}.test", i % 6)).collect();
    let main_refs: Vec<&str> = main.iter().map(String::as_str).collect();
    enqueue(&fx, &campaign(&fx, "main", &main_refs));
    // a campaign choosing its pool, and one through its configuration set
    let solo = campaign(&fx, "solo", &["s1@e1.test", "s2@e2.test"]);
    let file = std::fs::read_to_string(fx.path().join(&solo)).unwrap();
    fx.write(&solo, format!("pool = \"solo\"\n{file}"));
    enqueue(&fx, &solo);
    let promo = campaign(&fx, "promo", &["p1@e3.test", "p2@e4.test"]);
    let file = std::fs::read_to_string(fx.path().join(&promo)).unwrap();
    fx.write(&promo, format!("configuration_set = \"promo\"\n{file}"));
    enqueue(&fx, &promo);
    // a message choosing its pool with X-Volley-Pool (drop directory)
    let pickup = fx.path().join("spool/pickup");
    std::fs::write(
        pickup.join("tmp/m.eml"),
        "From: app@example.com\nTo: x1@e5.test\nX-Volley-Pool: solo\nSubject: hi\n\nhello\n",
    )
    .unwrap();
    std::fs::rename(pickup.join("tmp/m.eml"), pickup.join("new/m.eml")).unwrap();
    wait_until(Duration::from_secs(90), "all 17 delivered", || {
        per_recipient(&fx.events(), "Delivery").len() == 17
    });

    // who sent what: the peer address and EHLO name of its connection
    let peers = server.peers();
    let mut from: BTreeMap<String, (IpAddr, String)> = BTreeMap::new();
    for r in server.received() {
        for rcpt in &r.rcpts {
            from.insert(rcpt.clone(), peers[r.conn].clone());
        }
    }
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    for (rcpt, (addr, ehlo)) in &from {
        let want = if *addr == ip("127.0.0.2") {
            "mta2.test"
        } else {
            "mta3.test"
        };
        assert_eq!(ehlo, want, "{rcpt} from {addr}");
        assert!(
            *addr == ip("127.0.0.2") || *addr == ip("127.0.0.3"),
            "{rcpt} from {addr}"
        );
    }
    for r in [
        "s1@e1.test",
        "s2@e2.test",
        "p1@e3.test",
        "p2@e4.test",
        "x1@e5.test",
    ] {
        assert_eq!(from[r].0, ip("127.0.0.3"), "{r} is in pool solo");
    }
    let main_from: Vec<IpAddr> = main.iter().map(|r| from[r].0).collect();
    assert!(
        main_from.contains(&ip("127.0.0.2")) && main_from.contains(&ip("127.0.0.3")),
        "{main_from:?}"
    );

    // the source that cannot bind is out, and says so
    let (_, body) = http_get(&http, "/metrics").unwrap();
    let up = |s: &str| prom::value(&body, &format!("volley_egress_source_up{{source=\"{s}\"}}"));
    assert_eq!(
        (up("s2"), up("s3"), up("gone")),
        (Some(1.0), Some(1.0), Some(0.0)),
        "{body}"
    );
    assert!(
        body.contains(&format!("site=\"{}\",source=\"s3\"", server.addr)),
        "{body}"
    );
    let out = stop(service);
    let log = text(&out.stderr);
    assert!(
        log.contains("egress source out of service") && log.contains("192.0.2.1"),
        "{log}"
    );
}

#[test]
fn a_source_every_site_refuses_at_the_greeting_leaves_its_pool() {
    let fx = Fixture::new();
    let blocked: IpAddr = "127.0.0.2".parse().unwrap();
    let servers: Vec<ScriptedServer> = (0..3)
        .map(|_| {
            ScriptedServer::start_with(
                volley_tests::scripted::Options {
                    pipelining: true,
                    refuse_from: Some((
                        blocked,
                        "554 5.7.1 Service unavailable; client host blocked",
                    )),
                    ..Default::default()
                },
                std::sync::Arc::new(|_: &str, _: u32| "250 2.1.5 Ok".to_string()),
            )
        })
        .collect();
    // four domains at each of the three sites
    let mut routes = String::new();
    let mut rcpts = Vec::new();
    for (i, s) in servers.iter().enumerate() {
        for j in 0..4 {
            routes.push_str(&format!("\"x{i}{j}.test\" = \"{}\"\n", s.addr));
            rcpts.push(format!("r@x{i}{j}.test"));
        }
    }
    fx.write(
        "config.toml",
        format!(
            "[spool]\ndir = \"spool\"\n[events]\njsonl = \"events.jsonl\"\n[http]\nlisten = \"127.0.0.1:{}\"\n\
             [delivery]\nretry_first = \"1s\"\nretry_cap = \"2s\"\n\
             [routes]\n{routes}\
             [[egress.sources]]\nname = \"s2\"\naddress = \"127.0.0.2\"\nehlo = \"mta2.test\"\n\
             [[egress.sources]]\nname = \"s3\"\naddress = \"127.0.0.3\"\nehlo = \"mta3.test\"\n",
            free_port(),
        ),
    );
    let http = fx.http_addr();
    let service = spawn(fx.path(), &["run", "--config", "config.toml"]);
    wait_until(Duration::from_secs(60), "the service", || {
        http_get(&http, "/healthz").is_ok()
    });
    let refs: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    enqueue(&fx, &campaign(&fx, "c", &refs));
    wait_until(Duration::from_secs(90), "all 12 delivered", || {
        per_recipient(&fx.events(), "Delivery").len() == 12
    });
    // every message came from the source not refused; the refused one is out
    for s in &servers {
        let peers = s.peers();
        for r in s.received() {
            assert_eq!(peers[r.conn].0, "127.0.0.3".parse::<IpAddr>().unwrap());
        }
        assert!(
            peers.iter().any(|p| p.0 == blocked),
            "each site saw the blocked source"
        );
    }
    let (_, body) = http_get(&http, "/metrics").unwrap();
    let up = |s: &str| prom::value(&body, &format!("volley_egress_source_up{{source=\"{s}\"}}"));
    assert_eq!((up("s2"), up("s3")), (Some(0.0), Some(1.0)), "{body}");
    // no recipient bounced: a greeting refusal speaks of the connection
    assert!(per_recipient(&fx.events(), "Bounce").is_empty());
    let out = stop(service);
    let log = text(&out.stderr);
    assert!(
        log.contains("refused its sessions at the greeting"),
        "{log}"
    );
}

/// A service sending everything to one scripted server (each reply to the
/// end of data delayed by `tarpit`) from sources s2 (127.0.0.2) and s3
/// (127.0.0.3); `delivery` goes into `[delivery]`, `extra` at the end.
fn two_sources(
    tarpit: Duration,
    delivery: &str,
    extra: &str,
) -> (Fixture, ScriptedServer, volley_tests::process::Running) {
    let fx = Fixture::new();
    let server = ScriptedServer::start_with(
        volley_tests::scripted::Options {
            pipelining: true,
            tarpit: Some((volley_tests::scripted::Stage::DataEnd, tarpit)),
            ..Default::default()
        },
        std::sync::Arc::new(|_: &str, _: u32| "250 2.1.5 Ok".to_string()),
    );
    fx.write(
        "config.toml",
        format!(
            "[spool]\ndir = \"spool\"\n[events]\njsonl = \"events.jsonl\"\n[http]\nlisten = \"127.0.0.1:{}\"\n\
             [delivery]\nretry_first = \"1s\"\n{delivery}\n\
             [routes]\n\"*\" = \"{}\"\n\
             [[egress.sources]]\nname = \"s2\"\naddress = \"127.0.0.2\"\n\
             [[egress.sources]]\nname = \"s3\"\naddress = \"127.0.0.3\"\n{extra}\n",
            free_port(),
            server.addr
        ),
    );
    let http = fx.http_addr();
    let service = spawn(fx.path(), &["run", "--config", "config.toml"]);
    wait_until(Duration::from_secs(60), "the service", || {
        http_get(&http, "/healthz").is_ok()
    });
    (fx, server, service)
}

#[test]
fn a_sites_connection_cap_holds_over_all_its_sources() {
    // each source × site may open 3 connections and send 100 messages a
    // second; the site's caps over both sources are 2 connections and 5
    // messages a second: the server never sees more than 2 connections at
    // once, both sources send, and 40 deliveries span at least 39 / 5 s
    let (fx, server, service) = two_sources(
        Duration::from_millis(100),
        "connections = 3\nsite_connections = 2\nmessages_per_second = 100\n\
         site_messages_per_second = 5\nmessages_per_connection = 4",
        "",
    );
    let rcpts: Vec<String> = (0..40).map(|i| format!("r{i}@d{}.test", i % 8)).collect();
    let refs: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    enqueue(&fx, &campaign(&fx, "capped", &refs));
    wait_until(Duration::from_secs(90), "all 40 delivered", || {
        per_recipient(&fx.events(), "Delivery").len() == 40
    });
    stop(service);
    assert!(
        server.max_concurrent() <= 2,
        "{} connections at once",
        server.max_concurrent()
    );
    let from: Vec<IpAddr> = server.peers().iter().map(|(a, _)| *a).collect();
    for s in ["127.0.0.2", "127.0.0.3"] {
        assert!(
            from.contains(&s.parse().unwrap()),
            "{s} sent nothing: {from:?}"
        );
    }
    let at: Vec<std::time::SystemTime> = fx
        .events()
        .iter()
        .filter(|e| e["eventType"] == "Delivery")
        .map(|e| humantime::parse_rfc3339(e["delivery"]["timestamp"].as_str().unwrap()).unwrap())
        .collect();
    let span = at
        .iter()
        .max()
        .unwrap()
        .duration_since(*at.iter().min().unwrap())
        .unwrap();
    assert!(span >= Duration::from_secs(7), "40 deliveries in {span:?}");
}

#[test]
fn room_under_a_sites_cap_goes_round_its_sources() {
    // pool a (127.0.0.2) fills the site's cap of 2 connections with a
    // slow campaign; then pool b's (127.0.0.3) mail arrives: it gets a
    // connection while a still has mail, rather than after a ran dry
    let (fx, server, service) = two_sources(
        Duration::from_millis(700),
        "connections = 3\nsite_connections = 2",
        "[[egress.pools]]\nname = \"a\"\nsources = [\"s2\"]\n\
         [[egress.pools]]\nname = \"b\"\nsources = [\"s3\"]",
    );
    let with_pool = |id: &str, pool: &str, n: usize| {
        let rcpts: Vec<String> = (0..n).map(|i| format!("{id}{i}@d{}.test", i % 4)).collect();
        let refs: Vec<&str> = rcpts.iter().map(String::as_str).collect();
        let file = campaign(&fx, id, &refs);
        let text = std::fs::read_to_string(fx.path().join(&file)).unwrap();
        fx.write(&file, format!("pool = \"{pool}\"\n{text}"));
        file
    };
    enqueue(&fx, &with_pool("a", "a", 16));
    wait_until(
        Duration::from_secs(60),
        "pool a holds both connections",
        || server.open_now() == 2,
    );
    enqueue(&fx, &with_pool("b", "b", 2));
    wait_until(Duration::from_secs(90), "all 18 delivered", || {
        per_recipient(&fx.events(), "Delivery").len() == 18
    });
    stop(service);
    assert!(server.max_concurrent() <= 2, "{}", server.max_concurrent());
    let peers = server.peers();
    let order: Vec<IpAddr> = server.received().iter().map(|r| peers[r.conn].0).collect();
    let (a, b): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
    let first_b = order.iter().position(|x| *x == b).expect("b sent");
    let last_a = order.iter().rposition(|x| *x == a).expect("a sent");
    assert!(first_b < last_a, "b waited for a to run dry: {order:?}");
}
