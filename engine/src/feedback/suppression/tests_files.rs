//! Unit tests of durability: reopening, torn and damaged logs, compaction
//! and crashes around it (simulated by the files a crash leaves).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::sync::Arc;

use super::files::{base_path, log_path};
use super::tests::{NOW, entry, open};
use super::*;

fn emails(s: &SuppressionList) -> Vec<String> {
    let mut v = Vec::new();
    s.list(&ListFilter::default(), |e| v.push(e.email.clone()))
        .unwrap();
    v.sort();
    v
}

#[test]
fn reopen_after_drop_keeps_adds_and_removes() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path());
    s.add(vec![
        entry("a@x.org", Reason::Bounce, 1),
        entry("b@x.org", Reason::Complaint, 2),
    ])
    .unwrap();
    s.remove(&["a@x.org"]).unwrap();
    s.add(vec![entry("b@x.org", Reason::Bounce, 3)]).unwrap();
    drop(s);
    let s = open(d.path());
    assert_eq!(s.len(), 1);
    assert!(!s.contains("a@x.org", None));
    let b = s.get("b@x.org").unwrap().unwrap();
    assert_eq!((b.reason, b.at_ms), (Reason::Bounce, 3));
}

#[test]
fn torn_log_tail_is_dropped_and_the_rest_loads() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path());
    s.add(vec![entry("a@x.org", Reason::Bounce, 1)]).unwrap();
    s.add(vec![entry("b@x.org", Reason::Bounce, 2)]).unwrap();
    drop(s);
    let log = log_path(d.path(), 0);
    let len = fs::metadata(&log).unwrap().len();
    // Cut the last record in half.
    OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(len - 7)
        .unwrap();
    let s = open(d.path());
    assert_eq!(emails(&s), ["a@x.org"]);
    // The tail was truncated: new records follow the valid ones.
    s.add(vec![entry("c@x.org", Reason::Bounce, 3)]).unwrap();
    drop(s);
    // Garbage after valid records is dropped too.
    let mut f = OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all(b"\x20\x00\x00\x00garbage that is not a record at all")
        .unwrap();
    drop(f);
    let s = open(d.path());
    assert_eq!(emails(&s), ["a@x.org", "c@x.org"]);
    assert_eq!(s.len(), 2);
}

#[test]
fn damaged_record_ends_the_log() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path());
    s.add(vec![entry("a@x.org", Reason::Bounce, 1)]).unwrap();
    let len = fs::metadata(log_path(d.path(), 0)).unwrap().len();
    s.add(vec![entry("b@x.org", Reason::Bounce, 2)]).unwrap();
    drop(s);
    let mut bytes = fs::read(log_path(d.path(), 0)).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(log_path(d.path(), 0), &bytes).unwrap();
    let s = open(d.path());
    assert_eq!(emails(&s), ["a@x.org"]);
    assert_eq!(fs::metadata(log_path(d.path(), 0)).unwrap().len(), len);
}

#[test]
fn compaction_keeps_everything_across_generations() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path());
    let batch: Vec<Entry> = (0..1000)
        .map(|i| entry(&format!("u{i}@x.org"), Reason::Bounce, i))
        .collect();
    s.add(batch).unwrap();
    s.compact().unwrap();
    assert!(base_path(d.path(), 1).exists());
    assert!(!log_path(d.path(), 0).exists());
    s.remove(&["u5@x.org"]).unwrap();
    let mut e = entry("u6@x.org", Reason::Complaint, 77);
    e.topic = Some("t".into());
    s.add(vec![e, entry("u7@x.org", Reason::Complaint, 70)])
        .unwrap();
    s.compact().unwrap();
    assert!(!base_path(d.path(), 1).exists());
    for s in [s, open(d.path())] {
        assert_eq!(s.len(), 1000);
        assert!(!s.contains("u5@x.org", None));
        assert!(s.contains("u6@x.org", Some("t")));
        assert_eq!(
            s.get("u7@x.org").unwrap().unwrap().reason,
            Reason::Complaint
        );
        for i in (0..1000).filter(|&i| i != 5) {
            let got = s.get(&format!("u{i}@x.org")).unwrap().unwrap();
            assert_eq!(got.email, format!("u{i}@x.org"));
        }
        assert_eq!(emails(&s).len(), 1000);
    }
}

