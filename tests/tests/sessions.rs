//! Connection life and its metrics against the scripted server: a
//! connection with nothing to send closes with QUIT after the `idle`
//! timeout while the service runs on; the site's connection gauge follows,
//! and the latency histograms count each delivery and transaction.

use std::time::Duration;

use volley_tests::prom::{metrics_when, value};
use volley_tests::scripted::ScriptedServer;
use volley_tests::*;

#[test]
fn idle_connections_close_with_quit_and_metrics_follow() {
    let server = ScriptedServer::accept_all(true);
    let fx = Fixture::new();
    let mut csv = String::from("email\n");
    for i in 0..6 {
        csv.push_str(&format!("r{i}@idle.test\n"));
    }
    fx.write("list.csv", csv);
    fx.campaign("list.csv", "Hi", "Hello\n", "");
    let site = server.addr.to_string();
    fx.config(
        &site,
        "[delivery]\nconnections = 2\n[delivery.timeouts]\nidle = \"1s\"\n",
    );
    fx.enqueue();
    let http = fx.http_addr();
    let mut service = spawn(fx.path(), &["run", "--config", "config.toml"]);
    wait_until(Duration::from_secs(30), "all delivered", || {
        per_recipient(&fx.events(), "Delivery").len() == 6
    });
    assert!(server.connections() >= 1);

    // the service runs on; its connections go idle and close
    wait_until(Duration::from_secs(10), "idle connections closed", || {
        server.open_now() == 0
    });
    let last = server
        .received()
        .iter()
        .map(|m| m.at)
        .max()
        .expect("received");
    let closed_after = last.elapsed();
    assert!(
        service.try_wait().expect("try_wait").is_none(),
        "the service is still running after the idle close"
    );
    let quits = server.command_log().iter().filter(|l| *l == "QUIT").count();
    assert_eq!(
        quits,
        server.connections(),
        "every connection ended with QUIT: {:?}",
        server.command_log()
    );
    assert!(
        closed_after >= Duration::from_millis(900),
        "closed {closed_after:?} after the last delivery: not before the idle timeout"
    );

    // the server counts a connection out at QUIT, the engine once the
    // 221 is read: the gauge may lag a moment behind
    let labels = format!("{{site=\"{site}\"}}");
    let gauge = format!("volley_site_connections{labels}");
    let body = metrics_when(
        &http,
        Duration::from_secs(5),
        "the connection gauge at 0",
        |b| value(b, &gauge) == Some(0.0),
    );
    assert_eq!(
        value(&body, &format!("volley_site_attempts_total{labels}")),
        Some(6.0),
        "{body}"
    );
    assert_eq!(
        value(&body, "volley_delivery_latency_seconds_count"),
        Some(6.0),
        "{body}"
    );
    assert_eq!(
        value(&body, "volley_smtp_transaction_seconds_count"),
        Some(6.0),
        "one transaction per personalized message: {body}"
    );
    let latency = value(&body, "volley_delivery_latency_seconds_sum").expect("latency sum");
    assert!(latency > 0.0 && latency < 6.0 * 30.0, "{latency}");

    stop(service);
}
