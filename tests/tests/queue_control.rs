//! `volley queue` on a running `volley run`: `retry` makes deferred
//! recipients (of a domain, a site, or all) due now instead of at their
//! retry time (an hour away here), and probes a down site at once; every
//! action is in the action log (who, what, when, what it did), which
//! survives the service's kill -9; without a running service `retry` says
//! so and exits 1.

use std::sync::Arc;
use std::time::Duration;

use volley_tests::queue_rig::*;
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

    // where a recipient is, and the oldest deferred
    let found = lines(&queue(&fx, &["inspect", "Later1@a.test"]));
    assert_eq!(found.len(), 1, "{found:?}");
    let f = &found[0];
    assert_eq!(
        (&f["email"], &f["campaign"], &f["state"], &f["attempts"]),
        (
            &serde_json::json!("later1@a.test"),
            &serde_json::json!("test-campaign"),
            &serde_json::json!("deferred"),
            &serde_json::json!(1)
        ),
        "{f}"
    );
    assert!(
        f["next_attempt"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{f}"
    );
    assert!(f["accepted"].as_str().is_some(), "{f}");
    assert_eq!(f["last"]["outcome"], "deferred");
    assert!(
        f["last"]["reply"]
            .as_str()
            .unwrap()
            .contains("Try again later"),
        "{f}"
    );
    let oldest = lines(&queue(&fx, &["deferred", "--limit", "2"]));
    assert_eq!(oldest.len(), 2, "{oldest:?}");
    assert!(oldest.iter().all(|o| o["state"] == "deferred"));
    assert!(lines(&queue(&fx, &["inspect", "nobody@a.test"])).is_empty());
    let top = said(&queue(&fx, &["top"]));
    let site = server.addr.to_string();
    assert!(
        top.contains(&format!("100.0%  {site} (3 deferred)")),
        "{top}"
    );

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

    // everything deferred: b.test's recipient, set aside while its domain
    // is held, delivered once released
    said(&queue(&fx, &["hold", "--domain", "b.test"]));
    let out = queue(&fx, &["retry", "--all"]);
    assert_eq!(
        text(&out.stdout).trim(),
        "1 recipients tried now (every deferred recipient)"
    );
    let http = fx.http_addr();
    wait_until(Duration::from_secs(60), "b.test's recipient held", || {
        held_now(&http) == Some(1.0)
    });
    assert_eq!(delivered(&fx).len(), 2);
    said(&queue(&fx, &["release", "--domain", "b.test"]));
    wait_until(Duration::from_secs(60), "b.test delivered", || {
        delivered(&fx).len() == 3 && held_now(&http) == Some(0.0)
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
    assert_eq!(log.len(), 5, "{log:?}");
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    for (entry, (action, target, result)) in log.iter().zip([
        (
            "retry",
            serde_json::json!({"domain": "A.TEST"}),
            serde_json::json!({"recipients": 2}),
        ),
        (
            "retry",
            serde_json::json!({"domain": "nothing.test"}),
            serde_json::json!({"recipients": 0}),
        ),
        (
            "hold",
            serde_json::json!({"domain": "b.test"}),
            serde_json::json!({"changed": true}),
        ),
        (
            "retry",
            serde_json::json!("all"),
            serde_json::json!({"recipients": 1}),
        ),
        (
            "release",
            serde_json::json!({"domain": "b.test"}),
            serde_json::json!({"changed": true}),
        ),
    ]) {
        assert_eq!(entry["action"], action);
        assert_eq!(entry["target"], target);
        assert_eq!(entry["result"], result);
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

#[test]
fn holds_of_a_domain_a_campaign_and_a_site_survive_restarts_until_released() {
    let fx = Fixture::new();
    let server = ScriptedServer::accept_all(true);
    config(&fx, &server, "");
    let http = fx.http_addr();
    let mut service = spawn(fx.path(), &["run", "--config", "config.toml"]);
    wait_until(Duration::from_secs(60), "the service", || {
        http_get(&http, "/healthz").is_ok()
    });
    assert_eq!(
        said(&queue(&fx, &["hold", "--domain", "Held.test"])),
        "domain Held.test held"
    );
    // a campaign held before it is spooled
    assert_eq!(
        said(&queue(&fx, &["hold", "--campaign", "later"])),
        "campaign later held"
    );
    assert_eq!(
        said(&queue(&fx, &["hold", "--campaign", "later"])),
        "campaign later was already held"
    );
    let first = campaign(
        &fx,
        "first",
        &["ok1@free.test", "h1@held.test", "h2@held.test"],
    );
    enqueue(&fx, &first);
    let later = campaign(&fx, "later", &["l1@free.test"]);
    enqueue(&fx, &later);
    wait_until(
        Duration::from_secs(60),
        "free.test delivered, 3 held",
        || delivered(&fx) == ["ok1@free.test"] && held_now(&http) == Some(3.0),
    );
    let (_, body) = http_get(&http, "/metrics").unwrap();
    assert!(
        body.contains("volley_holds{kind=\"domain\",name=\"held.test\"} 1\n"),
        "{body}"
    );
    assert!(body.contains("volley_holds{kind=\"campaign\",name=\"later\"} 1\n"));
    // held recipients were never offered
    assert_eq!(
        server.offered().keys().collect::<Vec<_>>(),
        ["ok1@free.test"]
    );

    // the holds survive a kill -9: the same recipients are held again
    service.kill().unwrap();
    let _ = service.wait();
    let status = run(
        fx.path(),
        &["status", "--config", "config.toml"],
        Duration::from_secs(60),
    );
    let shown = said(&status);
    assert!(shown.contains("held: domain held.test"), "{shown}");
    assert!(shown.contains("held: campaign later"), "{shown}");
    let holds = said(&queue(&fx, &["holds"]));
    assert_eq!(holds, "domain held.test\ncampaign later");
    // no service: inspection reads the spool itself
    let found = lines(&queue(&fx, &["inspect", "h1@held.test"]));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (
            &found[0]["state"],
            &found[0]["campaign"],
            &found[0]["attempts"]
        ),
        (
            &serde_json::json!("queued"),
            &serde_json::json!("first"),
            &serde_json::json!(0)
        ),
        "{found:?}"
    );
    assert!(found[0]["last"].is_null(), "{found:?}");
    assert!(lines(&queue(&fx, &["deferred"])).is_empty());
    let service = spawn(fx.path(), &["run", "--config", "config.toml"]);
    wait_until(Duration::from_secs(60), "3 held after the restart", || {
        held_now(&http) == Some(3.0)
    });
    assert_eq!(delivered(&fx), ["ok1@free.test"]);

    // released: delivered
    assert_eq!(
        said(&queue(&fx, &["release", "--domain", "held.test"])),
        "domain held.test released"
    );
    wait_until(Duration::from_secs(60), "held.test delivered", || {
        delivered(&fx).len() == 3 && held_now(&http) == Some(1.0)
    });
    assert_eq!(
        said(&queue(&fx, &["release", "--campaign", "later"])),
        "campaign later released"
    );
    wait_until(
        Duration::from_secs(60),
        "the later campaign delivered",
        || delivered(&fx).len() == 4 && held_now(&http) == Some(0.0),
    );

    // a whole site: its queue waits
    let site = server.addr.to_string();
    assert_eq!(
        said(&queue(&fx, &["hold", "--site", &site])),
        format!("site {site} held")
    );
    let third = campaign(&fx, "third", &["t1@free.test", "t2@other.test"]);
    enqueue(&fx, &third);
    wait_until(Duration::from_secs(60), "the site's queue held", || {
        held_now(&http) == Some(2.0)
    });
    assert_eq!(delivered(&fx).len(), 4);
    said(&queue(&fx, &["release", "--site", &site]));
    wait_until(
        Duration::from_secs(60),
        "the third campaign delivered",
        || delivered(&fx).len() == 6 && held_now(&http) == Some(0.0),
    );
    assert_eq!(
        said(&queue(&fx, &["release", "--domain", "never.test"])),
        "domain never.test was not held"
    );
    stop(service);

    assert_eq!(said(&queue(&fx, &["holds"])), "");
    let log = said(&queue(&fx, &["log"]));
    let actions: Vec<(String, serde_json::Value)> = log
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["action"].as_str().unwrap().to_string(),
                v["target"].clone(),
            )
        })
        .collect();
    let want = [
        ("hold", serde_json::json!({"domain": "Held.test"})),
        ("hold", serde_json::json!({"campaign": "later"})),
        ("hold", serde_json::json!({"campaign": "later"})),
        ("release", serde_json::json!({"domain": "held.test"})),
        ("release", serde_json::json!({"campaign": "later"})),
        ("hold", serde_json::json!({"site": site})),
        ("release", serde_json::json!({"site": site})),
        ("release", serde_json::json!({"domain": "never.test"})),
    ];
    let want: Vec<(String, serde_json::Value)> =
        want.into_iter().map(|(a, t)| (a.to_string(), t)).collect();
    assert_eq!(actions, want);
}

