//! Results of the many-sites bench (`benches/many_sites.rs`): one
//! `volley send` run's outcome ([`Run`]), the reasons recipients were left
//! deferred (read from the run's events file), the line printed after each
//! run, and the table of all runs with a column per binary side by side.
//!
//! Input: measured runs and the run's events file (JSONL written by the
//! engine under test). Output: text on stdout. Nothing here panics on a
//! malformed event line (it is skipped).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use crate::dns_probe::ProbeReport;
use crate::measure::Measured;
use crate::sites::sink_ip;

/// One `volley send` run and what came of it.
pub struct Run {
    pub label: &'static str,
    pub sites: usize,
    pub conns: usize,
    pub m: Measured,
    pub delivered: u64,
    /// Sinks whose count differs from the layout's share: (sink, counted,
    /// expected).
    pub misrouted: Vec<(usize, u64, u64)>,
    /// CPU seconds of the sinks over the run.
    pub sinks_cpu: f64,
    /// Busy share (0..=1) of all the machine's CPUs over the run.
    pub busy: f64,
    /// CPU seconds of the bench process itself (test DNS server, probe,
    /// watcher) over the run.
    pub own_cpu: f64,
    pub summary: String,
    /// For a run that left recipients deferred: the commonest reasons.
    pub deferrals: Vec<(String, usize)>,
    /// How promptly the test DNS server answered during the run.
    pub dns_probe: Option<ProbeReport>,
}

impl Run {
    pub fn ok(&self, n: usize) -> bool {
        self.m.stopped.is_none()
            && self.m.code == Some(0)
            && self.delivered == n as u64
            && self.misrouted.is_empty()
    }

    pub fn rate(&self) -> f64 {
        self.delivered as f64 / self.m.wall.as_secs_f64()
    }

    pub fn rss_mb(&self) -> u64 {
        self.m.max_rss_kib / 1024
    }

    /// The engine's CPU time (user + system) per delivered message: less
    /// sensitive than msg/s to what else runs on the machine.
    pub fn cpu_ms_per_msg(&self) -> f64 {
        1e3 * self.m.cpu.as_secs_f64() / self.delivered.max(1) as f64
    }

    /// CPU seconds that others (other programs on the machine, and kernel
    /// work charged to no process) used during the run: the machine's busy
    /// time less the engine's, the sinks' and the bench's own.
    pub fn others_cpu(&self, cpus: usize) -> f64 {
        let busy = self.busy * cpus as f64 * self.m.wall.as_secs_f64();
        (busy - self.m.cpu.as_secs_f64() - self.sinks_cpu - self.own_cpu).max(0.0)
    }

    /// How the run ended, when it did not end well.
    pub fn failure(&self, n: usize) -> Option<String> {
        if self.ok(n) {
            return None;
        }
        let end = match (&self.m.stopped, self.m.code, self.m.signal) {
            (Some(s), _, _) => s.to_string(),
            (None, Some(c), _) => format!("exit {c}"),
            (None, None, Some(s)) => format!("signal {s}"),
            (None, None, None) => "no exit status".into(),
        };
        let mut f = format!("{end}; {} of {n} delivered", self.delivered);
        for (k, got, want) in &self.misrouted {
            f.push_str(&format!(
                "; sink {} counted {got}, expected {want}",
                sink_ip(*k)
            ));
        }
        Some(f)
    }
}

/// The `top` commonest DeliveryDelay diagnostics in an events file, with
/// digits masked so that the same reason at different hosts counts once.
pub fn delay_reasons(events: &Path, top: usize) -> Vec<(String, usize)> {
    use std::io::BufRead;
    let Ok(f) = File::open(events) else {
        return Vec::new();
    };
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for line in std::io::BufReader::new(f).lines().map_while(Result::ok) {
        if !line.contains("\"DeliveryDelay\"") {
            continue;
        }
        let Ok(e) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let d = &e["deliveryDelay"];
        for r in d["delayedRecipients"].as_array().into_iter().flatten() {
            let why = format!(
                "{}: {}",
                d["delayType"].as_str().unwrap_or("?"),
                r["diagnosticCode"].as_str().unwrap_or("?")
            );
            let masked: String = why
                .chars()
                .map(|c| if c.is_ascii_digit() { '#' } else { c })
                .collect();
            *count.entry(masked).or_default() += 1;
        }
    }
    let mut v: Vec<(String, usize)> = count.into_iter().collect();
    v.sort_by_key(|(_, c)| std::cmp::Reverse(*c));
    v.truncate(top);
    v
}

