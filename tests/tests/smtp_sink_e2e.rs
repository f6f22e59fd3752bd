//! End to end against Postfix's smtp-sink (a peer we did not write): a
//! 1,000-recipient campaign over 12 domains arrives complete, the JSONL file
//! holds exactly one Delivery per recipient, and sampled messages verify with
//! dkimpy (verify_dkim.py) for RSA-2048, Ed25519, and both signatures.

use std::time::Duration;

use volley_tests::*;

const N: usize = 1000;
const DOMAINS: usize = 12;

fn campaign_with_keys(keys: &[(&str, &str)]) {
    let sink = PostfixSink::start();
    let fx = Fixture::new();
    let mut dkim = String::new();
    let mut key_args = Vec::new();
    for (sel, alg) in keys {
        let out = run(
            fx.path(),
            &[
                "keygen",
                "--algorithm",
                alg,
                "--domain",
                "example.com",
                "--selector",
                sel,
                "--out",
                "keys",
            ],
            Duration::from_secs(60),
        );
        assert!(out.status.success(), "keygen: {}", text(&out.stderr));
        let algorithm = if *alg == "rsa" {
            "rsa-sha256"
        } else {
            "ed25519-sha256"
        };
        dkim.push_str(&format!(
            "[[dkim]]\ndomain = \"example.com\"\nselector = \"{sel}\"\nkey = \"keys/{sel}.example.com.key.pem\"\nalgorithm = \"{algorithm}\"\n"
        ));
        key_args.push(format!(
            "{sel}._domainkey.example.com={}",
            fx.path()
                .join(format!("keys/{sel}.example.com.txt"))
                .display()
        ));
    }
    let mut csv = String::from("email,first_name,city\n");
    let mut all = Vec::new();
    for i in 0..N {
        let email = format!("user{i}@dom{}.test", i % DOMAINS);
        csv.push_str(&format!("{email},Name{i},City {}\n", i % 7));
        all.push(email);
    }
    fx.write("list.csv", csv);
    fx.write("page.html", "<html><body><h1>Hello {{first_name}}</h1><p>News from {{city}}.</p>\n<p>.a line starting with a dot</p></body></html>\n");
    fx.campaign(
        "list.csv",
        "Hi {{first_name}}",
        "Hello {{first_name}} from {{city}}\n.leading dot line\n",
        "html = \"page.html\"\nlist_unsubscribe = \"https://example.com/u?e={{email}}\"\n[tags]\nkind = \"test\"\n",
    );
    fx.config(
        &sink.addr(),
        &format!("[delivery]\nconnections = 3\nmessages_per_second = 100000\n{dkim}"),
    );

    let out = run(
        fx.path(),
        &["send", "campaign.toml", "--config", "config.toml"],
        Duration::from_secs(240),
    );
    assert_no_panic(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("delivered 1000"),
        "{}",
        text(&out.stdout)
    );

    // every recipient arrived at the sink exactly once
    wait_until(Duration::from_secs(10), "sink dumps complete", || {
        sink.recipients().len() >= N
    });
    let mut got = sink.recipients();
    got.sort();
    let mut want = all.clone();
    want.sort();
    assert_eq!(got, want);

    // exactly one Delivery event per recipient, SES-shaped
    let ev = fx.events();
    let deliveries = per_recipient(&ev, "Delivery");
    assert_eq!(deliveries.len(), N);
    assert!(deliveries.values().all(|&n| n == 1));
    let d = ev.iter().find(|e| e["eventType"] == "Delivery").unwrap();
    assert!(
        d["delivery"]["smtpResponse"]
            .as_str()
            .unwrap()
            .starts_with("250")
    );
    assert!(
        d["mail"]["messageId"]
            .as_str()
            .unwrap()
            .ends_with("-000000")
    );
    assert_eq!(d["mail"]["source"], "news@example.com");
    assert_eq!(
        d["mail"]["commonHeaders"]["from"][0],
        "Sender <news@example.com>"
    );
    assert_eq!(d["mail"]["tags"]["kind"][0], "test");
    assert!(d["delivery"]["processingTimeMillis"].is_u64());

    // sampled messages verify with an independent DKIM verifier
    let files = sink.files();
    let step = files.len() / 15;
    for f in files.iter().step_by(step.max(1)).take(15) {
        let (ok, report) = verify_dkim(f, &key_args);
        assert!(ok, "{}: {report}", f.display());
        assert_eq!(report.matches(": pass").count(), keys.len(), "{report}");
        let msg = std::fs::read_to_string(f).unwrap();
        assert!(msg.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"));
        assert!(msg.contains("List-Unsubscribe:"));
        // both RFC 8058 headers are covered by every signature
        let unfolded = msg.replace("\n\t", "").replace("\n ", " ");
        let signed: Vec<&str> = unfolded
            .lines()
            .filter(|l| l.starts_with("DKIM-Signature:"))
            .collect();
        assert_eq!(signed.len(), keys.len());
        for sig in signed {
            // headers relaxed, body simple (as Amazon SES signs)
            let c = sig
                .split(';')
                .find_map(|t| t.trim().strip_prefix("c="))
                .expect("c= tag");
            assert_eq!(c, "relaxed/simple", "{sig}");
            let h = sig
                .split(';')
                .find_map(|t| t.trim().strip_prefix("h="))
                .expect("h= tag");
            let names: Vec<String> = h
                .split(':')
                .map(|n| n.trim().to_ascii_lowercase())
                .collect();
            assert!(
                names.contains(&"list-unsubscribe".into())
                    && names.contains(&"list-unsubscribe-post".into()),
                "{h}"
            );
        }
    }
}

#[test]
fn rsa_2048() {
    campaign_with_keys(&[("s1", "rsa")]);
}

#[test]
fn ed25519() {
    campaign_with_keys(&[("e1", "ed25519")]);
}

#[test]
fn rsa_and_ed25519_at_once() {
    campaign_with_keys(&[("s1", "rsa"), ("e1", "ed25519")]);
}
