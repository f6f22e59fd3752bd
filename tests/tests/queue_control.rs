//! `volley queue` on a running `volley run`: `retry` makes deferred
//! recipients (of a domain, a site, or all) due now instead of at their
//! retry time (an hour away here), and probes a down site at once; every
//! action is in the action log (who, what, when, what it did), which
//! survives the service's kill -9; without a running service `retry` says
//! so and exits 1.

use std::sync::Arc;
use std::time::Duration;

use volley_tests::scripted::{self, RcptScript, ScriptedServer};
use volley_tests::*;

/// Defers every address the first time it is offered, accepts it after.
fn defer_once() -> Arc<RcptScript> {
    Arc::new(|_: &str, seen: u32| {
        if seen == 0 {
            "451 4.3.0 Try again later".to_string()
        } else {
            "250 2.1.5 Ok".to_string()
        }
    })
}

fn queue(fx: &Fixture, args: &[&str]) -> std::process::Output {
    let mut all = vec!["queue"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--config", "config.toml"]);
    let out = run(fx.path(), &all, Duration::from_secs(60));
    assert_no_panic(&out);
    out
}

fn delivered(fx: &Fixture) -> Vec<String> {
    per_recipient(&fx.events(), "Delivery")
        .into_keys()
        .collect()
}

fn config(fx: &Fixture, server: &ScriptedServer, more: &str) {
    fx.write(
        "config.toml",
        format!(
            "[spool]\ndir = \"spool\"\n[events]\njsonl = \"events.jsonl\"\n[http]\nlisten = \"127.0.0.1:{}\"\n[delivery]\nretry_first = \"1h\"\n{more}[routes]\n\"*\" = \"{}\"\n",
            free_port(),
            server.addr
        ),
    );
}

#[test]
fn retry_now_by_domain_then_all_and_every_action_logged() {
    let fx = Fixture::new();
    let server = ScriptedServer::start(true, defer_once());
    config(&fx, &server, "");
    fx.write(
        "list.csv",
        "email\nlater1@a.test\nlater2@a.test\nlater3@b.test\n",
    );
    fx.campaign("list.csv", "Hi", "Hello\n", "");
    fx.enqueue();
    let service = spawn(fx.path(), &["run", "--config", "config.toml"]);
    wait_until(Duration::from_secs(60), "every recipient deferred", || {
        per_recipient(&fx.events(), "DeliveryDelay").len() == 3
    });
    assert!(delivered(&fx).is_empty());

    // one domain (its name in any case): its two recipients, not b.test's
    let out = queue(&fx, &["retry", "--domain", "A.TEST"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "2 recipients tried now (deferred recipients of A.TEST)"
    );
    wait_until(Duration::from_secs(60), "a.test delivered", || {
        delivered(&fx).len() == 2
    });
    assert_eq!(delivered(&fx), ["later1@a.test", "later2@a.test"]);

    // a domain with nothing deferred
    let out = queue(&fx, &["retry", "--domain", "nothing.test"]);
    assert!(text(&out.stdout).starts_with("0 recipients tried now"));

    // everything deferred: b.test's recipient
    let out = queue(&fx, &["retry", "--all"]);
    assert_eq!(
        text(&out.stdout).trim(),
        "1 recipients tried now (every deferred recipient)"
    );
    wait_until(Duration::from_secs(60), "b.test delivered", || {
        delivered(&fx).len() == 3
    });
    // one attempt each after the deferral, no more
    let offered = server.offered();
    assert!(offered.values().all(|&n| n == 2), "{offered:?}");
    assert_eq!(offered.len(), 3, "{offered:?}");

    // a retry needs one of --domain, --site, --all
    let out = queue(&fx, &["retry"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    // the log survives the service's kill -9, and says who, what, when
    let mut service = service;
    service.kill().unwrap();
    let _ = service.wait();
    let out = queue(&fx, &["log"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let log: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(log.len(), 3, "{log:?}");
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    for (entry, (target, n)) in log.iter().zip([
        (serde_json::json!({"domain": "A.TEST"}), 2),
        (serde_json::json!({"domain": "nothing.test"}), 0),
        (serde_json::json!("all"), 1),
    ]) {
        assert_eq!(entry["action"], "retry");
        assert_eq!(entry["target"], target);
        assert_eq!(entry["result"]["recipients"], n);
        assert_eq!(entry["uid"], me);
        assert!(entry["pid"].as_i64().is_some_and(|p| p > 0), "{entry}");
        assert!(entry["at"].as_str().unwrap().ends_with('Z'), "{entry}");
    }

    // no service: retry says so
    let out = queue(&fx, &["retry", "--all"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no running service"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn retry_now_of_a_down_site_probes_it_at_once() {
    let fx = Fixture::new();
    // the first connection is refused at greeting: the site goes down
    // (one failed open is enough here) and its next probe is an hour away
    let server = ScriptedServer::start_with(
        scripted::Options {
            pipelining: true,
            greeting_421: 1,
            ..Default::default()
        },
        Arc::new(|_: &str, _: u32| "250 2.1.5 Ok".to_string()),
    );
    config(&fx, &server, "site_down_after = 1\n");
    fx.write("list.csv", "email\nr1@a.test\nr2@b.test\n");
    fx.campaign("list.csv", "Hi", "Hello\n", "");
    fx.enqueue();
    let service = spawn(fx.path(), &["run", "--config", "config.toml"]);
    wait_until(Duration::from_secs(60), "both deferred", || {
        per_recipient(&fx.events(), "DeliveryDelay").len() == 2
    });
    let site = server.addr.to_string();
    let out = queue(&fx, &["retry", "--site", &site]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        format!("2 recipients tried now (deferred recipients of site {site})")
    );
    wait_until(Duration::from_secs(60), "both delivered", || {
        delivered(&fx).len() == 2
    });
    stop(service);
}
