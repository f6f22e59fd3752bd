//! `GET /metrics` of `volley run` in both exposition formats, checked by
//! independent tools: `promtool check metrics` on the Prometheus text
//! format, the Prometheus Python client's OpenMetrics parser on OpenMetrics.
//! Once on an empty spool (every fixed series is there, at zero) and once
//! during real traffic with an outcome of every kind (delivered, deferred,
//! bounced twice over, render-failed) over a plain and a TLS site; the new
//! families carry the values the traffic implies.

use std::sync::Arc;
use std::time::Duration;

use volley_tests::prom::{
    Scrape, metrics_when, openmetrics_check, promtool_check, samples, scrape, site_value, value,
};
use volley_tests::scripted::{self, RcptScript, ScriptedServer};
use volley_tests::*;

/// What Prometheus 2.x sends.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Scrapes in both formats (and without `Accept`), checks each with its
/// tool, and returns the text-format body.
fn scrape_and_check(http: &str) -> String {
    let text = scrape(http, Some("text/plain;version=0.0.4"));
    assert_eq!((text.status, text.content_type.as_str()), (200, TEXT));
    promtool_check(&text.body);
    let plain: Scrape = scrape(http, None);
    assert_eq!((plain.status, plain.content_type.as_str()), (200, TEXT));
    assert!(!plain.body.contains("# EOF"));
    let om = scrape(http, Some(PROMETHEUS_ACCEPT));
    assert_eq!(om.status, 200);
    assert!(
        om.content_type
            .starts_with("application/openmetrics-text; version=1.0.0"),
        "{}",
        om.content_type
    );
    assert!(om.body.ends_with("# EOF\n"));
    openmetrics_check(&om.body);
    text.body
}

