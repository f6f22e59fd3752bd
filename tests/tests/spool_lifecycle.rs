//! The spool cleans up after itself: once a campaign is delivered and its
//! events published, its segments and old journal files are deleted and
//! disk use returns to near zero; `status` keeps the campaign's counts.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use volley_tests::scripted::ScriptedServer;
use volley_tests::*;

/// Bytes allocated on disk under `dir` (sparse files count what they use).
fn allocated(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let m = e.metadata().unwrap();
        total += if m.is_dir() {
            allocated(&e.path())
        } else {
            m.blocks() * 512
        };
    }
    total
}

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn disk_use_returns_to_near_zero_after_a_campaign() {
    let server = ScriptedServer::accept_all(true);
    let fx = Fixture::new();
    let mut csv = String::from("email,note\n");
    let note = "n".repeat(1000);
    for i in 0..20_000 {
        csv.push_str(&format!("r{i}@c{}.test,{note}\n", i % 5));
    }
    fx.write("list.csv", csv);
    fx.campaign("list.csv", "Hi", "Hello\n", "");
    fx.config(
        &server.addr.to_string(),
        "[delivery]\nmessages_per_second = 100000\n",
    );
    let spool = fx.path().join("spool");

    let out = run(
        fx.path(),
        &["enqueue", "campaign.toml", "--config", "config.toml"],
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let full = allocated(&spool);
    assert!(
        full > 20_000 * 1000,
        "the spooled campaign takes {full} bytes"
    );

    let out = run(
        fx.path(),
        &["send", "campaign.toml", "--config", "config.toml"],
        Duration::from_secs(240),
    );
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(per_recipient(&fx.events(), "Delivery").len(), 20_000);

    let after = allocated(&spool);
    println!("spool: {full} bytes with the campaign queued, {after} bytes after it was delivered");
    assert_eq!(
        count(&spool.join("segments")),
        0,
        "finished segments are deleted"
    );
    assert!(
        count(&spool.join("journal")) <= 2,
        "old journal files are deleted"
    );
    assert!(
        after < 5 << 20,
        "{after} bytes left (journal reserve 4 MiB)"
    );

    // the counts stay
    let out = run(
        fx.path(),
        &["status", "--config", "config.toml", "--json"],
        Duration::from_secs(60),
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["campaigns"][0]["delivered"], 20_000);
    assert_eq!(s["totals"]["queued"], 0);
}
