//! Reading a Prometheus text exposition (`GET /metrics`): samples by name
//! and labels, waiting for a body that shows a state, scraping with an
//! `Accept` header, and checking a body with independent tools: `promtool
//! check metrics` (Prometheus text format) and the Prometheus Python
//! client's OpenMetrics parser.

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

/// One `GET /metrics`: status, `Content-Type` and body.
#[derive(Debug)]
pub struct Scrape {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

/// `GET /metrics` from the service at `http`, with `Accept: <accept>` when
/// given.
pub fn scrape(http: &str, accept: Option<&str>) -> Scrape {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(http).expect("connect to the service");
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .expect("read timeout");
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {http}\r\n{accept}Connection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read the response");
    let (head, body) = resp.split_once("\r\n\r\n").expect("a header block");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    Scrape {
        status,
        content_type,
        body: body.to_string(),
    }
}

/// Runs `program args` with `input` on stdin; (success, stdout + stderr).
fn check_with(program: &str, args: &[&str], input: &str, install: &str) -> (bool, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}): {install}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("waiting for the checker");
    let _ = writer.join();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `promtool check metrics` on a Prometheus text exposition: panics with
/// promtool's findings unless it passes without any.
pub fn promtool_check(body: &str) {
    let (ok, said) = check_with(
        "promtool",
        &["check", "metrics"],
        body,
        "install Debian's prometheus package (scripts/install-test-deps.sh does)",
    );
    assert!(
        ok && said.trim().is_empty(),
        "promtool check metrics failed:\n{said}\non:\n{body}"
    );
}

/// Parses an OpenMetrics exposition with the Prometheus Python client's
/// OpenMetrics parser (strict: `# EOF`, names and suffixes, label and
/// value syntax, histogram buckets): panics with its error unless it parses.
pub fn openmetrics_check(body: &str) {
    let (ok, said) = check_with(
        "/usr/bin/python3",
        &[
            "-c",
            "import sys\nfrom prometheus_client.openmetrics.parser import text_string_to_metric_families as parse\nprint(len(list(parse(sys.stdin.read()))), 'families')",
        ],
        body,
        "install Debian's python3-prometheus-client (scripts/install-test-deps.sh does)",
    );
    assert!(ok, "not valid OpenMetrics:\n{said}\non:\n{body}");
}
