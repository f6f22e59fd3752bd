//! What the suppression list costs the campaign ingest, side by side in
//! one run (rounds alternate, so the machine's noise falls on both): the
//! durable ingest (`ingest::run` into a fresh spool, every batch
//! fdatasync'd) with each durable batch checked against the list as the
//! service checks it (`ingest::suppressed`, then `ingest::works`), with an
//! empty list and with a list of millions of addresses, some of them in
//! the campaign. Also: opening the list (as `volley run` does at start),
//! its index's memory, and the process's peak RSS. And what production's
//! feedback marks cost per message (the signed return path, and the
//! one-click URL and mailto: unsubscribe targets).
//!
//! `cargo bench -p volley-benches --bench suppression_ingest`
//! Environment: VOLLEY_BENCH_SUPP_ROWS (campaign rows, default 2,000,000),
//! VOLLEY_BENCH_SUPP_LIST (suppressed addresses, default 10,000,000),
//! VOLLEY_BENCH_SUPP_EVERY (every Nth campaign row is on the list, default
//! 100), VOLLEY_BENCH_SUPP_ROUNDS (rounds of each mode, default 4).

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use volley_engine::campaign;
use volley_engine::feedback::suppression::{Entry, Reason, SuppressionList};
use volley_engine::ingest;
use volley_spool::Spool;
use volley_tests::Fixture;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn peak_rss() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn listed(i: u64) -> String {
    format!("s{i:010}@d{:03}.bench.test", i % 1000)
}

