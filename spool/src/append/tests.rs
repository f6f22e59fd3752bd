//! Group commit of appends, proven without timing: the first append's
//! segment sync (then the first journal sync) is held in progress while the
//! other producers queue behind it.

use std::sync::Arc;

use crate::Spool;
use crate::record::{Recipient, Vars};

fn rec(campaign: u32, i: u32) -> Recipient {
    let mut vars = Vec::new();
    Vars::encode_columns([format!("Name {i}").as_str()], &mut vars);
    Recipient {
        campaign,
        row: i + 1,
        email: format!("user{i}@a.test"),
        vars,
    }
}

#[test]
fn appends_queued_behind_a_sync_share_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    let spool = Arc::new(spool);
    let no = spool.create_campaign("c", b"{}").unwrap().no;
    spool.append(&[rec(no, 0)]).unwrap(); // the segment exists
    let before = spool.sync_counts();
    let seg_held = spool.seg_commit.hold_next_sync();
    let journal_held = spool.journal_commit.hold_next_sync();
    let append = |i: u32| {
        let spool = Arc::clone(&spool);
        std::thread::spawn(move || spool.append(&[rec(no, i)]).unwrap())
    };
    let first = append(1);
    seg_held.started.recv().unwrap(); // syncing the first append's record
    let others: Vec<_> = (2..9).map(append).collect();
    spool.seg_commit.until_waiting(7);
    seg_held.release.send(()).unwrap();
    journal_held.started.recv().unwrap();
    spool.journal_commit.until_waiting(7);
    journal_held.release.send(()).unwrap();
    let mut ids = vec![first.join().unwrap()];
    ids.extend(others.into_iter().map(|t| t.join().unwrap()));
    let after = spool.sync_counts();
    assert_eq!(after.0 - before.0, 2, "8 appends, 2 segment fdatasyncs");
    assert!(
        after.1 - before.1 <= 2,
        "8 appends, {} journal fdatasyncs",
        after.1 - before.1
    );
    assert_eq!(ids.iter().map(Vec::len).sum::<usize>(), 8);
}
