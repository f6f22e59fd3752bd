//! SIGHUP: `volley run` reads its config again without dropping queued mail.
//! Recipients deferred against a dead route are delivered through the new
//! route once it is reloaded; a new rate limit shows in the site's metrics;
//! an invalid config on SIGHUP is refused with an error and the service goes
//! on with the old one.

use std::time::Duration;

use volley_tests::prom::{metrics_when, site_value};
use volley_tests::scripted::ScriptedServer;
use volley_tests::*;

fn hup(child: &Running) {
    // SAFETY: kill(2) with a pid we own; no memory is touched.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGHUP);
    }
}

#[test]
fn sighup_reloads_routes_and_policy_and_keeps_queued_mail() {
    let server = ScriptedServer::accept_all(true);
    let fx = Fixture::new();
    let listen = format!("127.0.0.1:{}", free_port());
    let dead = format!("127.0.0.1:{}", free_port());
    let write_config = |route: &str, rate: u32| {
        fx.write(
            "config.toml",
            format!(
                "[spool]\ndir = \"spool\"\n[events]\njsonl = \"events.jsonl\"\n[http]\nlisten = \"{listen}\"\n[delivery]\nmessages_per_second = {rate}\nretry_first = \"1s\"\nretry_factor = 1.0\n[routes]\n\"*\" = \"{route}\"\n"
            ),
        );
    };
    write_config(&dead, 100);
    let mut csv = String::from("email\n");
    for i in 0..20 {
        csv.push_str(&format!("r{i}@reload{}.test\n", i % 3));
    }
    fx.write("list.csv", csv);
    fx.campaign("list.csv", "Hi", "Hello\n", "");
    fx.enqueue();

    let mut service = spawn(fx.path(), &["run", "--config", "config.toml"]);
    wait_until(
        Duration::from_secs(30),
        "every recipient deferred against the dead route",
        || per_recipient(&fx.events(), "DeliveryDelay").len() == 20,
    );

    // an invalid config is refused; the service goes on
    fx.write("config.toml", "[delivery]\nspeed = 3\n");
    hup(&service);
    metrics_when(
        &listen,
        Duration::from_secs(10),
        "the reload refused",
        |m| m.contains("volley_config_reloads_total{result=\"invalid\"} 1"),
    );
    assert!(service.try_wait().unwrap().is_none(), "still running");
    let (code, _) = http_get(&listen, "/healthz").expect("healthz answers");
    assert_eq!(code, 200);

    // the new route and rate apply to the queued (deferred) mail
    write_config(&server.addr.to_string(), 7);
    hup(&service);
    wait_until(
        Duration::from_secs(30),
        "the deferred recipients delivered through the reloaded route",
        || per_recipient(&fx.events(), "Delivery").len() == 20,
    );
    let (_, metrics) = http_get(&listen, "/metrics").expect("metrics");
    assert!(
        metrics.contains("volley_config_reloads_total{result=\"applied\"} 1"),
        "{metrics}"
    );
    let site = server.addr.to_string();
    assert_eq!(
        site_value(&metrics, "volley_site_rate_limit", &site, &[]),
        Some(7.0),
        "{metrics}"
    );

    let out = stop(service);
    let err = text(&out.stderr);
    assert!(err.contains("the configuration is invalid"), "{err}");
    assert!(err.contains("speed"), "the error names the bad key: {err}");
    let mut copies = std::collections::HashMap::<String, usize>::new();
    for m in server.received() {
        for r in m.rcpts {
            *copies.entry(r).or_default() += 1;
        }
    }
    assert_eq!(copies.len(), 20);
    assert!(copies.values().all(|&n| n == 1), "each delivered once");
}