#[test]
fn a_rerouted_domain_goes_to_its_new_next_hop_across_restarts_until_cleared() {
    let fx = Fixture::new();
    let old = ScriptedServer::start(true, defer_once());
    let new = ScriptedServer::accept_all(true);
    config(&fx, &old, "");
    let http = fx.http_addr();
    let mut service = spawn(fx.path(), &["run", "--config", "config.toml"]);
    wait_until(Duration::from_secs(60), "the service", || {
        http_get(&http, "/healthz").is_ok()
    });
    let first = campaign(&fx, "first", &["r1@x.test", "r2@y.test"]);
    enqueue(&fx, &first);
    wait_until(
        Duration::from_secs(60),
        "both deferred at the old hop",
        || per_recipient(&fx.events(), "DeliveryDelay").len() == 2,
    );
    let to = new.addr.to_string();
    assert_eq!(
        said(&queue(&fx, &["reroute", "--domain", "X.test", "--to", &to])),
        format!("X.test rerouted to {to}")
    );
    said(&queue(&fx, &["retry", "--domain", "x.test"]));
    wait_until(
        Duration::from_secs(60),
        "r1 delivered at the new hop",
        || delivered(&fx) == ["r1@x.test"],
    );
    assert!(new.received().iter().any(|m| m.rcpts == ["r1@x.test"]));
    assert_eq!(old.offered().get("r1@x.test"), Some(&1));

    // recipients queued at the old site go the new way: the old site is
    // held, so only a give-back can deliver them
    let site = old.addr.to_string();
    said(&queue(&fx, &["hold", "--site", &site]));
    let second = campaign(&fx, "second", &["s1@y.test"]);
    enqueue(&fx, &second);
    wait_until(Duration::from_secs(60), "s1 held at the old site", || {
        held_now(&http) == Some(1.0)
    });
    said(&queue(&fx, &["reroute", "--domain", "y.test", "--to", &to]));
    wait_until(
        Duration::from_secs(60),
        "s1 delivered at the new hop",
        || delivered(&fx).contains(&"s1@y.test".to_string()) && held_now(&http) == Some(0.0),
    );
    assert!(!old.offered().contains_key("s1@y.test"));

    // a target that is not host:port
    let out = queue(&fx, &["reroute", "--domain", "z.test", "--to", "nowhere"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not host:port"),
        "{}",
        text(&out.stderr)
    );

    // across a kill -9
    service.kill().unwrap();
    let _ = service.wait();
    let listed = said(&queue(&fx, &["reroutes"]));
    assert_eq!(listed, format!("x.test {to}\ny.test {to}"));
    let status = said(&run(
        fx.path(),
        &["status", "--config", "config.toml"],
        Duration::from_secs(60),
    ));
    assert!(
        status.contains(&format!("rerouted: x.test to {to}")),
        "{status}"
    );
    let service = spawn(fx.path(), &["run", "--config", "config.toml"]);
    wait_until(Duration::from_secs(60), "the service", || {
        http_get(&http, "/healthz").is_ok()
    });
    let third = campaign(&fx, "third", &["t1@x.test"]);
    enqueue(&fx, &third);
    wait_until(
        Duration::from_secs(60),
        "t1 delivered at the new hop",
        || delivered(&fx).contains(&"t1@x.test".to_string()),
    );
    assert!(new.received().iter().any(|m| m.rcpts == ["t1@x.test"]));

    // cleared: back to the old hop (which defers a first offer)
    assert_eq!(
        said(&queue(&fx, &["reroute", "--domain", "x.test", "--clear"])),
        "x.test: reroute cleared"
    );
    said(&queue(&fx, &["release", "--site", &site]));
    let fourth = campaign(&fx, "fourth", &["f1@x.test"]);
    enqueue(&fx, &fourth);
    wait_until(Duration::from_secs(60), "f1 offered at the old hop", || {
        old.offered().contains_key("f1@x.test")
    });
    assert!(!new.offered().contains_key("f1@x.test"));
    stop(service);
    assert_eq!(said(&queue(&fx, &["reroutes"])), format!("y.test {to}"));
}
