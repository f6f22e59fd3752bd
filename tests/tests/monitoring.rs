//! The monitoring kit in `monitoring/`: the Prometheus alerting rules pass
//! `promtool check rules` and their unit tests (`promtool test rules`: each
//! alert fires on the series it is for and stays quiet on the others), the
//! example Prometheus configuration passes `promtool check config`, every
//! expression of the Grafana dashboard is valid PromQL (`promtool` checks
//! it as a recording rule), the dashboard covers what an operator watches,
//! and every Volley metric and label the rules and the dashboard use is
//! served by a real `volley run` after traffic with deliveries, deferrals,
//! bounces, an event destination and a warming egress source.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use volley_tests::prom::{metrics_when, parse_labels, value};
use volley_tests::scripted::{RcptScript, ScriptedServer};
use volley_tests::*;

fn kit() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../monitoring")
}

/// Runs `promtool ARGS` in `dir`; panics with its output unless it succeeds.
fn promtool(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool runs (scripts/install-test-deps.sh installs it)");
    let text = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

fn dashboard() -> serde_json::Value {
    let path = kit().join("grafana/volley-dashboard.json");
    let raw = std::fs::read_to_string(&path).expect("dashboard");
    serde_json::from_str(&raw).expect("the dashboard is JSON")
}

/// Every (panel title, expression) of the dashboard.
fn expressions(d: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().expect("a target has an expr");
            out.push((
                p["title"].as_str().unwrap_or("").to_string(),
                expr.to_string(),
            ));
        }
    }
    out
}

/// An expression with Grafana's variables as Prometheus would get them.
fn as_promql(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$instance", ".*")
        .replace("$site", ".*")
}

#[test]
fn alerting_rules_pass_promtool_and_their_unit_tests() {
    let dir = kit().join("prometheus");
    let checked = promtool(&dir, &["check", "rules", "volley-alerts.yml"]);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = promtool(&dir, &["test", "rules", "volley-alerts.test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
    promtool(&dir, &["check", "config", "prometheus.example.yml"]);
    // the alerts an operator must have
    let rules = std::fs::read_to_string(dir.join("volley-alerts.yml")).unwrap();
    for alert in [
        "VolleySpoolUnhealthy",
        "VolleySiteDown",
        "VolleyDestinationLagGrowing",
        "VolleyBounceRateHigh",
        "VolleyComplaintRateHigh",
    ] {
        assert!(rules.contains(&format!("alert: {alert}\n")), "{alert}");
    }
}

#[test]
fn unit_tests_of_the_rules_can_fail() {
    // the same tests against rules whose site-down alert waits an hour:
    // promtool must report the alert it expected and did not get
    let fx = Fixture::new();
    let dir = kit().join("prometheus");
    let rules = std::fs::read_to_string(dir.join("volley-alerts.yml")).unwrap();
    let late = rules.replacen(
        "expr: volley_site_up == 0\n        for: 15m",
        "expr: volley_site_up == 0\n        for: 1h",
        1,
    );
    assert_ne!(late, rules);
    fx.write("volley-alerts.yml", late);
    std::fs::copy(
        dir.join("volley-alerts.test.yml"),
        fx.path().join("volley-alerts.test.yml"),
    )
    .unwrap();
    let out = Command::new("promtool")
        .args(["test", "rules", "volley-alerts.test.yml"])
        .current_dir(fx.path())
        .output()
        .expect("promtool runs");
    let said = text(&out.stdout) + &text(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("VolleySiteDown"), "{said}");
}

#[test]
fn dashboard_expressions_are_promql_and_cover_the_operator_view() {
    let d = dashboard();
    assert_eq!(d["uid"], "volley-overview");
    let exprs = expressions(&d);
    assert!(exprs.len() >= 20, "{}", exprs.len());
    // every expression, as a recording rule, passes promtool
    let fx = Fixture::new();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, e)) in exprs.iter().enumerate() {
        let quoted = serde_json::to_string(&as_promql(e)).unwrap();
        rules.push_str(&format!(
            "      - record: dashboard:expr{i}\n        expr: {quoted}\n"
        ));
    }
    fx.write("dashboard-rules.yml", rules);
    let checked = promtool(fx.path(), &["check", "rules", "dashboard-rules.yml"]);
    assert!(
        checked.contains(&format!("{} rules found", exprs.len())),
        "{checked}"
    );
    // what the operator watches, each in some panel
    let titles: Vec<String> = exprs.iter().map(|(t, _)| t.to_lowercase()).collect();
    for topic in [
        "delivered per second",
        "outcomes by type",
        "queue depth",
        "deferrals by site",
        "throttling",
        "destination lag",
        "spool healthy",
        "bounce rate",
        "complaint rate",
    ] {
        assert!(
            titles.iter().any(|t| t.contains(topic)),
            "no panel for {topic}"
        );
    }
    // every panel queries the chosen data source and instances
    for p in d["panels"].as_array().unwrap() {
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        for t in p["targets"].as_array().unwrap() {
            let e = t["expr"].as_str().unwrap();
            assert!(e.contains("instance=~\"$instance\""), "{e}");
        }
    }
}