/// The line printed after run `r` (of `n` recipients, on a machine with
/// `cpus` CPUs). CPU shares are in % of one CPU.
pub fn detail(r: &Run, n: usize, cpus: usize) {
    let wall = r.m.wall.as_secs_f64();
    println!(
        "  {:>6} sites, {:>2} conn/site, {:<7}: {:>6} msgs in {:>7.2} s = {:>6.0} msg/s, peak RSS {:>5} MB, \
         volley CPU {:>3.0}% ({:.2} ms/msg), sinks {:>3.0}%, bench {:>2.0}%, others {:>3.0}%; machine busy {:>3.0}%{}",
        r.sites,
        r.conns,
        r.label,
        r.delivered,
        wall,
        r.rate(),
        r.rss_mb(),
        100.0 * r.m.cpu.as_secs_f64() / wall,
        r.cpu_ms_per_msg(),
        100.0 * r.sinks_cpu / wall,
        100.0 * r.own_cpu / wall,
        100.0 * r.others_cpu(cpus) / wall,
        100.0 * r.busy,
        r.failure(n)
            .map(|f| format!(" -- FAILED: {f}"))
            .unwrap_or_default(),
    );
    if !r.summary.is_empty() {
        println!("          send: {}", r.summary);
    }
    if let Some(p) = &r.dns_probe {
        println!("          test DNS server during the run: {p}");
    }
    for (why, count) in &r.deferrals {
        println!("          deferred {count}× {why}");
    }
}

