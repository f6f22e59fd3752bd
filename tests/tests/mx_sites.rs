//! MX routing and sites against the in-process DNS server
//! ([`volley_tests::dns`]): the lowest MX preference is used first, the next
//! MX is tried when one refuses connections, equal preferences share the
//! load, a domain without MX is reached at its A/AAAA address, a null MX or
//! a nonexistent domain bounces without any connection, SERVFAIL (and an MX
//! host without an address) defers. Site rollup is in `site_rollup.rs`.
//!
//! Every receiving server of a test listens on the same port (the engine's
//! `smtp_port`) on its own loopback address `127.91.<test>.<host>`
//! ([`volley_tests::mx_rig`]); an address where nothing was bound refuses
//! connections.

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use volley_tests::dns::{DnsServer, Zones};
use volley_tests::mx_rig::*;
use volley_tests::*;

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

    fx.send_ok(Duration::from_secs(30));
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

    fx.send_ok(Duration::from_secs(30));
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

    fx.send_ok(Duration::from_secs(30));
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

    fx.send_ok(Duration::from_secs(30));
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

#[test]
fn mx_hosts_at_internal_addresses_are_refused_by_default() {
    let a = ip(8, 2);
    let (port, s) = servers(&[a]);
    let dns = DnsServer::start(
        Zones::new("test")
            .mx("inside.test", 10, "mx.inside.test")
            .a("mx.inside.test", v4(a)),
    );
    let fx = Fixture::new();
    let r = rcpts("inside.test", 2);
    campaign(&fx, &r);
    config(&fx, &dns, port, "", "");
    let cfg = std::fs::read_to_string(fx.path().join("config.toml")).unwrap();
    fx.write(
        "config.toml",
        cfg.replace("allow_internal = true", "allow_internal = false"),
    );

    let out = fx.volley("send", Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(s[0].connections(), 0, "nothing connected to {a}");
    let ev = fx.events();
    let delays = per_recipient(&ev, "DeliveryDelay");
    for rcpt in &r {
        assert_eq!(delays.get(rcpt), Some(&1), "{rcpt} deferred");
    }
    for d in ev.iter().filter(|e| e["eventType"] == "DeliveryDelay") {
        let dr = &d["deliveryDelay"]["delayedRecipients"][0];
        assert_eq!(dr["status"], "4.4.4", "{d}");
        let diag = dr["diagnosticCode"].as_str().unwrap();
        assert!(diag.contains("only internal addresses"), "{diag}");
    }
}
