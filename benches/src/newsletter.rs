//! The end-to-end benches' workload: the personalized example newsletter
//! campaign (examples/templates, ~21 KB HTML + text with List-Unsubscribe),
//! its recipient list and its DKIM key, written into a [`Fixture`] for
//! `volley send`, and the same campaign as a [`CampaignDef`] for benches
//! that build messages in process.
//!
//! Inputs: the recipient count and a function giving each recipient's
//! domain; outputs: files in the fixture (`campaign.toml`, `recipients.csv`,
//! `templates/`, `dkim.pem`) and the `[[dkim]]` config lines that name them.
//! Only generated, trusted input.

use std::path::PathBuf;

use volley_engine::campaign::CampaignDef;
use volley_engine::config::DkimAlgorithm;
use volley_engine::message::keygen::{KeyAlgorithm, make_key};
use volley_tests::Fixture;

/// The example newsletter's HTML part (a Handlebars template).
pub const HTML: &str = include_str!("../../examples/templates/newsletter.html");
/// The example newsletter's text part (a Handlebars template).
pub const TEXT: &str = include_str!("../../examples/templates/newsletter.txt");

/// The From domain the DKIM key signs for.
pub const FROM_DOMAIN: &str = "bench.test";
const SELECTOR: &str = "b";

/// The campaign file; paths are relative to the fixture.
const CAMPAIGN_TOML: &str = "id = \"bench\"\nfrom = \"Bench <news@bench.test>\"\nsubject = \"{{first_name}}, your {{month}} update\"\nhtml = \"templates/newsletter.html\"\ntext = \"templates/newsletter.txt\"\nrecipients = \"recipients.csv\"\nlist_unsubscribe = \"https://bench.test/u?e={{email}}\"\n";

/// The campaign as the engine holds it after loading `campaign.toml`.
pub fn def() -> CampaignDef {
    CampaignDef {
        id: "bench".into(),
        from: "Bench <news@bench.test>".into(),
        from_name: Some("Bench".into()),
        from_addr: "news@bench.test".into(),
        reply_to: None,
        subject: "{{first_name}}, your {{month}} update".into(),
        html: Some(HTML.into()),
        text: Some(TEXT.into()),
        list_unsubscribe: Some("https://bench.test/u?e={{email}}".into()),
        tags: Default::default(),
        columns: vec![],
        personalized: true,
        to: None,
        configuration_set: None,
        message: None,
        list_management: None,
        pool: None,
    }
}

/// A DKIM signing algorithm of the bench, by its config name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Rsa,
    Ed25519,
}

impl Alg {
    /// `VOLLEY_BENCH_ALG` (`rsa` or `ed25519`), or `default` when unset;
    /// panics naming the variable on any other value.
    pub fn from_env(default: Alg) -> Alg {
        match std::env::var("VOLLEY_BENCH_ALG").as_deref() {
            Err(_) => default,
            Ok("rsa") => Alg::Rsa,
            Ok("ed25519") => Alg::Ed25519,
            Ok(other) => panic!("VOLLEY_BENCH_ALG={other:?}: expected rsa or ed25519"),
        }
    }

    /// The config's name of the algorithm (`[[dkim]] algorithm`).
    pub fn name(self) -> &'static str {
        match self {
            Alg::Rsa => "rsa-sha256",
            Alg::Ed25519 => "ed25519-sha256",
        }
    }

    pub fn dkim(self) -> DkimAlgorithm {
        match self {
            Alg::Rsa => DkimAlgorithm::RsaSha256,
            Alg::Ed25519 => DkimAlgorithm::Ed25519Sha256,
        }
    }

    fn key(self) -> KeyAlgorithm {
        match self {
            Alg::Rsa => KeyAlgorithm::Rsa,
            Alg::Ed25519 => KeyAlgorithm::Ed25519,
        }
    }
}

/// Writes a fresh private key (RSA-2048 or Ed25519) as `dkim.pem`.
pub fn write_key(fx: &Fixture, alg: Alg) -> PathBuf {
    let (pem, _) = make_key(alg.key()).expect("generating the DKIM key");
    fx.write("dkim.pem", pem)
}

/// The `[[dkim]]` table for the key [`write_key`] wrote.
pub fn dkim_config(alg: Alg) -> String {
    format!(
        "[[dkim]]\ndomain = \"{FROM_DOMAIN}\"\nselector = \"{SELECTOR}\"\nkey = \"dkim.pem\"\nalgorithm = \"{}\"\n",
        alg.name()
    )
}

/// Writes the campaign, its templates and `n` recipients
/// `user<i>@<domain(i)>`, each with its own first name and one of 13
/// cities (every message differs).
pub fn write_campaign(fx: &Fixture, n: usize, domain: impl Fn(usize) -> String) {
    fx.write("templates/newsletter.html", HTML);
    fx.write("templates/newsletter.txt", TEXT);
    let mut csv = String::with_capacity(n * 60 + 64);
    csv.push_str("email,first_name,month,plan,city\n");
    for i in 0..n {
        csv.push_str(&format!(
            "user{i}@{},Name{i},June,team,City{}\n",
            domain(i),
            i % 13
        ));
    }
    fx.write("recipients.csv", csv);
    fx.write("campaign.toml", CAMPAIGN_TOML);
}
