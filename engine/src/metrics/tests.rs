//! The exposition of a fresh registry and after outcomes: both formats
//! well-formed, every fixed series present at zero, bounds written out.

use super::*;

fn scrape(m: &Metrics, format: Format) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    m.render(Queues::default(), &spool, format)
}

/// Names declared by `# HELP` and `# TYPE` lines, and the names of samples.
fn declared(body: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (mut help, mut types, mut samples) = (Vec::new(), Vec::new(), Vec::new());
    for line in body.lines() {
        let word = |l: &str| l.split(' ').next().unwrap_or("").to_string();
        if let Some(r) = line.strip_prefix("# HELP ") {
            help.push(word(r));
        } else if let Some(r) = line.strip_prefix("# TYPE ") {
            types.push(word(r));
        } else if !line.starts_with('#') && !line.is_empty() {
            samples.push(line.split(['{', ' ']).next().unwrap().to_string());
        }
    }
    (help, types, samples)
}

/// The value of the unlabelled sample `name`.
fn value(body: &str, name: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{body}"))
}

#[test]
fn text_format_declares_every_sample_under_its_own_name() {
    let m = Metrics::new();
    m.observe(
        None,
        &Outcome::Delivered {
            reply: "250 ok".into(),
        },
    );
    m.delivery_latency.observe(0.2);
    let body = scrape(&m, Format::Text);
    assert!(!body.contains("# EOF"), "{body}");
    let (help, types, samples) = declared(&body);
    for s in &samples {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                s.strip_suffix(suffix)
                    .filter(|f| types.iter().any(|t| t == f))
            })
            .unwrap_or(s);
        assert!(help.iter().any(|h| h == family), "no HELP for {s}:\n{body}");
        assert!(
            types.iter().any(|t| t == family),
            "no TYPE for {s}:\n{body}"
        );
    }
    assert!(
        body.contains("# TYPE volley_outcomes_total counter\n"),
        "{body}"
    );
    assert!(body.contains("# TYPE volley_build_info gauge\n"), "{body}");
}

#[test]
fn openmetrics_format_ends_with_eof() {
    let body = scrape(&Metrics::new(), Format::OpenMetrics);
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(body.contains("# TYPE volley_outcomes counter\n"), "{body}");
    assert!(body.contains("# TYPE volley_build info\n"), "{body}");
}

#[test]
fn fixed_series_exist_from_the_start_at_zero() {
    let body = scrape(&Metrics::new(), Format::Text);
    for outcome in OUTCOMES {
        let line = format!("volley_outcomes_total{{outcome=\"{outcome}\"}} 0\n");
        assert!(body.contains(&line), "{line}in:\n{body}");
    }
    for (t, st) in BOUNCE_KINDS {
        let line = format!("volley_bounces_total{{type=\"{t}\",subtype=\"{st}\"}} 0\n");
        assert!(body.contains(&line), "{line}in:\n{body}");
    }
    for result in ["applied", "invalid"] {
        let line = format!("volley_config_reloads_total{{result=\"{result}\"}} 0\n");
        assert!(body.contains(&line), "{line}in:\n{body}");
    }
    let build = format!(
        "volley_build_info{{version=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION")
    );
    assert!(body.contains(&build), "{body}");
    assert_eq!(value(&body, "volley_healthy"), 1.0, "{body}");
    assert_eq!(value(&body, "volley_oldest_deferred_age_seconds"), 0.0);
    assert_eq!(value(&body, "volley_domains_pending"), 0.0);
    assert!(
        value(&body, "volley_spool_disk_bytes") >= f64::from(4u32 << 20),
        "a new spool reserves journal space: {body}"
    );
}

#[test]
fn bounces_count_by_type_and_subtype() {
    let m = Metrics::new();
    let bounce = |t, st| Outcome::Bounced {
        status: "5.1.1".into(),
        diagnostic: "smtp; 550".into(),
        bounce_type: t,
        bounce_subtype: st,
    };
    m.observe(None, &bounce("Permanent", "NoEmail"));
    m.observe(None, &bounce("Permanent", "NoEmail"));
    m.observe(None, &bounce("Transient", "MailboxFull"));
    let body = scrape(&m, Format::Text);
    assert!(
        body.contains("volley_bounces_total{type=\"Permanent\",subtype=\"NoEmail\"} 2\n"),
        "{body}"
    );
    assert!(
        body.contains("volley_bounces_total{type=\"Transient\",subtype=\"MailboxFull\"} 1\n"),
        "{body}"
    );
    assert!(
        body.contains("volley_outcomes_total{outcome=\"bounced\"} 3\n"),
        "{body}"
    );
}

#[test]
fn site_sessions_count_tls_use() {
    let m = Metrics::new();
    let site = m.site("mx:a.test", "");
    site.session_opened(true);
    site.session_opened(false);
    site.session_opened(true);
    // from an egress source: a `source` label after `site`
    m.site("mx:a.test", "ip2").session_opened(true);
    m.source_up("ip2", false);
    let body = scrape(&m, Format::Text);
    assert!(
        body.contains(
            "volley_site_sessions_total{site=\"mx:a.test\",source=\"ip2\",tls=\"true\"} 1\n"
        ),
        "{body}"
    );
    assert!(
        body.contains("volley_egress_source_up{source=\"ip2\"} 0\n"),
        "{body}"
    );
    assert!(
        body.contains("volley_site_sessions_total{site=\"mx:a.test\",tls=\"true\"} 2\n"),
        "{body}"
    );
    assert!(
        body.contains("volley_site_sessions_total{site=\"mx:a.test\",tls=\"false\"} 1\n"),
        "{body}"
    );
}

#[test]
fn bucket_bounds_are_written_out() {
    let m = Metrics::new();
    for format in [Format::Text, Format::OpenMetrics] {
        let body = scrape(&m, format);
        let bounds: Vec<&str> = body
            .split("le=\"")
            .skip(1)
            .filter_map(|r| r.split('"').next())
            .collect();
        assert!(bounds.len() > 30, "{body}");
        for b in bounds {
            if b == "+Inf" {
                continue;
            }
            let v: f64 = b.parse().unwrap_or_else(|_| panic!("le={b:?}"));
            // a short decimal, not float drift such as 0.15000000000000003
            assert!(
                b.strip_suffix(".0").unwrap_or(b).len() <= 6,
                "le={b:?} ({v}) in:\n{body}"
            );
        }
    }
}