/// The metric names an expression or rules file uses, each with the label
/// names its selectors match on and its `by (...)` groups.
fn used(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("volley_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        i = end;
        let before = start.checked_sub(1).map(|b| bytes[b]);
        if before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':') {
            continue;
        }
        let labels = out.entry(text[start..end].to_string()).or_default();
        if bytes.get(end) == Some(&b'{') {
            let close = text[end..].find('}').map_or(text.len(), |c| end + c);
            for m in text[end + 1..close].split(',') {
                let name: String = m
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != "instance" && name != "job" {
                    labels.insert(name);
                }
            }
        }
    }
    out
}

/// The `by (...)` label names of an expression.
fn grouped_by(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("by (") {
        rest = &rest[at + 4..];
        let close = rest.find(')').unwrap_or(rest.len());
        for l in rest[..close].split(',') {
            let l = l.trim();
            if !l.is_empty() && l != "instance" && l != "le" {
                out.insert(l.to_string());
            }
        }
    }
    out
}

/// Sample names of an exposition and the label names each carries.
fn served(body: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = out.entry(line[..end].to_string()).or_default();
        if line[end..].starts_with('{') {
            let (l, _) = parse_labels(&line[end + 1..]);
            labels.extend(l.into_keys());
        }
    }
    out
}

#[test]
fn every_metric_and_label_used_is_served_by_volley() {
    let fx = Fixture::new();
    let server = ScriptedServer::start(
        true,
        Arc::new(|rcpt: &str, _: u32| {
            if rcpt.starts_with("later") {
                "451 4.3.0 Try again later".to_string()
            } else if rcpt.starts_with("nouser") {
                "550 5.1.1 No such user".to_string()
            } else {
                "250 2.1.5 Ok".to_string()
            }
        }) as Arc<RcptScript>,
    );
    fx.write(
        "config.toml",
        format!(
            "[spool]\ndir = \"spool\"\n[events]\njsonl = \"events.jsonl\"\n[http]\nlisten = \"127.0.0.1:{}\"\n[delivery]\nretry_first = \"1h\"\n[routes]\n\"*\" = \"{}\"\n[configuration_sets.main]\n[[configuration_sets.main.destinations]]\nname = \"file\"\nevent_types = [\"Delivery\", \"Bounce\", \"DeliveryDelay\"]\njsonl = {{ path = \"main.jsonl\" }}\n[[egress.sources]]\nname = \"s2\"\naddress = \"127.0.0.2\"\nwarmup = \"standard\"\n",
            free_port(),
            server.addr
        ),
    );
    fx.write(
        "list.csv",
        "email\nok1@a.test\nok2@a.test\nlater1@a.test\nnouser1@b.test\n",
    );
    fx.campaign(
        "list.csv",
        "Hi",
        "Hello\n",
        "configuration_set = \"main\"\n",
    );
    fx.enqueue();
    let http = fx.http_addr();
    let service = spawn(fx.path(), &["run", "--config", "config.toml"]);
    wait_until(Duration::from_secs(60), "an event for everyone", || {
        let ev = fx.events();
        per_recipient(&ev, "Delivery").len() == 2
            && per_recipient(&ev, "Bounce").len() == 1
            && per_recipient(&ev, "DeliveryDelay").len() == 1
    });
    let body = metrics_when(&http, Duration::from_secs(20), "outcomes counted", |b| {
        value(b, "volley_outcomes_total{outcome=\"deferred\"}") == Some(1.0)
            && b.contains("volley_destination_events_published_total{")
            && b.contains("volley_campaign_pending{")
    });
    stop(service);
    let served = served(&body);

    let rules = std::fs::read_to_string(kit().join("prometheus/volley-alerts.yml")).unwrap();
    let mut sources: Vec<(String, String)> = vec![("volley-alerts.yml".into(), rules)];
    sources.extend(expressions(&dashboard()));
    let mut checked = 0;
    for (place, text) in &sources {
        let uses = used(text);
        assert!(!uses.is_empty() || place.is_empty(), "{place}: {text}");
        for (metric, labels) in &uses {
            let Some(has) = served.get(metric) else {
                panic!("{place} uses {metric}, which volley does not serve:\n{body}");
            };
            for l in labels {
                assert!(
                    has.contains(l),
                    "{place}: {metric} has no label {l}: {has:?}"
                );
            }
            checked += 1;
        }
        // grouping labels come from one of the expression's metrics
        for l in grouped_by(text) {
            assert!(
                uses.keys()
                    .any(|m| served.get(m).is_some_and(|has| has.contains(&l))),
                "{place}: no metric of {text} has label {l}"
            );
        }
    }
    assert!(checked >= 30, "{checked}");
}
