//! MTA-STS (RFC 8461) and TLS reporting (RFC 8460) against the in-process
//! DNS server (MX, `_mta-sts` TXT and policy host records), an HTTPS policy
//! server and scripted TLS SMTP servers whose certificates a test CA signed
//! (given to `volley run` as its system roots through `SSL_CERT_FILE`).
//!
//! - `enforce`, certificate valid for the MX host the policy lists:
//!   delivered; the report counts a successful session.
//! - `enforce`, the MX host's certificate names another host: deferred,
//!   nothing reaches that server; reported as `certificate-host-mismatch`.
//! - `enforce`, the policy lists none of the MX hosts: deferred, naming
//!   MTA-STS; reported as `validation-failure`.
//! - `testing`, certificate for another host: delivered; the failure is
//!   reported.
//! - no policy: delivered to the same server as without MTA-STS.
//! - a TXT record whose policy host answers 404: delivered as without a
//!   policy; the failed fetch is reported (`sts-policy-fetch-error`).
//!
//! Then, with the policy server gone, a restarted service still enforces
//! the cached policy (the TXT id unchanged: no fetch needed), and no
//! policy was fetched twice.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use volley_tests::dns::{DnsServer, Zones};
use volley_tests::mx_rig::*;
use volley_tests::policy_server::PolicyServer;
use volley_tests::scripted::{self, ScriptedServer, TestCa};
use volley_tests::*;

fn tls_server(addr: SocketAddr, tls: Arc<rustls::ServerConfig>) -> ScriptedServer {
    ScriptedServer::start_with(
        scripted::Options {
            pipelining: true,
            bind: Some(addr),
            tls: Some(tls),
            ..Default::default()
        },
        Arc::new(|_: &str, _: u32| "250 2.1.5 Ok".to_string()),
    )
}

fn policy(mode: &str, mx: &str) -> String {
    format!("version: STSv1\r\nmode: {mode}\r\nmx: {mx}\r\nmax_age: 86400\r\n")
}

fn report(fx: &Fixture, domain: &str) -> Option<serde_json::Value> {
    let dir = fx.path().join("reports");
    let days = std::fs::read_dir(dir).ok()?;
    for d in days.flatten() {
        if let Ok(b) = std::fs::read(d.path().join(format!("{domain}.json"))) {
            return serde_json::from_slice(&b).ok();
        }
    }
    None
}

fn counts(r: &serde_json::Value) -> (u64, u64) {
    let s = &r["policies"][0]["summary"];
    (
        s["total-successful-session-count"].as_u64().unwrap_or(0),
        s["total-failure-session-count"].as_u64().unwrap_or(0),
    )
}

fn diagnostic(events: &[serde_json::Value], rcpt: &str) -> String {
    events
        .iter()
        .find(|e| e["eventType"] == "DeliveryDelay" && e["mail"]["destination"][0] == rcpt)
        .map(|e| e["deliveryDelay"]["delayedRecipients"][0]["diagnosticCode"].to_string())
        .unwrap_or_default()
}

