//! Configuration sets: a campaign's events carry the set it names, or the
//! config's default (`mail.tags["ses:configuration-set"]`, as SES); a
//! campaign naming a set the config lacks is refused before anything is
//! spooled, with the name.

use std::time::Duration;

use volley_tests::scripted::ScriptedServer;
use volley_tests::*;

fn config(fx: &Fixture, route: &str) {
    fx.write(
        "config.toml",
        format!(
            "[spool]\ndir = \"spool\"\n[events]\njsonl = \"events.jsonl\"\ndefault_configuration_set = \"main\"\n[http]\nlisten = \"127.0.0.1:{}\"\n[configuration_sets.main]\n[configuration_sets.promo]\n[routes]\n\"*\" = \"{route}\"\n",
            free_port()
        ),
    );
}

fn sets_of(events: &[serde_json::Value]) -> Vec<String> {
    let mut sets: Vec<String> = events
        .iter()
        .map(|e| e["mail"]["tags"]["ses:configuration-set"].to_string())
        .collect();
    sets.dedup();
    sets
}

/// Sends `list` with the campaign's `extra` keys; its events.
fn send(server: &ScriptedServer, list: &str, extra: &str) -> Vec<serde_json::Value> {
    let fx = Fixture::new();
    config(&fx, &server.addr.to_string());
    fx.write("list.csv", list);
    fx.campaign("list.csv", "Hi", "Hello\n", extra);
    fx.send_ok(Duration::from_secs(60));
    fx.events()
}

#[test]
fn events_carry_the_campaigns_set_or_the_default() {
    let server = ScriptedServer::accept_all(true);
    let ev = send(
        &server,
        "email\na@x.test\nb@y.test\n",
        "configuration_set = \"promo\"",
    );
    assert_eq!(ev.len(), 4, "a Send and a Delivery each: {ev:?}");
    assert_eq!(sets_of(&ev), vec!["[\"promo\"]"]);
    // a campaign that names none gets the default
    let ev = send(&server, "email\nc@x.test\n", "");
    assert_eq!(ev.len(), 2);
    assert_eq!(sets_of(&ev), vec!["[\"main\"]"]);
}

#[test]
fn an_unknown_set_is_refused_with_its_name_before_anything_is_spooled() {
    let server = ScriptedServer::accept_all(true);
    let fx = Fixture::new();
    config(&fx, &server.addr.to_string());
    fx.write("list.csv", "email\na@x.test\n");
    fx.campaign("list.csv", "Hi", "Hello\n", "configuration_set = \"gone\"");
    for cmd in ["send", "enqueue"] {
        let out = fx.volley(cmd, Duration::from_secs(60));
        let err = text(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{cmd}: {err}");
        assert!(
            err.contains("`configuration_set`")
                && err.contains("\"gone\"")
                && err.contains("main, promo"),
            "{cmd}: {err}"
        );
    }
    assert!(server.received().is_empty());
    assert!(!fx.path().join("spool").exists() || fx.events().is_empty());
}
