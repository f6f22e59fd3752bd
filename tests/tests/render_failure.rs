//! A template that uses a variable some rows lack: a `Rendering Failure`
//! event for exactly those recipients, delivery for the rest.

use std::time::Duration;

use volley_tests::scripted::ScriptedServer;
use volley_tests::*;

#[test]
fn missing_variable_fails_only_those_recipients() {
    let server = ScriptedServer::accept_all(true);
    let fx = Fixture::new();
    let mut csv = String::from("email,first_name,coupon\n");
    let mut lacking = Vec::new();
    let mut complete = Vec::new();
    for i in 0..40 {
        let email = format!("p{i}@r{}.test", i % 4);
        if i % 5 == 0 {
            csv.push_str(&format!("{email},Name{i},\n")); // no coupon
            lacking.push(email);
        } else {
            csv.push_str(&format!("{email},Name{i},C{i}\n"));
            complete.push(email);
        }
    }
    fx.write("list.csv", csv);
    fx.campaign(
        "list.csv",
        "Hi {{first_name}}",
        "Hello {{first_name}},\n{{#if first_name}}welcome{{/if}}\nyour coupon: {{coupon}}\n",
        "",
    );
    fx.config(&server.addr.to_string(), "");
    let out = fx.send_ok(Duration::from_secs(60));
    assert!(
        text(&out.stdout).contains("render-failed 8"),
        "{}",
        text(&out.stdout)
    );

    let ev = fx.events();
    let failures: Vec<_> = ev
        .iter()
        .filter(|e| e["eventType"] == "Rendering Failure")
        .collect();
    let mut failed: Vec<String> = failures
        .iter()
        .map(|e| e["mail"]["destination"][0].as_str().unwrap().to_string())
        .collect();
    failed.sort();
    lacking.sort();
    assert_eq!(failed, lacking);
    for f in &failures {
        assert_eq!(f["failure"]["templateName"], "test-campaign");
        let msg = f["failure"]["errorMessage"].as_str().unwrap();
        assert!(
            msg.starts_with("Attribute 'coupon' is not present in the rendering data."),
            "{msg}"
        );
        assert!(f.get("send").is_none());
    }
    let delivered = per_recipient(&ev, "Delivery");
    assert_eq!(delivered.len(), complete.len());
    assert!(complete.iter().all(|r| delivered.get(r) == Some(&1)));
    let mut received: Vec<String> = server
        .received()
        .into_iter()
        .flat_map(|m| m.rcpts)
        .collect();
    received.sort();
    complete.sort();
    assert_eq!(received, complete);
    assert!(ev.iter().filter(|e| e["eventType"] == "Send").count() == complete.len());
}