/// Spools the campaign into a fresh spool, checking each batch against
/// `list`; (seconds, recipients spooled, recipients found on the list).
fn ingest_with(
    dir: &Path,
    loaded: &campaign::LoadedCampaign,
    list: &SuppressionList,
) -> (f64, u64, u64) {
    let spool_dir = dir.join("spool");
    let _ = std::fs::remove_dir_all(&spool_dir);
    let start = Instant::now();
    let (spool, _) = Spool::open(&spool_dir).expect("spool");
    let mut domains = ingest::Domains::default();
    let mut found = 0u64;
    let mut works = 0usize;
    let s = ingest::run(
        &spool,
        loaded,
        ingest::Options::default(),
        |ids, recs| {
            let l = ingest::suppressed(list, recs, None);
            found += l.len() as u64;
            works += ingest::works(&mut domains, ids, recs).len();
        },
        |_| {},
    )
    .expect("ingest");
    let secs = start.elapsed().as_secs_f64();
    drop(spool);
    let _ = std::fs::remove_dir_all(&spool_dir);
    assert_eq!(works as u64, s.accepted);
    (secs, s.accepted, found)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rows: u64 = env_or("VOLLEY_BENCH_SUPP_ROWS", 2_000_000);
    let size: u64 = env_or("VOLLEY_BENCH_SUPP_LIST", 10_000_000);
    let every: u64 = env_or("VOLLEY_BENCH_SUPP_EVERY", 100);
    let rounds: u32 = env_or("VOLLEY_BENCH_SUPP_ROUNDS", 4);
    let fx = Fixture::new();

    // the list: `size` addresses, added in batches (one fdatasync each)
    let t = Instant::now();
    let full_dir = fx.path().join("full");
    {
        let list = SuppressionList::open(&full_dir).expect("list");
        let now = volley_spool::now_ms();
        let mut i = 0;
        while i < size {
            let batch: Vec<Entry> = (i..size.min(i + 200_000))
                .map(|j| Entry::new(listed(j), Reason::Bounce, now))
                .collect();
            list.add(batch).expect("add");
            i += 200_000;
        }
        list.compact().expect("compact");
    }
    let built = t.elapsed().as_secs_f64();
    let rss0 = peak_rss();
    let t = Instant::now();
    let full = SuppressionList::open(&full_dir).expect("reopen");
    let opened = t.elapsed().as_secs_f64();
    let empty = SuppressionList::open(&fx.path().join("empty")).expect("empty list");
    println!(
        "suppression and ingest: a list of {} addresses (built in {built:.1} s; opened in {opened:.2} s; index {:.1} MiB = {:.1} bytes per address; peak RSS {rss0:.0} -> {:.0} MiB)",
        full.len(),
        full.index_bytes() as f64 / (1 << 20) as f64,
        full.index_bytes() as f64 / full.len().max(1) as f64,
        peak_rss()
    );

    // the campaign: one row in `every` is on the list
    let path = fx.path().join("list.csv");
    let mut w =
        std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path).expect("list"));
    writeln!(w, "email,first_name").expect("write");
    for i in 0..rows {
        let email = if i % every == 0 {
            listed((i / every) % size.max(1))
        } else {
            format!("u{i:010}@d{:03}.bench.test", i % 1000)
        };
        writeln!(w, "{email},First{:07}", i % 9_999_991).expect("write");
    }
    w.flush().expect("flush");
    drop(w);
    fx.write("body.txt", "Hello {{first_name}}\n");
    fx.write(
        "campaign.toml",
        "id = \"supp\"\nfrom = \"Bench <news@bench.test>\"\nsubject = \"Hi\"\ntext = \"body.txt\"\nrecipients = \"list.csv\"\n",
    );
    let loaded = campaign::load(&fx.path().join("campaign.toml")).expect("campaign");
    println!("  campaign: {rows} rows, one in {every} on the list");

    marks();

    let mut runs: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        for with in [round % 2 == 0, round % 2 != 0] {
            let list = if with { &full } else { &empty };
            let (secs, accepted, found) = ingest_with(fx.path(), &loaded, list);
            println!(
                "  round {round}: durable ingest {} the list: {secs:.2} s = {:.0} rows/s ({accepted} spooled, {found} on the list)",
                if with { "with" } else { "without" },
                rows as f64 / secs
            );
            runs[usize::from(with)].push(secs);
        }
    }
    let median = |v: &[f64]| {
        let mut x = v.to_vec();
        x.sort_by(f64::total_cmp);
        x.get(x.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    for (what, pick) in [
        ("best", &best as &dyn Fn(&[f64]) -> f64),
        ("median", &median),
    ] {
        let (without, with) = (pick(&runs[0]), pick(&runs[1]));
        println!(
            "  {what} of {rounds}: without the list {:.0} rows/s, with {} addresses {:.0} rows/s: {:.1}% of the rate without",
            rows as f64 / without,
            full.len(),
            rows as f64 / with,
            without / with * 100.0
        );
    }
}

/// Time per message of the return path and unsubscribe targets.
fn marks() {
    use volley_engine::config::FeedbackConfig;
    use volley_engine::config::feedback::KeyConfig;
    use volley_engine::feedback::marks::Marks;
    let mut c = FeedbackConfig {
        bounce_domain: Some("bounces.bench.test".into()),
        ..FeedbackConfig::default()
    };
    c.keys.push(KeyConfig {
        id: "k1".into(),
        secret: Some("c2VjcmV0LXRva2VuLWtleS1mb3ItYmVuY2hlcyE=".into()),
        secret_file: None,
    });
    c.unsubscribe.base_url = Some("https://mail.bench.test".into());
    c.unsubscribe.mailto = true;
    let m = Marks::from_config(&c, 7).expect("marks").expect("on");
    let n = 200_000u64;
    let emails: Vec<String> = (0..n)
        .map(|i| format!("u{i:010}@d{:03}.bench.test", i % 1000))
        .collect();
    let t = Instant::now();
    let mut bytes = 0usize;
    for (i, e) in emails.iter().enumerate() {
        let id = volley_spool::RecipientId::new(1, i as u32);
        let r = Marks::mail_ref(3, id, std::slice::from_ref(e));
        bytes += m.return_path("news@bench.test", &r).len();
    }
    let rp = t.elapsed().as_secs_f64() / n as f64;
    let t = Instant::now();
    for (i, e) in emails.iter().enumerate() {
        let id = volley_spool::RecipientId::new(1, i as u32);
        let u = m.unsubscribe(3, id, e, Some("weekly"));
        bytes += u.url.map_or(0, |s| s.len()) + u.mailto.map_or(0, |s| s.len());
    }
    let un = t.elapsed().as_secs_f64() / n as f64;
    std::hint::black_box(bytes);
    println!(
        "  feedback marks per message: signed return path {:.2} us, unsubscribe URL + mailto {:.2} us",
        rp * 1e6,
        un * 1e6
    );
}
