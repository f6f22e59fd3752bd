//! `tls = "verify"` against scripted TLS servers and a test CA (given to
//! `volley run` as its system roots through `SSL_CERT_FILE`): a server
//! whose certificate the CA signed for the address connected to gets the
//! message; a self-signed certificate, one signed for another name, and a
//! server without STARTTLS get none (the recipients are deferred, naming
//! why); a `[[domain]]` rule with `tls = "opportunistic"` still delivers to
//! the self-signed server.

use std::time::Duration;

use volley_tests::scripted::{self, ScriptedServer, TestCa};
use volley_tests::*;

fn server(tls: Option<std::sync::Arc<rustls::ServerConfig>>) -> ScriptedServer {
    ScriptedServer::start_with(
        scripted::Options {
            pipelining: true,
            tls,
            ..Default::default()
        },
        std::sync::Arc::new(|_: &str, _: u32| "250 2.1.5 Ok".to_string()),
    )
}

#[test]
fn verify_delivers_only_over_a_certificate_that_verifies_for_the_host() {
    let fx = Fixture::new();
    let ca = TestCa::new(fx.path());
    let good = server(Some(ca.server("good", &["IP:127.0.0.1", "DNS:localhost"])));
    let wrong_name = server(Some(ca.server("other", &["DNS:mx.other.test"])));
    let self_signed = server(Some(scripted::self_signed_tls()));
    let plain = server(None);
    fx.write(
        "config.toml",
        format!(
            "[spool]\ndir = \"spool\"\n[events]\njsonl = \"events.jsonl\"\n[http]\nlisten = \"127.0.0.1:{}\"\n\
             [delivery]\ntls = \"verify\"\nretry_first = \"1h\"\n\
             [[domain]]\nname = \"lax.test\"\ntls = \"opportunistic\"\n\
             [routes]\n\"good.test\" = \"{}\"\n\"wrong.test\" = \"{}\"\n\"self.test\" = \"{}\"\n\"lax.test\" = \"{}\"\n\"plain.test\" = \"{}\"\n",
            free_port(),
            good.addr,
            wrong_name.addr,
            self_signed.addr,
            self_signed.addr,
            plain.addr,
        ),
    );
    fx.write(
        "list.csv",
        "email\na@good.test\nb@wrong.test\nc@self.test\nd@lax.test\ne@plain.test\n",
    );
    fx.campaign("list.csv", "Hi", "Hello\n", "");
    fx.enqueue();
    let service = spawn_env(
        fx.path(),
        &["run", "--config", "config.toml"],
        &[("SSL_CERT_FILE", &ca.pem())],
    );
    wait_until(
        Duration::from_secs(60),
        "two delivered, three deferred",
        || {
            let e = fx.events();
            per_recipient(&e, "Delivery").len() == 2
                && per_recipient(&e, "DeliveryDelay").len() == 3
        },
    );
    let events = fx.events();
    let delivered: Vec<String> = per_recipient(&events, "Delivery").into_keys().collect();
    assert_eq!(delivered, ["a@good.test", "d@lax.test"]);
    let why = |rcpt: &str| -> String {
        events
            .iter()
            .find(|e| e["eventType"] == "DeliveryDelay" && e["mail"]["destination"][0] == rcpt)
            .map(|e| e["deliveryDelay"]["delayedRecipients"][0]["diagnosticCode"].to_string())
            .unwrap_or_default()
    };
    assert!(
        why("b@wrong.test").to_lowercase().contains("certificate"),
        "{}",
        why("b@wrong.test")
    );
    assert!(
        why("c@self.test").to_lowercase().contains("certificate"),
        "{}",
        why("c@self.test")
    );
    assert!(
        why("e@plain.test").contains("does not offer STARTTLS"),
        "{}",
        why("e@plain.test")
    );
    // nothing reached the servers that did not verify
    assert_eq!(good.received().len(), 1);
    assert!(wrong_name.received().is_empty());
    assert!(plain.received().is_empty());
    assert_eq!(self_signed.received().len(), 1, "only lax.test's message");
    stop(service);
}