#[test]
fn automatic_compaction_on_a_long_log() {
    let d = tempfile::tempdir().unwrap();
    let opts = Options {
        clock: Arc::new(|| NOW),
        min_compact_records: 100,
    };
    let s = SuppressionList::open_with(d.path(), opts.clone()).unwrap();
    for i in 0..350 {
        s.add(vec![entry(&format!("u{i}@x.org"), Reason::Bounce, i)])
            .unwrap();
    }
    assert!(base_path(d.path(), 3).exists());
    drop(s);
    let s = SuppressionList::open_with(d.path(), opts).unwrap();
    assert_eq!(s.len(), 350);
    assert!((0..350).all(|i| s.contains(&format!("u{i}@x.org"), None)));
}

#[test]
fn crash_between_temp_write_and_rename_loses_nothing() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path());
    s.add(vec![entry("a@x.org", Reason::Bounce, 1)]).unwrap();
    s.compact().unwrap();
    s.add(vec![entry("b@x.org", Reason::Bounce, 2)]).unwrap();
    drop(s);
    // What a crash during the next compaction leaves: a complete or
    // partial temp base and the new generation's empty log.
    fs::copy(base_path(d.path(), 1), d.path().join("base-00000002.tmp")).unwrap();
    fs::write(log_path(d.path(), 2), b"VOLSUPL1").unwrap();
    let s = open(d.path());
    assert_eq!(emails(&s), ["a@x.org", "b@x.org"]);
    assert!(!d.path().join("base-00000002.tmp").exists());
    assert!(!log_path(d.path(), 2).exists());
    // After the rename but before the old generation was deleted.
    s.compact().unwrap();
    drop(s);
    fs::write(log_path(d.path(), 1), b"VOLSUPL1 stale").unwrap();
    let s = open(d.path());
    assert_eq!(emails(&s), ["a@x.org", "b@x.org"]);
    assert!(!log_path(d.path(), 1).exists());
}

#[test]
fn damaged_files_are_named_errors() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path());
    s.add(vec![entry("a@x.org", Reason::Bounce, 1)]).unwrap();
    s.compact().unwrap();
    drop(s);
    let base = base_path(d.path(), 1);
    let mut bytes = fs::read(&base).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 1;
    fs::write(&base, &bytes).unwrap();
    let err = SuppressionList::open(d.path()).err().unwrap();
    assert!(err.to_string().contains("base-00000001"), "{err}");
    fs::write(&base, b"short").unwrap();
    assert!(SuppressionList::open(d.path()).is_err());
    fs::write(d.path().join("hash.key"), b"nonsense").unwrap();
    let err = SuppressionList::open(d.path()).err().unwrap();
    assert!(err.to_string().contains("hash.key"), "{err}");
}

#[test]
fn a_stranger_log_newer_than_every_base_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path());
    s.add(vec![entry("a@x.org", Reason::Bounce, 1)]).unwrap();
    drop(s);
    fs::copy(log_path(d.path(), 0), log_path(d.path(), 1)).unwrap();
    assert!(SuppressionList::open(d.path()).is_err());
}

#[test]
fn lookups_stay_right_while_writers_compact() {
    fn shared<T: Send + Sync>(_: &T) {}
    let d = tempfile::tempdir().unwrap();
    let opts = Options {
        clock: Arc::new(|| NOW),
        min_compact_records: 50,
    };
    let s = SuppressionList::open_with(d.path(), opts).unwrap();
    shared(&s);
    let first: Vec<Entry> = (0..200)
        .map(|i| entry(&format!("old{i}@x.org"), Reason::Bounce, i))
        .collect();
    s.add(first).unwrap();
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut rounds = 0;
            loop {
                for i in 0..200 {
                    assert!(s.contains(&format!("old{i}@x.org"), None), "old{i} missing");
                }
                rounds += 1;
                if s.contains("last@x.org", None) {
                    return rounds;
                }
            }
        });
        for i in 0..300 {
            s.add(vec![entry(&format!("new{i}@x.org"), Reason::Bounce, i)])
                .unwrap();
        }
        s.add(vec![entry("last@x.org", Reason::Bounce, 0)]).unwrap();
        assert!(reader.join().unwrap() > 0);
    });
    assert_eq!(s.len(), 501);
}
