//! Tests of the campaign ingest against a real spool: one message per
//! address, stopping, and resuming a stopped ingest.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use volley_spool::Spool;

use super::*;
use crate::campaign;

fn campaign_in(dir: &Path, list: &str) -> LoadedCampaign {
    std::fs::write(dir.join("body.txt"), "Hello {{n}}\n").unwrap();
    std::fs::write(dir.join("list.csv"), list).unwrap();
    std::fs::write(
        dir.join("campaign.toml"),
        "id = \"c1\"\nfrom = \"news@example.com\"\nsubject = \"Hi\"\ntext = \"body.txt\"\nrecipients = \"list.csv\"\n",
    )
    .unwrap();
    campaign::load(&dir.join("campaign.toml")).unwrap()
}

/// Addresses in the spool, lower-cased, sorted.
fn spooled(spool: &Spool) -> Vec<String> {
    let mut out = Vec::new();
    spool.for_each(|_, _, _, r| out.push(r.email.as_str().to_ascii_lowercase()));
    out.sort();
    out
}

#[test]
fn each_address_is_spooled_once() {
    let d = tempfile::tempdir().unwrap();
    let loaded = campaign_in(
        d.path(),
        "email,n\ndup@a.test,1\nDUP@A.TEST,2\nother@a.test,3\ndup@a.test,4\nDup@a.test,5\nbad,6\n",
    );
    let (spool, _) = Spool::open(&d.path().join("spool")).unwrap();
    let mut reported = Vec::new();
    let s = run(
        &spool,
        &loaded,
        Options::default(),
        |_, _| {},
        |sk| {
            reported.push(match sk {
                Skipped::Rejected(r) => (r.line, "rejected"),
                Skipped::Duplicate(d) => (d.line(), "duplicate"),
            })
        },
    )
    .unwrap();
    assert_eq!((s.accepted, s.duplicates, s.rejected), (2, 3, 1));
    assert_eq!(
        reported,
        vec![
            (3, "duplicate"),
            (5, "duplicate"),
            (6, "duplicate"),
            (7, "rejected")
        ]
    );
    assert_eq!(spooled(&spool), vec!["dup@a.test", "other@a.test"]);
}

#[test]
fn duplicates_name_their_lines() {
    let d = tempfile::tempdir().unwrap();
    let loaded = campaign_in(
        d.path(),
        "email,n\r\ndup@a.test,1\r\n\r\ndup@a.test,2\r\nDUP@A.TEST,3\r\nother@a.test,4\r\n\"dup@a.test\",5\r\n",
    );
    let (spool, _) = Spool::open(&d.path().join("spool")).unwrap();
    let mut dups = Vec::new();
    run(
        &spool,
        &loaded,
        Options::default(),
        |_, _| {},
        |sk| {
            if let Skipped::Duplicate(d) = sk {
                dups.push((d.line(), d.row, d.email.to_string()));
            }
        },
    )
    .unwrap();
    assert_eq!(
        dups,
        vec![
            (4, 2, "dup@a.test".to_string()),
            (5, 3, "DUP@a.test".to_string()),
            (7, 5, "dup@a.test".to_string())
        ]
    );
    // and kept when asked (for measuring)
    let loaded = campaign_in(d.path(), "email\na@x.test\nA@x.test\n");
    std::fs::remove_dir_all(d.path().join("spool")).unwrap();
    let (spool, _) = Spool::open(&d.path().join("spool")).unwrap();
    let opts = Options {
        keep_duplicates: true,
        ..Options::default()
    };
    let s = run(&spool, &loaded, opts, |_, _| {}, |_| {}).unwrap();
    assert_eq!((s.accepted, s.duplicates), (2, 0));
}

#[test]
fn a_stopped_ingest_resumes_after_its_last_row_and_still_skips_duplicates() {
    // enough rows that the ingest is stopped long before the end; every
    // address comes twice, the second time far after the first (in
    // another case), so that most second comings are read only by the
    // resumed run
    let n = 6 * BATCH;
    let mut list = String::from("email,n\n");
    for i in 0..n {
        list += &format!("u{i}@a.test,{i}\n");
        if i % 2 == 1 {
            list += &format!("U{}@A.TEST,again\n", i / 2);
        }
    }
    for i in n / 2..n {
        list += &format!("U{i}@a.test,again\n");
    }
    let d = tempfile::tempdir().unwrap();
    let loaded = campaign_in(d.path(), &list);
    let dir = d.path().join("spool");
    let first = {
        let (spool, _) = Spool::open(&dir).unwrap();
        let stop = AtomicBool::new(false);
        let opts = Options {
            stop: Some(&stop),
            ..Options::default()
        };
        let s = run(
            &spool,
            &loaded,
            opts,
            |_, _| stop.store(true, Ordering::Release),
            |_| {},
        )
        .unwrap();
        assert!(s.interrupted);
        assert!(!s.campaign.is_sealed());
        assert!(s.accepted > 0 && s.accepted < n as u64, "{s:?}");
        s.accepted
    };
    let (spool, _) = Spool::open(&dir).unwrap();
    let mut reported = 0u64;
    let s = run(
        &spool,
        &loaded,
        Options::default(),
        |_, _| {},
        |_| reported += 1,
    )
    .unwrap();
    assert!(!s.interrupted && s.campaign.is_sealed());
    assert_eq!(s.earlier, first);
    assert_eq!(s.earlier + s.accepted, n as u64);
    // every duplicate is counted, but those before the resume point were
    // reported by the first run
    assert_eq!(s.duplicates, n as u64);
    assert!(reported < n as u64, "{reported}");
    let got = spooled(&spool);
    assert_eq!(got.len(), n);
    assert!(got.windows(2).all(|w| w[0] != w[1]));
}
