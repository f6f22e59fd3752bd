//! Helpers shared by the spool's integration tests.

#![allow(dead_code)] // each test file uses a part

use std::path::Path;

use volley_spool::{Entry, Kind, Recipient, RecipientId, Spool, Vars};

pub fn rec(campaign: u32, i: u32) -> Recipient {
    let mut vars = Vec::new();
    Vars::encode_columns(
        [
            format!("Name {i}").as_str(),
            "x".repeat((i % 13) as usize).as_str(),
        ],
        &mut vars,
    );
    Recipient {
        campaign,
        row: i + 1,
        email: format!("user{i}@d{}.test", i % 7),
        vars,
    }
}

pub fn outcome(id: RecipientId, kind: Kind) -> Entry {
    Entry::outcome(
        kind,
        id,
        1,
        1,
        if kind == Kind::Deferred { 99 } else { 0 },
        b"250 ok".to_vec(),
    )
}

pub fn seg_path(dir: &Path, no: u32) -> std::path::PathBuf {
    dir.join(format!("segments/{no:08}.seg"))
}

pub fn rec_at(campaign: u32, i: u32, domains: u32) -> Recipient {
    let mut vars = Vec::new();
    Vars::encode_columns([format!("Name {i}").as_str()], &mut vars);
    Recipient {
        campaign,
        row: i + 1,
        email: format!("user{i}@dom{}.example", i % domains),
        vars,
    }
}

pub fn big_records(campaign: u32, n: u32) -> Vec<Recipient> {
    (0..n)
        .map(|i| {
            let mut vars = Vec::new();
            Vars::encode_json(&format!("{{\"x\":\"{}\"}}", "x".repeat(40_000)), &mut vars);
            Recipient {
                campaign,
                row: i + 1,
                email: format!("u{i}@big.test"),
                vars,
            }
        })
        .collect()
}

/// Opens the spool in `dir`, creates campaign "c" and appends the records
/// `recs` makes for its number; returns the open spool and their ids.
pub fn spooled(dir: &Path, recs: impl FnOnce(u32) -> Vec<Recipient>) -> (Spool, Vec<RecipientId>) {
    let (spool, _) = Spool::open(dir).unwrap();
    let c = spool.create_campaign("c", b"{}").unwrap();
    let ids = spool.append(&recs(c.no)).unwrap();
    (spool, ids)
}

/// A clock tests move by hand.
#[derive(Clone)]
pub struct TestClock(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl TestClock {
    pub fn at(ms: u64) -> TestClock {
        TestClock(std::sync::Arc::new(ms.into()))
    }

    pub fn set(&self, ms: u64) {
        self.0.store(ms, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn clock(&self) -> volley_spool::Clock {
        let t = std::sync::Arc::clone(&self.0);
        std::sync::Arc::new(move || t.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// Opens the spool in `dir` on this clock.
    pub fn open(&self, dir: &Path) -> (Spool, volley_spool::OpenReport) {
        Spool::open_with_clock(dir, self.clock()).unwrap()
    }
}
