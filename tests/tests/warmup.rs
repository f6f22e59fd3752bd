//! Warm-up of an egress source (`warmup = [3, 6]`): on its first day it
//! sends a site 3 messages and the pool's established source the rest; a
//! pool of the warming source alone has its mail over the allowance wait
//! for the next day (deferred, named as warm-up, never bounced); `volley
//! queue warmups` shows the day and allowance; `volley queue warmup
//! --complete` makes the source established, after which the waiting mail
//! goes out from it; the progress survives a kill -9.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use volley_tests::queue_rig::{campaign, enqueue, lines, queue, said};
use volley_tests::scripted::ScriptedServer;
use volley_tests::*;

#[test]
fn a_warming_source_sends_its_allowance_and_the_rest_waits_or_goes_elsewhere() {
    let fx = Fixture::new();
    let server = ScriptedServer::accept_all(true);
    fx.write(
        "config.toml",
        format!(
            "[spool]\ndir = \"spool\"\n[events]\njsonl = \"events.jsonl\"\n[http]\nlisten = \"127.0.0.1:{}\"\n\
             [delivery]\nretry_first = \"1h\"\n\
             [routes]\n\"*\" = \"{}\"\n\
             [[egress.sources]]\nname = \"old\"\naddress = \"127.0.0.2\"\n\
             [[egress.sources]]\nname = \"new\"\naddress = \"127.0.0.3\"\nwarmup = [3, 6]\n\
             [[egress.pools]]\nname = \"fresh\"\nsources = [\"new\"]\n",
            free_port(),
            server.addr
        ),
    );
    let http = fx.http_addr();
    let mut service = spawn(fx.path(), &["run", "--config", "config.toml"]);
    wait_until(Duration::from_secs(60), "the service", || {
        http_get(&http, "/healthz").is_ok()
    });
    // ten domains, one site: each batch leaves from the next source
    let a: Vec<String> = (0..10).map(|i| format!("a@d{i}.test")).collect();
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    enqueue(&fx, &campaign(&fx, "a", &refs));
    wait_until(Duration::from_secs(60), "ten delivered", || {
        per_recipient(&fx.events(), "Delivery").len() == 10
    });
    let from = |server: &ScriptedServer| -> BTreeMap<String, IpAddr> {
        let peers = server.peers();
        let mut out = BTreeMap::new();
        for r in server.received() {
            for rcpt in &r.rcpts {
                out.insert(rcpt.clone(), peers[r.conn].0);
            }
        }
        out
    };
    let new: IpAddr = "127.0.0.3".parse().unwrap();
    let by_new = from(&server).values().filter(|ip| **ip == new).count();
    assert_eq!(by_new, 3, "the warming source sent its day-1 allowance");

    // a pool of the warming source alone: over the allowance, mail waits
    let fresh = campaign(&fx, "fresh", &["f@e0.test", "f@e1.test"]);
    let file = std::fs::read_to_string(fx.path().join(&fresh)).unwrap();
    fx.write(&fresh, format!("pool = \"fresh\"\n{file}"));
    enqueue(&fx, &fresh);
    wait_until(Duration::from_secs(60), "two waiting", || {
        per_recipient(&fx.events(), "DeliveryDelay").len() == 2
    });
    let events = fx.events();
    let delay = events
        .iter()
        .find(|e| e["eventType"] == "DeliveryDelay")
        .unwrap();
    assert_eq!(delay["deliveryDelay"]["delayType"], "SendingDeferral");
    let diag = delay["deliveryDelay"]["delayedRecipients"][0]["diagnosticCode"]
        .as_str()
        .unwrap();
    assert!(diag.contains("warm-up"), "{diag}");
    assert!(per_recipient(&events, "Bounce").is_empty());
    let standing = lines(&queue(&fx, &["warmups"]));
    assert_eq!(standing.len(), 1, "{standing:?}");
    let s = &standing[0];
    assert_eq!(
        (&s["source"], &s["day"], &s["allowance"]),
        (
            &serde_json::json!("new"),
            &serde_json::json!(1),
            &serde_json::json!(3)
        ),
        "{s}"
    );
    let (_, body) = http_get(&http, "/metrics").unwrap();
    assert_eq!(
        prom::value(&body, "volley_egress_warmup_allowance{source=\"new\"}"),
        Some(3.0),
        "{body}"
    );

    // complete: established; the waiting mail goes out from it now
    assert_eq!(
        said(&queue(&fx, &["warmup", "--source", "new", "--complete"])),
        "source new: warm-up complete (established)"
    );
    said(&queue(&fx, &["retry", "--all"]));
    wait_until(Duration::from_secs(60), "twelve delivered", || {
        per_recipient(&fx.events(), "Delivery").len() == 12
    });
    let f = from(&server);
    assert_eq!((f["f@e0.test"], f["f@e1.test"]), (new, new));
    let out = queue(&fx, &["warmup", "--source", "old", "--pause"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an established source has no warm-up"
    );

    // the progress survives a kill -9
    service.kill().unwrap();
    let _ = service.wait();
    let standing = lines(&queue(&fx, &["warmups"]));
    assert_eq!(standing[0]["complete"], true, "{standing:?}");
    let out = run(
        fx.path(),
        &["status", "--config", "config.toml"],
        Duration::from_secs(60),
    );
    assert!(
        text(&out.stdout).contains("warm-up: source new day 1 of 2: established"),
        "{}",
        text(&out.stdout)
    );
}
