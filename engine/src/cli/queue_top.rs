//! `volley queue top`: the sites with the most recipients waiting
//! (`volley_site_queued`) and those deferring the largest share of their
//! journaled outcomes since the service started (`volley_site_outcomes_total`),
//! read from the running service's `GET /metrics` on `[http] listen`.
//! Exposure: the service's own exposition (parsed leniently; lines that do
//! not parse are skipped).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

use volley_engine::config::Config;

use super::{CliResult, EXIT_OK, fail};

/// The samples of `name` in a text exposition: (site, other labels, value).
fn samples(body: &str, name: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in body.lines() {
        let Some(rest) = line.strip_prefix(name).and_then(|r| r.strip_prefix('{')) else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let mut map = BTreeMap::new();
        // k="v" pairs; values here (sites, outcomes) hold no quotes
        for pair in labels.split("\",") {
            if let Some((k, v)) = pair.split_once("=\"") {
                map.insert(k.to_string(), v.trim_end_matches('"').replace("\\\\", "\\"));
            }
        }
        if let Some(site) = map.remove("site") {
            out.push((site, map, value));
        }
    }
    out
}

/// The exposition of the service at `addr`.
fn scrape(addr: &str) -> std::io::Result<String> {
    let target = addr
        .parse::<std::net::SocketAddr>()
        .map_err(std::io::Error::other)?;
    let mut s = std::net::TcpStream::connect_timeout(&target, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.") && head.contains(" 200 ") => {
            Ok(body.to_string())
        }
        _ => Err(std::io::Error::other("unexpected answer to GET /metrics")),
    }
}

/// The `limit` sites with the most recipients queued, and the `limit`
/// deferring the largest share of their outcomes (sites with at least one
/// deferral), as text.
pub fn render(body: &str, limit: usize) -> String {
    // a site sending from several egress sources has a series per source
    let mut by_site: BTreeMap<String, f64> = BTreeMap::new();
    for (site, _, v) in samples(body, "volley_site_queued") {
        *by_site.entry(site).or_default() += v;
    }
    let mut queued: Vec<(String, f64)> = by_site.into_iter().filter(|(_, v)| *v > 0.0).collect();
    queued.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    queued.truncate(limit);
    let mut outcomes: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for (site, labels, v) in samples(body, "volley_site_outcomes_total") {
        let e = outcomes.entry(site).or_default();
        e.1 += v;
        if labels.get("outcome").map(String::as_str) == Some("deferred") {
            e.0 += v;
        }
    }
    let mut deferring: Vec<(String, f64, f64)> = outcomes
        .into_iter()
        .filter(|(_, (d, _))| *d > 0.0)
        .map(|(s, (d, all))| (s, d / all, d))
        .collect();
    deferring.sort_by(|a, b| {
        b.1.total_cmp(&a.1)
            .then_with(|| b.2.total_cmp(&a.2))
            .then_with(|| a.0.cmp(&b.0))
    });
    deferring.truncate(limit);
    let mut out = String::from("sites by recipients queued:\n");
    for (site, n) in &queued {
        out.push_str(&format!("  {n:>10}  {site}\n"));
    }
    out.push_str("sites by share of outcomes deferred (since the service started):\n");
    for (site, share, n) in &deferring {
        out.push_str(&format!(
            "  {:>9.1}%  {site} ({n} deferred)\n",
            share * 100.0
        ));
    }
    out
}

/// `volley queue top`.
pub fn command(config: &Config, limit: usize) -> CliResult {
    let body = scrape(&config.http.listen).map_err(|e| {
        fail(anyhow::anyhow!(
            "cannot read the running service's metrics at {}: {e}",
            config.http.listen
        ))
    })?;
    print!("{}", render(&body, limit));
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tops_by_queue_and_by_deferral_share() {
        let body = "# HELP x\n\
            volley_site_queued{site=\"mx:a.test\"} 5\n\
            volley_site_queued{site=\"127.0.0.1:25\",source=\"ip1\"} 30\n\
            volley_site_queued{site=\"127.0.0.1:25\",source=\"ip2\"} 20\n\
            volley_site_queued{site=\"mx:idle.test\"} 0\n\
            volley_site_outcomes_total{site=\"mx:a.test\",outcome=\"delivered\"} 1\n\
            volley_site_outcomes_total{site=\"mx:a.test\",outcome=\"deferred\"} 3\n\
            volley_site_outcomes_total{site=\"127.0.0.1:25\",outcome=\"delivered\"} 90\n\
            volley_site_outcomes_total{site=\"127.0.0.1:25\",outcome=\"deferred\"} 10\n\
            volley_site_outcomes_total{site=\"mx:fine.test\",outcome=\"delivered\"} 9\n\
            garbage{site=\n";
        let text = render(body, 10);
        assert_eq!(
            text,
            "sites by recipients queued:\n          50  127.0.0.1:25\n           5  mx:a.test\n\
             sites by share of outcomes deferred (since the service started):\n\
             \x20      75.0%  mx:a.test (3 deferred)\n\
             \x20      10.0%  127.0.0.1:25 (10 deferred)\n"
        );
        assert_eq!(render(body, 1).lines().count(), 4);
    }
}
