//! Event destinations of configuration sets: filters by set, event type
//! and tag; an `sns` webhook whose endpoint (Python, checking every
//! signature with the served certificate) confirms the subscription and
//! then is down (connection refused, then HTTP 500) in the middle of a
//! campaign and still gets every event; kill -9 during publication; events
//! an endpoint refuses for good in the dead-letter file; a removed
//! destination's cursor released.

use std::collections::BTreeMap;
use std::time::Duration;

use volley_tests::receiver::Receiver;
use volley_tests::scripted::ScriptedServer;
use volley_tests::*;

/// A server that bounces recipients whose address starts with `bad`.
fn server() -> ScriptedServer {
    ScriptedServer::bouncing("bad")
}

/// Writes campaign `id` (file `ID.toml`, list `ID.csv`) with `extra` keys.
fn campaign(fx: &Fixture, id: &str, rcpts: &[String], extra: &str) {
    let mut csv = String::from("email\n");
    for r in rcpts {
        csv.push_str(r);
        csv.push('\n');
    }
    fx.write(&format!("{id}.csv"), csv);
    fx.write("body.txt", "Hello\n");
    fx.write(
        &format!("{id}.toml"),
        format!(
            "id = \"{id}\"\nfrom = \"Sender <news@example.com>\"\nsubject = \"Hi\"\ntext = \"body.txt\"\nrecipients = \"{id}.csv\"\n{extra}\n"
        ),
    );
}

fn volley(fx: &Fixture, args: &[&str]) -> std::process::Output {
    let out = run(fx.path(), args, Duration::from_secs(120));
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    out
}

fn send(fx: &Fixture, id: &str) {
    volley(
        fx,
        &["send", &format!("{id}.toml"), "--config", "config.toml"],
    );
}

/// (eventType, recipient) of each event, sorted.
fn keys(events: &[serde_json::Value]) -> Vec<(String, String)> {
    let mut k: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["eventType"].as_str().unwrap_or("").to_string(),
                e["mail"]["destination"][0]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    k.sort();
    k
}

fn rcpts(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}@x.test")).collect()
}

#[test]
fn destinations_get_the_events_of_their_set_types_and_tags() {
    let server = server();
    let fx = Fixture::new();
    let dests = r#"
[events]
jsonl = "events.jsonl"
default_configuration_set = "main"
[configuration_sets.main]
[[configuration_sets.main.destinations]]
name = "bounces"
event_types = ["BOUNCE"]
jsonl = { path = "bounces.jsonl" }
[[configuration_sets.main.destinations]]
name = "news"
event_types = ["Send", "Delivery", "Bounce"]
tags = { kind = "newsletter" }
jsonl = { path = "news.jsonl" }
[configuration_sets.other]
[[configuration_sets.other.destinations]]
name = "all"
event_types = ["SEND", "DELIVERY", "BOUNCE", "DELIVERY_DELAY", "RENDERING_FAILURE"]
jsonl = { path = "other.jsonl", rotate_bytes = 1, keep = 100 }
"#;
    let config = |with_news: bool| {
        let d = if with_news {
            dests.to_string()
        } else {
            let start = dests
                .find("[[configuration_sets.main.destinations]]\nname = \"news\"")
                .unwrap();
            let end = dests.find("[configuration_sets.other]").unwrap();
            format!("{}{}", &dests[..start], &dests[end..])
        };
        fx.write(
            "config.toml",
            format!(
                "[spool]\ndir = \"spool\"\n[http]\nlisten = \"127.0.0.1:{}\"\n{d}\n[routes]\n\"*\" = \"{}\"\n",
                free_port(),
                server.addr
            ),
        );
    };
    config(true);
    campaign(
        &fx,
        "c1",
        &["a1@x.test".into(), "bad1@x.test".into()],
        "[tags]\nkind = \"newsletter\"",
    );
    campaign(
        &fx,
        "c2",
        &["a2@x.test".into(), "bad2@x.test".into()],
        "[tags]\nkind = \"promo\"",
    );
    campaign(
        &fx,
        "c3",
        &["a3@x.test".into(), "bad3@x.test".into()],
        "configuration_set = \"other\"\n[tags]\nkind = \"newsletter\"",
    );
    for c in ["c1", "c2", "c3"] {
        send(&fx, c);
    }
    let file = |name: &str| events(&fx.path().join(name));
    assert_eq!(
        file("events.jsonl").len(),
        12,
        "the events file has every event"
    );
    let k = |pairs: &[(&str, &str)]| {
        let mut v: Vec<(String, String)> = pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        keys(&file("bounces.jsonl")),
        k(&[("Bounce", "bad1@x.test"), ("Bounce", "bad2@x.test")]),
        "bounces of the main set only"
    );
    assert_eq!(
        keys(&file("news.jsonl")),
        k(&[
            ("Send", "a1@x.test"),
            ("Delivery", "a1@x.test"),
            ("Send", "bad1@x.test"),
            ("Bounce", "bad1@x.test")
        ]),
        "the main set's newsletter campaign only"
    );
    // `other` rotates before every batch: its events may span files
    let rotated = |name: &str| {
        let mut all = Vec::new();
        for g in 0.. {
            let p = fx.path().join(format!("{name}.{g}"));
            if !p.exists() {
                break;
            }
            all.extend(events(&p));
        }
        all.extend(file(name));
        all
    };
    assert_eq!(
        keys(&rotated("other.jsonl")),
        k(&[
            ("Send", "a3@x.test"),
            ("Delivery", "a3@x.test"),
            ("Send", "bad3@x.test"),
            ("Bounce", "bad3@x.test")
        ]),
    );
    let cursors = || {
        let mut c: Vec<String> = std::fs::read_dir(fx.path().join("spool/cursors"))
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| !n.starts_with('.'))
            .collect();
        c.sort();
        c
    };
    assert_eq!(
        cursors(),
        [
            "dest.main.bounces",
            "dest.main.news",
            "dest.other.all",
            "jsonl"
        ]
    );
    // the destination goes from the config: its cursor goes too, the
    // others go on from theirs
    config(false);
    campaign(
        &fx,
        "c4",
        &["bad4@x.test".into()],
        "[tags]\nkind = \"newsletter\"",
    );
    send(&fx, "c4");
    assert_eq!(cursors(), ["dest.main.bounces", "dest.other.all", "jsonl"]);
    assert_eq!(
        file("news.jsonl").len(),
        4,
        "a removed destination receives nothing"
    );
    assert_eq!(file("bounces.jsonl").len(), 3);
    assert_eq!(file("events.jsonl").len(), 14);
    // `other` rotates before every batch: the rotated files and the live
    // one hold its events once, oldest first
    campaign(
        &fx,
        "c5",
        &["a5@x.test".into()],
        "configuration_set = \"other\"",
    );
    send(&fx, "c5");
    assert!(fx.path().join("other.jsonl.0").exists(), "rotated");
    assert_eq!(file("other.jsonl").len(), 2);
    assert_eq!(
        keys(&rotated("other.jsonl")),
        k(&[
            ("Send", "a3@x.test"),
            ("Delivery", "a3@x.test"),
            ("Send", "bad3@x.test"),
            ("Bounce", "bad3@x.test"),
            ("Send", "a5@x.test"),
            ("Delivery", "a5@x.test")
        ]),
    );
    for e in rotated("other.jsonl") {
        assert_eq!(e["mail"]["tags"]["ses:configuration-set"][0], "other");
    }
}

