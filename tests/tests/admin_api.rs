//! The admin HTTP API on a running `volley run` (`[[http.admin]]` tokens,
//! `/admin/queue/...` on `[http] listen`): no token or a wrong one is 401;
//! a hold, an inspection, a release, a cancel, a drain and a resume work
//! as their `volley queue` commands do; bad bodies are 400 naming what is
//! wrong; every action is in the action log with the token's name and the
//! caller's address; a token removed by SIGHUP is refused.

use std::time::Duration;

use volley_tests::queue_rig::*;
use volley_tests::scripted::ScriptedServer;
use volley_tests::*;

/// The token, and its SHA-256 (`printf %s TOKEN | sha256sum`).
const TOKEN: &str = "oncall-7f3a9c2e";
const TOKEN_SHA256: &str = "ac02d5a454acf124c4de13089e9821b1f6e30be520e5f45b136a671ba0aa5a32";

fn admin(
    http: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String, serde_json::Value) {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(b) = &bearer {
        headers.push(("Authorization", b.as_str()));
    }
    let (code, head, body) =
        http_request(http, method, path, &headers, body).expect("the admin API answers");
    let v = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
    (code, head, v)
}

fn ok(http: &str, method: &str, path: &str, body: &str) -> serde_json::Value {
    let (code, _, v) = admin(http, method, path, Some(TOKEN), body);
    assert_eq!(code, 200, "{method} {path}: {v}");
    v
}

#[test]
fn the_admin_api_acts_on_the_queue_for_known_tokens_only() {
    let fx = Fixture::new();
    let server = ScriptedServer::accept_all(true);
    let tokens = format!("[[http.admin]]\nname = \"oncall\"\ntoken_sha256 = \"{TOKEN_SHA256}\"\n");
    // the admin table goes under [http]: written after its listen line
    config(&fx, &server, "");
    let cfg = std::fs::read_to_string(fx.path().join("config.toml")).unwrap();
    let with_tokens = format!("{cfg}{tokens}");
    fx.write("config.toml", &with_tokens);
    let http = fx.http_addr();
    let service = spawn(fx.path(), &["run", "--config", "config.toml"]);
    wait_until(Duration::from_secs(60), "the service", || {
        http_get(&http, "/healthz").is_ok()
    });

    // no token, a wrong one, another scheme
    let (code, head, v) = admin(&http, "GET", "/admin/queue/holds", None, "");
    assert_eq!(code, 401, "{v}");
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{head}"
    );
    assert_eq!(
        admin(
            &http,
            "POST",
            "/admin/queue/hold",
            Some("oncall-wrong"),
            "{\"domain\":\"x.test\"}"
        )
        .0,
        401
    );
    let basic = http_request(
        &http,
        "GET",
        "/admin/queue/holds",
        &[("Authorization", "Basic b25jYWxs")],
        "",
    )
    .unwrap();
    assert_eq!(basic.0, 401);

    // hold a domain; what is queued for it waits
    let v = ok(
        &http,
        "POST",
        "/admin/queue/hold",
        "{\"domain\":\"held.test\"}",
    );
    assert_eq!(v["result"], "domain held.test held");
    let spring = campaign(&fx, "spring", &["f1@free.test", "h1@held.test"]);
    enqueue(&fx, &spring);
    wait_until(Duration::from_secs(60), "free delivered, one held", || {
        delivered(&fx) == ["f1@free.test"] && held_now(&http) == Some(1.0)
    });
    let holds = ok(&http, "GET", "/admin/queue/holds", "");
    assert_eq!(
        holds,
        serde_json::json!([{"kind": "domain", "name": "held.test"}])
    );
    let found = ok(
        &http,
        "GET",
        "/admin/queue/inspect?email=h1%40held.test",
        "",
    );
    assert_eq!(found[0]["state"], "queued", "{found}");
    assert_eq!(found[0]["campaign"], "spring", "{found}");

    // bad requests say what is wrong; unknown actions are 404
    let (code, _, v) = admin(
        &http,
        "POST",
        "/admin/queue/hold",
        Some(TOKEN),
        "{\"domain\":\"a\",\"site\":\"b\"}",
    );
    assert_eq!(code, 400);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("exactly one of domain, site, campaign"),
        "{v}"
    );
    let (code, _, v) = admin(&http, "POST", "/admin/queue/retry", Some(TOKEN), "not json");
    assert_eq!(code, 400);
    assert!(v["error"].as_str().unwrap().contains("not JSON"), "{v}");
    assert_eq!(
        admin(&http, "POST", "/admin/queue/explode", Some(TOKEN), "{}").0,
        404
    );
    let (code, _, _) = admin(
        &http,
        "GET",
        "/admin/queue/deferred?limit=0",
        Some(TOKEN),
        "",
    );
    assert_eq!(code, 400);

    // release: delivered
    let v = ok(
        &http,
        "POST",
        "/admin/queue/release",
        "{\"domain\":\"held.test\"}",
    );
    assert_eq!(v["result"], "domain held.test released");
    wait_until(Duration::from_secs(60), "h1 delivered", || {
        delivered(&fx).len() == 2
    });

    // cancel a campaign before it comes; drain and resume
    let v = ok(
        &http,
        "POST",
        "/admin/queue/cancel",
        "{\"campaign\":\"later\",\"reason\":\"pulled\"}",
    );
    assert!(
        v["result"]
            .as_str()
            .unwrap()
            .starts_with("campaign later cancelled"),
        "{v}"
    );
    let endings = ok(&http, "GET", "/admin/queue/endings", "");
    assert_eq!(endings[0]["name"], "later");
    assert_eq!(endings[0]["reason"], "pulled");
    let v = ok(&http, "POST", "/admin/queue/drain", "{\"wait\": 30}");
    assert!(
        v["result"]
            .as_str()
            .unwrap()
            .starts_with("drained: nothing in flight"),
        "{v}"
    );
    let v = ok(&http, "POST", "/admin/queue/resume", "");
    assert_eq!(v["result"], "resumed: taking new work and delivering");

    // the log: who (the token's name, the address), what, when
    let log = ok(&http, "GET", "/admin/queue/log", "");
    let actions: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["hold", "release", "cancel", "drain", "resume"]);
    for a in log.as_array().unwrap() {
        assert_eq!(a["principal"], "oncall", "{a}");
        assert!(
            a["remote"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{a}"
        );
        assert!(a.get("uid").is_none(), "{a}");
    }

    // the token removed and SIGHUP: refused; the API off is 404
    fx.write("config.toml", &cfg);
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(service.id() as i32, libc::SIGHUP) };
    wait_until(Duration::from_secs(60), "the token refused", || {
        admin(&http, "GET", "/admin/queue/holds", Some(TOKEN), "").0 == 404
    });
    stop(service);
}
