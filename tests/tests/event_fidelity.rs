//! SES fidelity of events, against Postfix's smtp-sink: `mail.headers` of
//! every Send and Delivery event are exactly the headers the receiver got
//! (DKIM-Signature first, all of them, in order, values unfolded);
//! `commonHeaders` has the `date` of that Date header and `replyTo`;
//! `mail.sourceArn` and `mail.sendingAccountId` come from `[events]`; a
//! Rendering Failure whose subject rendered carries the rendered subject.

use std::collections::HashMap;
use std::time::Duration;

use volley_tests::*;

const N: usize = 6;

/// The message headers of an smtp-sink dump (its own `X-` lines and
/// `Received` header left out), unfolded, with the recipient.
fn dumped_headers(dump: &str) -> (String, Vec<(String, String)>) {
    let head = dump.split("\n\n").next().unwrap().replace("\n\t", "\t");
    let head = head.replace("\n ", " ");
    let mut rcpt = String::new();
    let mut headers = Vec::new();
    for line in head.lines() {
        let (name, value) = line.split_once(':').unwrap();
        let value = value.trim_start_matches([' ', '\t']);
        if name == "X-Rcpt-Args" {
            rcpt = value.trim_matches(['<', '>']).to_string();
        } else if !(name.starts_with("X-") || name == "Received") || !headers.is_empty() {
            headers.push((name.to_string(), value.to_string()));
        }
    }
    (rcpt, headers)
}

fn event_headers(e: &serde_json::Value) -> Vec<(String, String)> {
    e["mail"]["headers"]
        .as_array()
        .expect("mail.headers")
        .iter()
        .map(|h| {
            (
                h["name"].as_str().unwrap().to_string(),
                h["value"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn events_carry_the_headers_sent_and_the_configured_identity() {
    let sink = PostfixSink::start();
    let fx = Fixture::new();
    let out = run(
        fx.path(),
        &[
            "keygen",
            "--algorithm",
            "ed25519",
            "--domain",
            "example.com",
            "--selector",
            "e1",
            "--out",
            "keys",
        ],
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "keygen: {}", text(&out.stderr));
    let mut csv = String::from("email,first,coupon\n");
    for i in 0..N {
        // the last recipient has no coupon: its text part cannot render
        let coupon = if i == N - 1 {
            String::new()
        } else {
            format!("C{i}")
        };
        csv.push_str(&format!("u{i}@dom.test,Name{i},{coupon}\n"));
    }
    fx.write("list.csv", csv);
    fx.campaign(
        "list.csv",
        "Hi {{first}}",
        "Hello {{first}}, your coupon: {{coupon}}\n",
        "reply_to = \"Help <help@example.com>\"\nlist_unsubscribe = \"https://example.com/u?e={{email}}\"\n",
    );
    fx.write(
        "config.toml",
        format!(
            "[spool]\ndir = \"spool\"\n[http]\nlisten = \"127.0.0.1:{}\"\n[events]\njsonl = \"events.jsonl\"\naccount_id = \"123456789012\"\nidentity_arn = \"arn:aws:ses:eu-west-1:{{account_id}}:identity/{{domain}}\"\n[[dkim]]\ndomain = \"example.com\"\nselector = \"e1\"\nkey = \"keys/e1.example.com.key.pem\"\nalgorithm = \"ed25519-sha256\"\n[routes]\n\"*\" = \"{}\"\n",
            free_port(),
            sink.addr()
        ),
    );
    let out = fx.volley("send", Duration::from_secs(120));
    assert!(
        text(&out.stdout).contains("render-failed 1"),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    wait_until(Duration::from_secs(10), "sink dumps complete", || {
        sink.recipients().len() >= N - 1
    });
    let mut sent: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for f in sink.files() {
        let (rcpt, headers) = dumped_headers(&std::fs::read_to_string(&f).unwrap());
        sent.insert(rcpt, headers);
    }
    assert_eq!(sent.len(), N - 1);

    let ev = fx.events();
    let mut checked = 0;
    for e in ev
        .iter()
        .filter(|e| matches!(e["eventType"].as_str(), Some("Send" | "Delivery")))
    {
        let rcpt = e["mail"]["destination"][0].as_str().unwrap();
        let headers = event_headers(e);
        assert_eq!(&headers, &sent[rcpt], "{rcpt}: mail.headers are those sent");
        assert_eq!(headers[0].0, "DKIM-Signature");
        let m = &e["mail"];
        assert_eq!(m["headersTruncated"], false);
        let date = headers.iter().find(|(n, _)| n == "Date").unwrap();
        assert_eq!(m["commonHeaders"]["date"], date.1.as_str());
        assert_eq!(
            m["commonHeaders"]["replyTo"],
            serde_json::json!(["Help <help@example.com>"])
        );
        assert_eq!(
            m["sourceArn"],
            "arn:aws:ses:eu-west-1:123456789012:identity/example.com"
        );
        assert_eq!(m["sendingAccountId"], "123456789012");
        checked += 1;
    }
    assert_eq!(checked, 2 * (N - 1), "a Send and a Delivery per recipient");

    let failure = ev
        .iter()
        .find(|e| e["eventType"] == "Rendering Failure")
        .expect("a Rendering Failure");
    assert_eq!(
        failure["mail"]["commonHeaders"]["subject"],
        format!("Hi Name{}", N - 1),
        "the rendered subject, not the template"
    );
    assert_eq!(failure["mail"]["sendingAccountId"], "123456789012");
}
