//! Reading a Prometheus text exposition (`GET /metrics`): samples by name
//! and labels, and waiting for a body that shows a state.

use std::collections::BTreeMap;

/// Samples of metric `name` in a Prometheus text exposition: (labels,
/// value).
pub fn samples(metrics: &str, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (labels, value) = match rest.strip_prefix('{') {
            Some(r) => {
                let (l, v) = parse_labels(r);
                (l, v)
            }
            None if rest.starts_with(' ') => (BTreeMap::new(), rest),
            None => continue, // a longer name with this prefix
        };
        let value: f64 = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        out.push((labels, value));
    }
    out
}

/// Parses `k="v",k2="v2"} rest` into the labels and `rest`.
pub fn parse_labels(s: &str) -> (BTreeMap<String, String>, &str) {
    let mut labels = BTreeMap::new();
    let mut rest = s;
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return (labels, r);
        }
        rest = rest.strip_prefix(',').unwrap_or(rest);
        let (key, r) = rest.split_once("=\"").expect("label key");
        let mut value = String::new();
        let mut chars = r.char_indices();
        let end = loop {
            match chars.next().expect("closing quote") {
                (i, '"') => break i,
                (_, '\\') => value.push(chars.next().expect("escaped char").1),
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.to_string(), value);
        rest = &r[end + 1..];
    }
}

/// The value of `name{site="<site>", ...}` (other labels as given).
pub fn site_value(metrics: &str, name: &str, site: &str, more: &[(&str, &str)]) -> Option<f64> {
    samples(metrics, name)
        .into_iter()
        .find(|(l, _)| {
            l.get("site").map(String::as_str) == Some(site)
                && more
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| v)
}

/// The value of the unlabelled sample `name`, or of `name{labels}` when
/// `name` includes them exactly as exposed.
pub fn value(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// `GET /metrics` from the service at `http` until `ready` holds for the
/// body (the counters of an outcome may trail its event by a moment), then
/// that body; panics naming `what` after `limit`.
pub fn metrics_when(
    http: &str,
    limit: std::time::Duration,
    what: &str,
    mut ready: impl FnMut(&str) -> bool,
) -> String {
    let mut body = String::new();
    crate::wait_until(limit, what, || {
        body = match crate::http_get(http, "/metrics") {
            Ok((200, b)) => b,
            _ => return false,
        };
        ready(&body)
    });
    body
}