/// The config of a service whose set `main` has one webhook destination
/// (`webhook` is its inline table's body), delivering at `rate` per second.
fn webhook_config(fx: &Fixture, server: &ScriptedServer, webhook: &str, rate: u32) {
    fx.write(
        "config.toml",
        format!(
            "[spool]\ndir = \"spool\"\n[http]\nlisten = \"127.0.0.1:{}\"\n[delivery]\nmessages_per_second = {rate}\n[events]\njsonl = \"events.jsonl\"\ndefault_configuration_set = \"main\"\n[configuration_sets.main]\n[[configuration_sets.main.destinations]]\nname = \"hook\"\nevent_types = [\"Send\", \"Delivery\", \"Bounce\", \"DeliveryDelay\", \"Rendering Failure\"]\nwebhook = {{ {webhook} }}\n[routes]\n\"*\" = \"{}\"\n",
            free_port(),
            server.addr
        ),
    );
}

/// Waits until the service delivered everything and the receiver holds
/// as many events as the events file.
fn wait_for_all(fx: &Fixture, receiver: &Receiver, total: usize) {
    wait_until(
        Duration::from_secs(120),
        "every event at the endpoint",
        || {
            let file = fx.events();
            file.len() == total && receiver.events_by_id().len() == total
        },
    );
}

/// Every event of the events file reached the endpoint, each id once
/// with one event.
fn assert_same_events(fx: &Fixture, receiver: &Receiver) {
    let got: Vec<serde_json::Value> = receiver.events_by_id().into_values().collect();
    assert_eq!(keys(&got), keys(&fx.events()));
}

