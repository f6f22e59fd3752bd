//! The `amqp` event destination against a real RabbitMQ (started by the
//! test, on its own ports): persistent messages with publisher confirms,
//! the SNS body signed (checked by the `pika` consumer with the served
//! certificate), and the broker killed and restarted in the middle of a
//! campaign: afterwards the queue holds every event (each id with one
//! event), none missing; events no queue takes are dead-lettered.

use std::collections::BTreeMap;
use std::time::Duration;

use volley_tests::rabbit::Rabbit;
use volley_tests::scripted::ScriptedServer;
use volley_tests::*;

#[test]
fn a_broker_killed_mid_campaign_loses_no_event() {
    let server = ScriptedServer::bouncing("bad");
    let mut rabbit = Rabbit::start();
    rabbit.declare("ses", "ses-events", "main.#");
    let fx = Fixture::new();
    fx.write(
        "config.toml",
        format!(
            "[spool]\ndir = \"spool\"\n[http]\nlisten = \"127.0.0.1:{}\"\n[delivery]\nmessages_per_second = 60\n[events]\njsonl = \"events.jsonl\"\ndefault_configuration_set = \"main\"\n[configuration_sets.main]\n[[configuration_sets.main.destinations]]\nname = \"broker\"\nevent_types = [\"Send\", \"Delivery\", \"Bounce\"]\namqp = {{ url = \"{}\", exchange = \"ses\", format = \"sns\", timeout = \"5s\" }}\n[[configuration_sets.main.destinations]]\nname = \"unbound\"\nevent_types = [\"Bounce\"]\namqp = {{ url = \"{}\", exchange = \"nobody-listens\", format = \"raw\" }}\n[routes]\n\"*\" = \"{}\"\n",
            free_port(),
            rabbit.url(),
            rabbit.url(),
            server.addr
        ),
    );
    let mut csv = String::from("email\n");
    for i in 0..240 {
        csv.push_str(&format!("r{i}@x.test\n"));
    }
    for i in 0..10 {
        csv.push_str(&format!("bad{i}@x.test\n"));
    }
    fx.write("list.csv", csv);
    fx.campaign("list.csv", "Hi", "Hello\n", "");
    fx.enqueue();
    let service = spawn(fx.path(), &["run", "--config", "config.toml"]);
    let labels = "{configuration_set=\"main\",destination=\"broker\",kind=\"amqp\"}";
    let published = format!("volley_destination_events_published_total{labels}");
    wait_until(Duration::from_secs(120), "some events confirmed", || {
        fx.metric(&published) >= 60.0
    });
    rabbit.kill();
    let failures = format!("volley_destination_failures_total{labels}");
    wait_until(Duration::from_secs(60), "a failed publish", || {
        fx.metric(&failures) >= 1.0
    });
    rabbit.restart();
    wait_until(
        Duration::from_secs(120),
        "everything delivered and published",
        || {
            fx.events().len() == 500
                && fx.metric(&format!("volley_destination_lag_entries{labels}")) == 0.0
                && fx.metric(&published) >= 500.0
        },
    );
    let unbound = "{configuration_set=\"main\",destination=\"unbound\",kind=\"amqp\"}";
    wait_until(
        Duration::from_secs(60),
        "the unroutable bounces dead-lettered",
        || fx.metric(&format!("volley_destination_dead_lettered_total{unbound}")) >= 10.0,
    );
    let out = fx.path().join("drained.jsonl");
    rabbit.drain("ses-events", &out);
    stop(service);

    let mut by_id: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for m in events(&out) {
        assert_eq!(m["delivery_mode"], 2, "persistent");
        assert_eq!(m["verified"], true, "the SNS signature checks out");
        let body = &m["body"];
        assert_eq!(body["Type"], "Notification");
        assert_eq!(body["MessageId"], m["message_id"]);
        let event: serde_json::Value =
            serde_json::from_str(body["Message"].as_str().unwrap()).unwrap();
        assert_eq!(m["type"], event["eventType"]);
        assert_eq!(
            m["routing_key"],
            format!("main.{}", event["eventType"].as_str().unwrap())
        );
        let id = m["message_id"].as_str().unwrap().to_string();
        if let Some(seen) = by_id.get(&id) {
            assert_eq!(seen, &event, "id {id} came with two events");
        }
        by_id.insert(id, event);
    }
    let key = |e: &serde_json::Value| {
        (
            e["eventType"].as_str().unwrap().to_string(),
            e["mail"]["destination"][0].as_str().unwrap().to_string(),
        )
    };
    let mut got: Vec<_> = by_id.values().map(key).collect();
    let mut want: Vec<_> = fx.events().iter().map(key).collect();
    got.sort();
    want.sort();
    assert_eq!(got.len(), 500);
    assert_eq!(got, want, "every event, none missing");
    // what no queue takes is not dropped silently: it is dead-lettered
    let dead = events(&fx.path().join("dead-letter/main.unbound.jsonl"));
    let mut bounced: Vec<String> = dead
        .iter()
        .map(|d| {
            assert!(
                d["reason"].as_str().unwrap().starts_with("unroutable"),
                "{d}"
            );
            d["event"]["mail"]["destination"][0]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    bounced.sort();
    bounced.dedup();
    assert_eq!(bounced.len(), 10, "each bounce at least once");
}