#[test]
fn policies_are_enforced_tested_reported_and_cached() {
    let fx = Fixture::new();
    let ca = TestCa::new(fx.path());
    let (good_ip, bad_ip) = (ip(60, 1), ip(60, 2));
    let port = common_port(&[good_ip, bad_ip]);
    let good = tls_server(
        SocketAddr::new(good_ip, port),
        ca.server("good", &["DNS:mx.good.test"]),
    );
    let bad = tls_server(
        SocketAddr::new(bad_ip, port),
        ca.server("bad", &["DNS:mx.other.test"]),
    );
    let domains = ["enf.test", "enfbad.test", "enfmx.test", "tst.test"];
    let mut names: Vec<String> = domains.iter().map(|d| format!("DNS:mta-sts.{d}")).collect();
    names.push("DNS:mta-sts.gone.test".into());
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let policies = BTreeMap::from([
        (
            "mta-sts.enf.test".to_string(),
            policy("enforce", "mx.good.test"),
        ),
        (
            "mta-sts.enfbad.test".to_string(),
            policy("enforce", "mx.bad.test"),
        ),
        (
            "mta-sts.enfmx.test".to_string(),
            policy("enforce", "*.elsewhere.test"),
        ),
        (
            "mta-sts.tst.test".to_string(),
            policy("testing", "mx.bad.test"),
        ),
    ]);
    let https = PolicyServer::start(ca.server("policy", &names), policies);
    let mut zones = Zones::new("test")
        .mx("gone.test", 10, "mx.bad.test")
        .txt("_mta-sts.gone.test", "v=STSv1; id=1")
        .a("mta-sts.gone.test", std::net::Ipv4Addr::LOCALHOST)
        .a("mx.good.test", v4(good_ip))
        .a("mx.bad.test", v4(bad_ip))
        .mx("enf.test", 10, "mx.good.test")
        .mx("enfbad.test", 10, "mx.bad.test")
        .mx("enfmx.test", 10, "mx.good.test")
        .mx("tst.test", 10, "mx.bad.test")
        .mx("none.test", 10, "mx.bad.test");
    for d in domains {
        zones = zones
            .txt(&format!("_mta-sts.{d}"), "v=STSv1; id=20261202T1")
            .a(&format!("mta-sts.{d}"), std::net::Ipv4Addr::LOCALHOST);
    }
    let dns = DnsServer::start(zones);
    let extra = format!(
        "[mta_sts]\nhttps_port = {}\nreports_dir = \"reports\"\norganization = \"volley.test\"\n",
        https.port
    );
    config(&fx, &dns, port, "", &extra);
    let first = [
        "enf.test",
        "enfbad.test",
        "enfmx.test",
        "tst.test",
        "none.test",
        "gone.test",
    ]
    .iter()
    .flat_map(|d| rcpts(d, 2))
    .collect::<Vec<_>>();
    campaign(&fx, &first);
    fx.enqueue();
    let env = [("SSL_CERT_FILE", ca.pem())];
    let env: Vec<(&str, &std::path::Path)> = env.iter().map(|(k, v)| (*k, v.as_path())).collect();
    let service = spawn_env(fx.path(), &["run", "--config", "config.toml"], &env);
    wait_until(Duration::from_secs(60), "8 delivered, 4 deferred", || {
        let e = fx.events();
        per_recipient(&e, "Delivery").len() == 8 && per_recipient(&e, "DeliveryDelay").len() == 4
    });
    let ev = fx.events();
    let delivered: Vec<String> = per_recipient(&ev, "Delivery").into_keys().collect();
    let want: Vec<String> = ["enf.test", "gone.test", "none.test", "tst.test"]
        .iter()
        .flat_map(|d| rcpts(d, 2))
        .collect();
    assert_eq!(delivered, sorted(&want));
    assert_eq!(
        got(&good),
        sorted(&rcpts("enf.test", 2)),
        "enfmx.test never reached mx.good.test"
    );
    let mut at_bad = rcpts("tst.test", 2);
    at_bad.extend(rcpts("none.test", 2));
    at_bad.extend(rcpts("gone.test", 2));
    assert_eq!(
        got(&bad),
        sorted(&at_bad),
        "nothing of enfbad.test at a host that does not verify"
    );
    let why = diagnostic(&ev, "user0@enfbad.test").to_lowercase();
    assert!(why.contains("certificate"), "{why}");
    let why = diagnostic(&ev, "user0@enfmx.test");
    assert!(
        why.contains("MTA-STS") && why.contains("mx.good.test"),
        "{why}"
    );

    wait_until(Duration::from_secs(30), "TLS reports written", || {
        ["enf.test", "enfbad.test", "enfmx.test", "tst.test"]
            .iter()
            .all(|d| report(&fx, d).is_some())
    });
    let enf = report(&fx, "enf.test").unwrap();
    assert_eq!(enf["organization-name"], "volley.test");
    assert_eq!(enf["policies"][0]["policy"]["policy-type"], "sts");
    assert_eq!(enf["policies"][0]["policy"]["policy-domain"], "enf.test");
    assert_eq!(
        enf["policies"][0]["policy"]["policy-string"][1],
        "mode: enforce"
    );
    let (ok, failed) = counts(&enf);
    assert!(ok >= 1 && failed == 0, "{enf}");
    for (domain, result) in [
        ("enfbad.test", "certificate-host-mismatch"),
        ("enfmx.test", "validation-failure"),
        ("tst.test", "certificate-host-mismatch"),
    ] {
        let r = report(&fx, domain).unwrap();
        let (_, failed) = counts(&r);
        assert!(failed >= 1, "{r}");
        let detail = &r["policies"][0]["failure-details"][0];
        assert_eq!(detail["result-type"], result, "{r}");
        assert!(detail["receiving-mx-hostname"].as_str().is_some(), "{r}");
    }
    assert_eq!(
        report(&fx, "tst.test").unwrap()["policies"][0]["failure-details"][0]["receiving-ip"],
        bad_ip.to_string()
    );
    assert!(report(&fx, "none.test").is_none(), "no policy, no report");
    let sessions = |mode: &str, result: &str| {
        fx.metric(&format!(
            "volley_mta_sts_sessions_total{{mode=\"{mode}\",result=\"{result}\"}}"
        ))
    };
    assert!(sessions("enforce", "verified") >= 1.0);
    assert!(sessions("enforce", "failed") >= 1.0);
    assert!(sessions("testing", "failed") >= 1.0);
    let gone = report(&fx, "gone.test").expect("the failed fetch is reported");
    assert_eq!(
        gone["policies"][0]["policy"]["policy-type"],
        "no-policy-found"
    );
    assert_eq!(
        gone["policies"][0]["failure-details"][0]["result-type"], "sts-policy-fetch-error",
        "{gone}"
    );
    stop(service);
    let cache = std::fs::read_to_string(fx.path().join("spool/mta-sts.json")).unwrap();
    assert!(
        cache.contains("enfbad.test") && cache.contains("20261202T1"),
        "{cache}"
    );

    // the policy host is gone: the cached policy still holds
    let fetched = https.requests();
    drop(https);
    let second = [
        rcpts("enfbad.test", 3)[2].clone(),
        rcpts("none.test", 3)[2].clone(),
    ];
    fx.write(
        "list2.csv",
        format!("email,name\n{},A\n{},B\n", second[0], second[1]),
    );
    fx.write(
        "campaign.toml",
        "id = \"second\"\nfrom = \"Sender <news@example.com>\"\nsubject = \"Hi\"\ntext = \"body.txt\"\nrecipients = \"list2.csv\"\n",
    );
    fx.enqueue();
    let service = spawn_env(fx.path(), &["run", "--config", "config.toml"], &env);
    wait_until(
        Duration::from_secs(60),
        "the second campaign's outcomes",
        || {
            let e = fx.events();
            per_recipient(&e, "Delivery").contains_key(&second[1])
                && per_recipient(&e, "DeliveryDelay").contains_key(&second[0])
        },
    );
    stop(service);
    assert!(
        !got(&bad).contains(&second[0]),
        "the cached enforce policy kept enfbad.test's mail from a host that does not verify"
    );
    let mut hosts: Vec<&str> = fetched.iter().filter_map(|r| r.split(' ').next()).collect();
    hosts.sort();
    assert_eq!(
        hosts,
        [
            "mta-sts.enf.test",
            "mta-sts.enfbad.test",
            "mta-sts.enfmx.test",
            "mta-sts.gone.test",
            "mta-sts.tst.test"
        ],
        "each policy fetched once: {fetched:?}"
    );
    for r in &fetched {
        assert!(r.ends_with(" /.well-known/mta-sts.txt"), "{r}");
    }
}
