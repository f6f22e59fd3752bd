//! Helpers for the tests of `volley queue` on a running service: the
//! command, its JSON lines, a config routing everything to a scripted
//! server, small campaigns by id, and the held-recipients gauge.

use std::time::Duration;

use crate::scripted::ScriptedServer;
use crate::*;

pub fn queue(fx: &Fixture, args: &[&str]) -> std::process::Output {
    let mut all = vec!["queue"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--config", "config.toml"]);
    let out = run(fx.path(), &all, Duration::from_secs(60));
    assert_no_panic(&out);
    out
}

/// The JSON lines a command printed.
pub fn lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

pub fn delivered(fx: &Fixture) -> Vec<String> {
    per_recipient(&fx.events(), "Delivery")
        .into_keys()
        .collect()
}

pub fn config(fx: &Fixture, server: &ScriptedServer, more: &str) {
    fx.write(
        "config.toml",
        format!(
            "[spool]\ndir = \"spool\"\n[events]\njsonl = \"events.jsonl\"\n[http]\nlisten = \"127.0.0.1:{}\"\n[delivery]\nretry_first = \"1h\"\n{more}[routes]\n\"*\" = \"{}\"\n",
            free_port(),
            server.addr
        ),
    );
}

/// A campaign `id` of `recipients` (one per line) in `<id>.toml`.
pub fn campaign(fx: &Fixture, id: &str, recipients: &[&str]) -> String {
    let list = format!("{id}.csv");
    fx.write(&list, format!("email\n{}\n", recipients.join("\n")));
    fx.write("body.txt", "Hello\n");
    let file = format!("{id}.toml");
    fx.write(
        &file,
        format!(
            "id = \"{id}\"\nfrom = \"Sender <news@example.com>\"\nsubject = \"Hi\"\ntext = \"body.txt\"\nrecipients = \"{list}\"\n"
        ),
    );
    file
}

pub fn enqueue(fx: &Fixture, file: &str) {
    let out = run(
        fx.path(),
        &["enqueue", file, "--config", "config.toml"],
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

pub fn said(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

pub fn held_now(http: &str) -> Option<f64> {
    let (_, body) = http_get(http, "/metrics").ok()?;
    crate::prom::value(&body, "volley_held_recipients")
}
