//! A site that refuses or fails connections is one decision, not one per
//! recipient, and a refusal of the connection never bounces a recipient:
//!
//! - a `5xx` greeting defers (status made temporary, `IPFailure`), and
//!   after `site_down_after` failed opens the site is down: its whole queue
//!   is deferred with one log line and `volley_site_up` 0, without a
//!   connection per recipient;
//! - a down site is probed on the retry schedule and resumes by itself
//!   when a probe opens a session;
//! - a `5xx` to EHLO and HELO defers too, and the mail is delivered later.

use std::time::Duration;

use volley_tests::fault_rig::*;
use volley_tests::prom::{metrics_when, site_value};
use volley_tests::scripted::Options;
use volley_tests::*;

const BLOCKLISTED: &str = "554 5.7.1 scripted: 192.0.2.1 is listed at bl.example.test";

#[test]
fn a_refused_greeting_defers_and_takes_the_site_down_once() {
    let server = server(Options {
        pipelining: true,
        refuse_greeting: Some((u32::MAX, BLOCKLISTED)),
        ..Default::default()
    });
    let fx = Fixture::new();
    let n = 2000;
    let rcpts = campaign(&fx, n);
    // no retry within the test: each recipient is deferred exactly once
    fx.config(
        &server.addr.to_string(),
        "[delivery]\nconnections = 4\nsite_down_after = 3\nretry_first = \"1h\"\n",
    );
    fx.enqueue();
    let service = spawn(fx.path(), &["run", "--config", "config.toml"]);
    wait_until(Duration::from_secs(90), "every recipient deferred", || {
        per_recipient(&fx.events(), "DeliveryDelay").len() == n
    });
    let site = server.addr.to_string();
    let metrics = metrics_when(
        &fx.http_addr(),
        Duration::from_secs(20),
        "the site shown down",
        |m| site_value(m, "volley_site_up", &site, &[]) == Some(0.0),
    );
    let out = stop(service);
    let ev = fx.events();
    assert!(
        of_type(&ev, "Bounce").is_empty(),
        "a refused greeting bounces nobody"
    );
    let delays = per_recipient(&ev, "DeliveryDelay");
    for r in &rcpts {
        assert_eq!(delays.get(r), Some(&1), "{r}: one DeliveryDelay");
    }
    for d in of_type(&ev, "DeliveryDelay") {
        let dd = &d["deliveryDelay"];
        assert_eq!(dd["delayedRecipients"][0]["status"], "4.7.1", "{d}");
        assert_eq!(dd["delayType"], "IPFailure", "{d}");
        assert!(delay_diag(d).contains("554 5.7.1"), "{}", delay_diag(d));
    }
    // one decision: the connections that took it down (each of the 4
    // connections tries at most twice before the third failure decides),
    // not one per recipient
    assert!(
        server.connections() <= 3 + 2 * 4,
        "{} connections for {n} recipients",
        server.connections()
    );
    let log = text(&out.stderr);
    assert_eq!(log.matches("site is down").count(), 1, "{log}");
    assert_eq!(
        site_value(
            &metrics,
            "volley_site_outcomes_total",
            &site,
            &[("outcome", "deferred")]
        ),
        Some(n as f64)
    );
}

#[test]
fn a_down_site_is_probed_on_a_backoff_and_resumes_by_itself() {
    // five refused connections: three take the site down, the first two
    // probes fail, the third opens a session
    let server = server(Options {
        pipelining: true,
        refuse_greeting: Some((5, BLOCKLISTED)),
        ..Default::default()
    });
    let fx = Fixture::new();
    let n = 50;
    let rcpts = campaign(&fx, n);
    fx.config(
        &server.addr.to_string(),
        "[delivery]\nconnections = 2\nsite_down_after = 3\nretry_first = \"1s\"\nretry_factor = 2.0\nretry_jitter = 0.0\n",
    );
    fx.enqueue();
    let service = spawn(fx.path(), &["run", "--config", "config.toml"]);
    wait_until(Duration::from_secs(90), "every recipient delivered", || {
        per_recipient(&fx.events(), "Delivery").len() == n
    });
    let site = server.addr.to_string();
    metrics_when(
        &fx.http_addr(),
        Duration::from_secs(20),
        "the site up",
        |m| site_value(m, "volley_site_up", &site, &[]) == Some(1.0),
    );
    let out = stop(service);
    assert_each_delivered_once(&fx, &server, &rcpts);
    let ev = fx.events();
    assert!(of_type(&ev, "Bounce").is_empty());
    // deferred when the site went down and again after each of the two
    // failed probes (plus its own failed open for a recipient that was
    // tried before the site was down); never once per connection attempt
    let per_rcpt = per_recipient(&ev, "DeliveryDelay");
    assert!(
        per_rcpt.values().all(|&d| d <= 4),
        "deferred at most once per probe: {per_rcpt:?}"
    );
    let log = text(&out.stderr);
    assert_eq!(log.matches("site is down").count(), 1, "{log}");
    // the five refusals, then the sessions that delivered
    assert!(
        server.connections() <= 5 + 1 + 2 + 2,
        "{} connections",
        server.connections()
    );
}

#[test]
fn a_refused_ehlo_defers_and_the_mail_is_delivered_later() {
    let (server, fx, rcpts) = deliver_all(
        Options {
            pipelining: true,
            // as often as it takes the site down (site_down_after = 3)
            refuse_ehlo: Some((3, "550 5.7.1 scripted: HELO name rejected")),
            ..Default::default()
        },
        3,
        "connections = 1\nsite_down_after = 3",
    );
    let ev = fx.events();
    assert!(of_type(&ev, "Bounce").is_empty(), "EHLO refusal bounced");
    let delays = of_type(&ev, "DeliveryDelay");
    assert!(!delays.is_empty(), "the refused session deferred its mail");
    for d in &delays {
        assert_eq!(
            d["deliveryDelay"]["delayedRecipients"][0]["status"],
            "4.7.1"
        );
    }
    assert_each_delivered_once(&fx, &server, &rcpts);
}