#[test]
fn an_sns_webhook_gets_every_event_signed_through_an_outage() {
    let server = server();
    let fx = Fixture::new();
    let port = free_port();
    let out = fx.path().join("received.jsonl");
    let mut receiver = Receiver::start(port, &out);
    webhook_config(
        &fx,
        &server,
        &format!(
            "url = \"{}\", format = \"sns\", timeout = \"5s\"",
            receiver.url()
        ),
        40,
    );
    let mut list = rcpts("r", 150);
    list.extend(rcpts("bad", 10));
    campaign(&fx, "c", &list, "");
    volley(&fx, &["enqueue", "c.toml", "--config", "config.toml"]);
    let service = spawn(fx.path(), &["run", "--config", "config.toml"]);
    wait_until(
        Duration::from_secs(60),
        "the subscription confirmed and some events",
        || receiver.of_kind("notification").len() >= 20,
    );
    // down: connections refused
    receiver.stop();
    let failures = "volley_destination_failures_total{configuration_set=\"main\",destination=\"hook\",kind=\"webhook\"}";
    wait_until(Duration::from_secs(60), "a refused connection", || {
        fx.metric(failures) >= 1.0
    });
    // up but failing: HTTP 500
    receiver.failing(true);
    receiver.restart();
    wait_until(Duration::from_secs(60), "an HTTP 500", || {
        !receiver.of_kind("failed").is_empty()
    });
    receiver.failing(false);
    wait_for_all(&fx, &receiver, 320);
    wait_until(Duration::from_secs(30), "lag back to zero", || {
        fx.metric(
            "volley_destination_lag_entries{configuration_set=\"main\",destination=\"hook\",kind=\"webhook\"}",
        ) == 0.0
    });
    stop(service);

    assert!(
        receiver.of_kind("bad").is_empty(),
        "{:?}",
        receiver.of_kind("bad")
    );
    assert_same_events(&fx, &receiver);
    // the subscription was confirmed before the first notification, once
    let records = receiver.records();
    let kinds: Vec<&str> = records
        .iter()
        .map(|r| r["kind"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k == "confirmation").count(), 1);
    assert_eq!(
        kinds.iter().position(|k| *k != "confirmation"),
        Some(1),
        "{kinds:?}"
    );
    assert!(
        records[0]["reply"]
            .as_str()
            .unwrap()
            .contains("<SubscriptionArn>arn:aws:sns:us-east-1:000000000000:main:")
    );
    for r in receiver.of_kind("notification") {
        assert_eq!(r["topic"], "arn:aws:sns:us-east-1:000000000000:main");
        assert_eq!(r["headers"]["x-amz-sns-message-type"], "Notification");
        assert_eq!(r["headers"]["x-amz-sns-message-id"], r["id"]);
        assert!(
            r["unsubscribe"]
                .as_str()
                .unwrap()
                .contains("Action=Unsubscribe")
        );
    }
    // the events file stays exactly once
    assert_eq!(fx.events().len(), 320);
}

#[test]
fn kill_9_during_publication_resumes_every_destination_at_its_cursor() {
    let server = server();
    let fx = Fixture::new();
    let port = free_port();
    let out = fx.path().join("received.jsonl");
    let receiver = Receiver::start(port, &out);
    webhook_config(
        &fx,
        &server,
        &format!("url = \"{}\", format = \"raw\"", receiver.url()),
        200,
    );
    campaign(&fx, "c", &rcpts("r", 600), "");
    volley(&fx, &["enqueue", "c.toml", "--config", "config.toml"]);
    let mut service = spawn(fx.path(), &["run", "--config", "config.toml"]);
    wait_until(Duration::from_secs(60), "some events published", || {
        receiver.events_by_id().len() >= 100
    });
    service.kill().expect("kill -9");
    let _ = service.wait();
    assert!(
        fx.events().len() < 1200,
        "the kill came too late to test anything"
    );
    let service = spawn(fx.path(), &["run", "--config", "config.toml"]);
    wait_for_all(&fx, &receiver, 1200);
    stop(service);
    assert_same_events(&fx, &receiver);
    for r in receiver.of_kind("raw") {
        assert_eq!(r["headers"]["x-amz-sns-rawdelivery"], "true");
    }
    // exactly once in the events file, however the kill fell
    let file = keys(&fx.events());
    let mut once = file.clone();
    once.dedup();
    assert_eq!(file, once);
}

#[test]
fn events_an_endpoint_refuses_go_to_the_dead_letter_file() {
    let server = server();
    let fx = Fixture::new();
    let port = free_port();
    let out = fx.path().join("received.jsonl");
    let receiver = Receiver::start(port, &out);
    receiver.refusing("Bounce", true);
    webhook_config(
        &fx,
        &server,
        &format!(
            "url = \"{}\", format = \"raw\", headers = {{ Authorization = \"Bearer t0ken\" }}",
            receiver.url()
        ),
        1000,
    );
    campaign(
        &fx,
        "c",
        &[
            "a@x.test".into(),
            "bad1@x.test".into(),
            "bad2@x.test".into(),
        ],
        "",
    );
    send(&fx, "c");
    let dead = events(&fx.path().join("dead-letter/main.hook.jsonl"));
    let mut bounced: Vec<&str> = dead
        .iter()
        .map(|d| {
            assert_eq!(d["reason"], "HTTP 400");
            assert_eq!(d["destination"], "main.hook");
            assert!(d["messageId"].as_str().unwrap().len() == 36);
            assert_eq!(d["event"]["eventType"], "Bounce");
            d["event"]["mail"]["destination"][0].as_str().unwrap()
        })
        .collect();
    bounced.sort();
    assert_eq!(bounced, ["bad1@x.test", "bad2@x.test"]);
    let taken: BTreeMap<String, serde_json::Value> = receiver.events_by_id();
    assert_eq!(taken.len(), 4, "three Sends and a Delivery");
    for r in receiver.of_kind("raw") {
        assert_eq!(r["headers"]["authorization"], "Bearer t0ken");
    }
}