#[test]
fn both_formats_pass_their_checkers_before_and_during_traffic() {
    // before any traffic: an empty spool
    let fx = Fixture::new();
    let plain = ScriptedServer::start(
        true,
        Arc::new(|rcpt: &str, _: u32| {
            let reply = if rcpt.starts_with("defer") {
                "451 4.3.0 Try again later"
            } else if rcpt.starts_with("nouser") {
                "550 5.1.1 No such user"
            } else if rcpt.starts_with("full") {
                "552 5.2.2 Mailbox full"
            } else {
                "250 2.1.5 Ok"
            };
            reply.to_string()
        }) as Arc<RcptScript>,
    );
    let tls = ScriptedServer::start_with(
        scripted::Options {
            pipelining: true,
            tls: Some(scripted::self_signed_tls()),
            ..Default::default()
        },
        Arc::new(|_: &str, _: u32| "250 2.1.5 Ok".to_string()),
    );
    fx.write(
        "config.toml",
        format!(
            "[spool]\ndir = \"spool\"\n[events]\njsonl = \"events.jsonl\"\n[http]\nlisten = \"127.0.0.1:{}\"\n[delivery]\nretry_first = \"1h\"\n[routes]\n\"tls.test\" = \"{}\"\n\"*\" = \"{}\"\n",
            free_port(),
            tls.addr,
            plain.addr
        ),
    );
    let http = fx.http_addr();
    let service = spawn(fx.path(), &["run", "--config", "config.toml"]);
    wait_until(Duration::from_secs(60), "the service to listen", || {
        http_get(&http, "/healthz").is_ok()
    });
    let empty = scrape_and_check(&http);
    for outcome in ["delivered", "deferred", "bounced", "render_failed"] {
        let name = format!("volley_outcomes_total{{outcome=\"{outcome}\"}}");
        assert_eq!(value(&empty, &name), Some(0.0), "{name} in:\n{empty}");
    }
    assert_eq!(samples(&empty, "volley_bounces_total").len(), 10, "{empty}");
    assert!(
        samples(&empty, "volley_bounces_total")
            .iter()
            .all(|(_, v)| *v == 0.0)
    );
    stop(service);

    // during traffic: every kind of outcome, over a plain and a TLS site
    let mut csv = String::from("email,name,coupon\n");
    let rows = [
        ("ok1@plain.test", "C1"),
        ("ok2@plain.test", "C2"),
        ("ok3@plain.test", "C3"),
        ("ok4@plain.test", "C4"),
        ("ok5@plain.test", "C5"),
        ("t1@tls.test", "C6"),
        ("t2@tls.test", "C7"),
        ("t3@tls.test", "C8"),
        ("defer1@plain.test", "C9"),
        ("defer2@plain.test", "C10"),
        ("nouser1@plain.test", "C11"),
        ("nouser2@plain.test", "C12"),
        ("full1@plain.test", "C13"),
        ("nocoupon@plain.test", ""),
    ];
    for (email, coupon) in rows {
        csv.push_str(&format!("{email},N,{coupon}\n"));
    }
    fx.write("list.csv", csv);
    fx.campaign(
        "list.csv",
        "Hi {{name}}",
        "Hello {{name}}: {{coupon}}\n",
        "",
    );
    fx.enqueue();
    let service = spawn(fx.path(), &["run", "--config", "config.toml"]);
    wait_until(Duration::from_secs(60), "an event for everyone", || {
        let ev = fx.events();
        per_recipient(&ev, "Delivery").len() == 8
            && per_recipient(&ev, "Bounce").len() == 3
            && per_recipient(&ev, "DeliveryDelay").len() == 2
            && per_recipient(&ev, "Rendering Failure").len() == 1
    });
    let body = metrics_when(
        &http,
        Duration::from_secs(10),
        "every outcome counted",
        |b| {
            value(b, "volley_outcomes_total{outcome=\"render_failed\"}") == Some(1.0)
                && value(b, "volley_outcomes_total{outcome=\"delivered\"}") == Some(8.0)
                && value(b, "volley_outcomes_total{outcome=\"bounced\"}") == Some(3.0)
                && value(b, "volley_outcomes_total{outcome=\"deferred\"}") == Some(2.0)
                // the oldest deferred recipient's age
                && value(b, "volley_oldest_deferred_age_seconds").is_some_and(|a| a > 0.0)
        },
    );
    let checked = scrape_and_check(&http);
    eprintln!("{checked}");
    stop(service);

    let bounces = |t: &str, st: &str| {
        samples(&body, "volley_bounces_total")
            .into_iter()
            .find(|(l, _)| l["type"] == t && l["subtype"] == st)
            .map(|(_, v)| v)
    };
    assert_eq!(bounces("Permanent", "NoEmail"), Some(2.0), "{body}");
    assert_eq!(bounces("Transient", "MailboxFull"), Some(1.0), "{body}");
    assert_eq!(bounces("Permanent", "General"), Some(0.0), "{body}");

    let sessions = |site: &str, over_tls: &str| {
        site_value(
            &body,
            "volley_site_sessions_total",
            site,
            &[("tls", over_tls)],
        )
        .unwrap_or_else(|| panic!("sessions of {site}, tls={over_tls}:\n{body}"))
    };
    let (plain_site, tls_site) = (plain.addr.to_string(), tls.addr.to_string());
    assert!(sessions(&tls_site, "true") >= 1.0, "{body}");
    assert_eq!(sessions(&tls_site, "false"), 0.0, "{body}");
    assert!(sessions(&plain_site, "false") >= 1.0, "{body}");
    assert_eq!(sessions(&plain_site, "true"), 0.0, "{body}");
    assert!(
        tls.received().iter().all(|m| m.tls),
        "the TLS site used TLS"
    );

    let pending = |name: &str, key: &str, of: &str, state: &str| {
        samples(&body, name)
            .into_iter()
            .find(|(l, _)| l[key] == of && l["state"] == state)
            .map(|(_, v)| v)
    };
    let campaign = "volley_campaign_pending";
    assert_eq!(
        pending(campaign, "campaign", "test-campaign", "deferred"),
        Some(2.0)
    );
    assert_eq!(
        pending(campaign, "campaign", "test-campaign", "queued"),
        Some(0.0)
    );
    let domain = "volley_domain_pending";
    assert_eq!(
        pending(domain, "domain", "plain.test", "deferred"),
        Some(2.0)
    );
    assert_eq!(
        pending(domain, "domain", "tls.test", "deferred"),
        None,
        "only domains with recipients to deliver: {body}"
    );
    assert_eq!(value(&body, "volley_domains_pending"), Some(1.0));
    assert!(value(&body, "volley_oldest_deferred_age_seconds").is_some_and(|a| a > 0.0));
    assert!(value(&body, "volley_spool_disk_bytes").is_some_and(|b| b > 0.0));
    assert_eq!(value(&body, "volley_healthy"), Some(1.0));
    let build = samples(&body, "volley_build_info");
    assert_eq!(build.len(), 1, "{body}");
    assert_eq!(build[0].0["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(build[0].1, 1.0);
}