fn thousands(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A column of the table.
#[derive(Clone, Copy)]
enum Col {
    Rate,
    Rss,
    Cpu,
}

/// How many times `list[..k]` has `sites`.
fn sites_before_in(list: &[usize], sites: usize, k: usize) -> usize {
    list[..k].iter().filter(|&&s| s == sites).count()
}

/// The table (Markdown): one row per site count with a column per binary
/// (`labels`) for each of msg/s, peak RSS and CPU per message, then the
/// total (all messages over all wall time, the largest peak, all CPU time
/// over all messages). A run that did not deliver everything shows "—"
/// and how many it delivered instead of a rate.
pub fn table(
    n: usize,
    sites: &[usize],
    conns: impl Fn(usize) -> usize,
    labels: &[&str],
    runs: &[Run],
) -> String {
    let mut head = String::from("| recipients | distinct MX sites | connections per site |");
    let mut rule = String::from("|---|---|---|");
    for l in labels {
        head.push_str(&format!(" msg/s ({l}) |"));
        rule.push_str("---|");
    }
    for l in labels {
        head.push_str(&format!(" peak RSS ({l}) |"));
        rule.push_str("---|");
    }
    for l in labels {
        head.push_str(&format!(" CPU per msg ({l}) |"));
        rule.push_str("---|");
    }
    let mut out = format!("{head}\n{rule}\n");
    let cell = |r: Option<&Run>, col: Col| match (r, col) {
        (None, _) => "—".to_string(),
        (Some(r), Col::Rate) if !r.ok(n) => {
            format!("— ({} delivered)", thousands(r.delivered))
        }
        (Some(r), Col::Rate) => thousands(r.rate().round() as u64),
        (Some(r), Col::Rss) => format!("{} MB", thousands(r.rss_mb())),
        (Some(r), Col::Cpu) => format!("{:.2} ms", r.cpu_ms_per_msg()),
    };
    let sites_list = sites;
    for (k, &sites) in sites_list.iter().enumerate() {
        // a site count listed more than once: its k-th listing, k-th run
        let nth = sites_before_in(sites_list, sites, k);
        let get = |l: &str| {
            runs.iter()
                .filter(|r| r.sites == sites && r.label == l)
                .nth(nth)
        };
        let mut row = format!(
            "| {} | {} | {} |",
            thousands(n as u64),
            if sites == 1 {
                "1 (a route)".into()
            } else {
                thousands(sites as u64)
            },
            conns(sites)
        );
        for col in [Col::Rate, Col::Rss, Col::Cpu] {
            for l in labels {
                row.push_str(&format!(" {} |", cell(get(l), col)));
            }
        }
        out.push_str(&format!("{row}\n"));
    }
    let mut row = String::from("| total | | |");
    let mut peaks = String::new();
    let mut cpus = String::new();
    for l in labels {
        let mine: Vec<&Run> = runs.iter().filter(|r| r.label == *l).collect();
        let msgs: u64 = mine.iter().map(|r| r.delivered).sum();
        let secs: f64 = mine.iter().map(|r| r.m.wall.as_secs_f64()).sum();
        let failed = mine.iter().filter(|r| !r.ok(n)).count();
        let note = if failed > 0 {
            format!(", {failed} failed")
        } else {
            String::new()
        };
        row.push_str(&format!(
            " {} msgs in {secs:.1} s = {} msg/s{note} |",
            thousands(msgs),
            thousands((msgs as f64 / secs.max(1e-9)).round() as u64)
        ));
        let peak = mine.iter().map(|r| r.rss_mb()).max().unwrap_or(0);
        peaks.push_str(&format!(" max {} MB |", thousands(peak)));
        let cpu: f64 = mine.iter().map(|r| r.m.cpu.as_secs_f64()).sum();
        cpus.push_str(&format!(" {:.2} ms |", 1e3 * cpu / msgs.max(1) as f64));
    }
    out.push_str(&format!("{row}{peaks}{cpus}\n"));
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn run(label: &'static str, sites: usize, delivered: u64, secs: u64) -> Run {
        Run {
            label,
            sites,
            conns: 4,
            m: Measured {
                code: Some(if delivered == 1000 { 0 } else { 3 }),
                signal: None,
                stopped: None,
                wall: Duration::from_secs(secs),
                max_rss_kib: 300 * 1024,
                cpu: Duration::from_secs(1),
                progress: delivered,
            },
            delivered,
            misrouted: vec![],
            sinks_cpu: 0.0,
            busy: 0.0,
            own_cpu: 0.0,
            summary: String::new(),
            deferrals: vec![],
            dns_probe: None,
        }
    }

    #[test]
    fn table_side_by_side_with_failed_runs_marked() {
        let runs = [
            run("before", 100, 1000, 2),
            run("current", 100, 1000, 1),
            run("before", 10_000, 600, 3),
            run("current", 10_000, 1000, 4),
        ];
        let t = table(1000, &[100, 10_000], |_| 4, &["before", "current"], &runs);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "| recipients | distinct MX sites | connections per site | msg/s (before) | msg/s (current) \
             | peak RSS (before) | peak RSS (current) | CPU per msg (before) | CPU per msg (current) |"
        );
        assert_eq!(
            lines[2],
            "| 1,000 | 100 | 4 | 500 | 1,000 | 300 MB | 300 MB | 1.00 ms | 1.00 ms |"
        );
        assert_eq!(
            lines[3],
            "| 1,000 | 10,000 | 4 | — (600 delivered) | 250 | 300 MB | 300 MB | 1.67 ms | 1.00 ms |"
        );
        assert!(lines[4].starts_with("| total | | | 1,600 msgs in 5.0 s = 320 msg/s, 1 failed |"));
    }

    #[test]
    fn a_site_count_listed_twice_has_a_row_per_run() {
        let runs = [run("current", 100, 1000, 1), run("current", 100, 1000, 2)];
        let t = table(1000, &[100, 100], |_| 4, &["current"], &runs);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[2], "| 1,000 | 100 | 4 | 1,000 | 300 MB | 1.00 ms |");
        assert_eq!(lines[3], "| 1,000 | 100 | 4 | 500 | 300 MB | 1.00 ms |");
    }

    #[test]
    fn deferral_reasons_counted_with_hosts_masked() {
        let dir = std::env::temp_dir().join(format!("sites-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let delay = |host: &str| {
            format!(
                r#"{{"eventType":"DeliveryDelay","deliveryDelay":{{"delayType":"TransientCommunicationFailure","delayedRecipients":[{{"diagnosticCode":"lookup for {host} failed"}}]}}}}"#
            )
        };
        let lines = [
            delay("mx12.sites.test"),
            r#"{"eventType":"Delivery"}"#.to_string(),
            delay("mx47.sites.test"),
            "not json \"DeliveryDelay\"".to_string(),
            delay("d3.sites.test"),
        ];
        let path = dir.join("events.jsonl");
        std::fs::write(&path, lines.join("\n")).expect("events file");
        let got = delay_reasons(&path, 3);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            got,
            vec![
                (
                    "TransientCommunicationFailure: lookup for mx##.sites.test failed".to_string(),
                    2
                ),
                (
                    "TransientCommunicationFailure: lookup for d#.sites.test failed".to_string(),
                    1
                ),
            ]
        );
    }

    #[test]
    fn others_cpu_is_the_busy_time_nobody_measured_used() {
        let mut r = run("current", 1, 1000, 10);
        // 2 CPUs 75% busy for 10 s = 15 CPU seconds: 1 engine, 4 sinks, 2 bench
        (r.busy, r.sinks_cpu, r.own_cpu) = (0.75, 4.0, 2.0);
        assert!((r.others_cpu(2) - 8.0).abs() < 1e-9);
        r.busy = 0.1;
        assert_eq!(r.others_cpu(2), 0.0);
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
