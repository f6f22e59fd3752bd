//! `volley demo`: a real campaign end to end on this machine, with no outside
//! service. Starts the built-in SMTP sink on an ephemeral loopback port,
//! generates a throwaway DKIM key and the example campaign's recipients over
//! many domains, sends through the whole path (spool, shards, render, DKIM,
//! pipelined SMTP, journal, events) and reports throughput and events.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use volley_engine::campaign;
use volley_engine::capture::Capture;
use volley_engine::config::Config;
use volley_engine::engine::Options;
use volley_engine::message::keygen::{self, KeyAlgorithm, Replace};

use super::send::{deliver, print_summary};
use super::{CliResult, EXIT_OK, fail};

const HTML: &str = include_str!("../../../examples/templates/newsletter.html");
const TEXT: &str = include_str!("../../../examples/templates/newsletter.txt");
const FIRST: [&str; 16] = [
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret", "Dennis",
    "Radia", "Hedy", "Linus", "Karen", "Sophie", "Joan",
];
const CITIES: [&str; 8] = [
    "London", "Paris", "", "Lisbon", "Berlin", "Oslo", "Madrid", "",
];
const PLANS: [&str; 3] = ["free", "team", "business"];

fn io(e: std::io::Error) -> super::CliError {
    fail(anyhow::anyhow!(e))
}

/// Writes the campaign, recipients, key and config into `dir`.
fn write_files(
    dir: &Path,
    recipients: u32,
    domains: u32,
    sink: std::net::SocketAddr,
) -> Result<PathBuf, super::CliError> {
    std::fs::create_dir_all(dir.join("templates")).map_err(io)?;
    std::fs::write(dir.join("templates/newsletter.html"), HTML).map_err(io)?;
    std::fs::write(dir.join("templates/newsletter.txt"), TEXT).map_err(io)?;
    let mut csv = String::from("email,first_name,month,plan,city\n");
    for i in 0..recipients {
        let _ = writeln!(
            csv,
            "user{i}@d{}.demo.test,{},June,{},{}",
            i % domains.max(1),
            FIRST[i as usize % FIRST.len()],
            PLANS[i as usize % PLANS.len()],
            CITIES[i as usize % CITIES.len()]
        );
    }
    std::fs::write(dir.join("recipients.csv"), csv).map_err(io)?;
    std::fs::write(
        dir.join("campaign.toml"),
        r#"id = "demo-newsletter"
from = "Volley Demo <news@volley-demo.test>"
subject = "{{first_name}}, your {{month}} update"
html = "templates/newsletter.html"
text = "templates/newsletter.txt"
recipients = "recipients.csv"
list_unsubscribe = "https://volley-demo.test/unsubscribe?u={{email}}"
[tags]
campaign = "demo"
"#,
    )
    .map_err(io)?;
    // a throwaway key: a kept directory's old one is replaced
    let key = keygen::generate(
        KeyAlgorithm::Rsa,
        "volley-demo.test",
        "demo",
        &dir.join("dkim"),
        Replace::Existing,
    )
    .map_err(fail)?;
    std::fs::write(
        dir.join("config.toml"),
        format!(
            r#"[spool]
dir = "spool"
[events]
jsonl = "events.jsonl"
[delivery]
helo = "volley-demo.test"
messages_per_second = 100000
connections = 32
[routes]
"*" = "{sink}"
[[dkim]]
domain = "volley-demo.test"
selector = "demo"
key = "{}"
algorithm = "rsa-sha256"
"#,
            key.private_key.display()
        ),
    )
    .map_err(io)?;
    Ok(dir.join("campaign.toml"))
}

fn count_events(path: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    if let Ok(f) = std::fs::File::open(path) {
        for line in std::io::BufReader::new(f).lines().map_while(Result::ok) {
            let t = serde_json::from_str::<serde_json::Value>(&line)
                .ok()
                .and_then(|v| {
                    v.get("eventType")
                        .and_then(|t| t.as_str())
                        .map(str::to_string)
                })
                .unwrap_or_else(|| "(unreadable)".into());
            *out.entry(t).or_default() += 1;
        }
    }
    out
}

/// `volley demo`.
pub async fn run(recipients: u32, domains: u32, keep: Option<PathBuf>) -> CliResult {
    let tmp;
    let dir = match &keep {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir().map_err(io)?;
            tmp.path().to_path_buf()
        }
    };
    let sink = Capture::start("127.0.0.1:0".parse().map_err(fail)?, None)
        .await
        .map_err(fail)?;
    let campaign_path = write_files(&dir, recipients, domains, sink.addr)?;
    let config = Arc::new(Config::load(&dir.join("config.toml")).map_err(fail)?);
    let loaded = campaign::load(&campaign_path)
        .and_then(|l| l.with_configuration_set(&config))
        .map_err(fail)?;
    eprintln!(
        "demo: {recipients} recipients over {domains} domains, RSA-2048 DKIM, to the built-in sink on {}",
        sink.addr
    );
    let job = deliver(Arc::clone(&config), loaded, Options::default()).await?;
    print_summary(&job);
    let received = sink.counters.messages.load(Ordering::Relaxed);
    let mb = sink.counters.bytes.load(Ordering::Relaxed) as f64 / 1e6;
    println!("sink received {received} messages ({mb:.1} MB)");
    let events = count_events(&config.events.jsonl);
    let list: Vec<String> = events.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    println!(
        "events ({}): {}",
        config.events.jsonl.display(),
        list.join(", ")
    );
    if keep.is_some() {
        println!("files kept in {}", dir.display());
    }
    Ok(EXIT_OK)
}
