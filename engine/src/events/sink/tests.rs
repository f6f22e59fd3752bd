//! The JSONL sink's tests: durable creation, rotation across a crash,
//! synced pages let go (within a large batch too).

use super::*;
use std::cell::RefCell;

#[test]
fn a_created_file_and_its_directories_are_made_durable() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("new/sub/events.jsonl");
    let synced = RefCell::new(Vec::new());
    let sync = |dir: &Path| {
        synced.borrow_mut().push(dir.to_path_buf());
        sync_dir(dir)
    };
    let mut sink = JsonlSink::open_syncing(&path, &sync).unwrap();
    // the directory of each new entry: `new`, `sub`, then the file
    // (before any event is in it)
    assert_eq!(
        *synced.borrow(),
        vec![
            d.path().to_path_buf(),
            d.path().join("new"),
            d.path().join("new/sub"),
        ]
    );
    sink.publish(&[]).unwrap();
    drop(sink);
    // an existing file: nothing new to make durable
    synced.borrow_mut().clear();
    JsonlSink::open_syncing(&path, &sync).unwrap();
    assert!(synced.borrow().is_empty());
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn rotation_keeps_every_event_once_across_a_crash_after_it() {
    let events = crate::events::model::tests::sample_events();
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("events.jsonl");
    let every = Rotation {
        rotate_bytes: 1,
        keep: 3,
    };
    let mut sink = JsonlSink::open_rotating(&path, "jsonl", every).unwrap();
    sink.publish(&events[0..2]).unwrap();
    let stored = sink.state();
    // the next batch rotates first; the process dies before its cursor
    sink.publish(&events[2..4]).unwrap();
    assert_eq!(lines_of(&rotation::rotated(&path, 0)).len(), 2);
    assert_eq!(lines_of(&path).len(), 2);
    drop(sink);
    let mut again = JsonlSink::open_rotating(&path, "jsonl", every).unwrap();
    again.resume(stored).unwrap();
    assert!(
        lines_of(&path).is_empty(),
        "what came after the cursor is cut"
    );
    again.publish(&events[2..4]).unwrap();
    let mut all = lines_of(&rotation::rotated(&path, 0));
    all.extend(lines_of(&path));
    let mut want = Vec::new();
    let mut l = crate::events::json::Lines::default();
    for e in &events[0..4] {
        let mut out = Vec::new();
        l.write(e, &mut out).unwrap();
        want.push(String::from_utf8(out).unwrap().trim_end().to_string());
    }
    assert_eq!(all, want, "each event once, in order");
    // a crash with no rotation since the cursor cuts as before
    let stored = again.state();
    again.publish(&events[4..6]).unwrap(); // rotates to .1
    again.publish(&events[6..8]).unwrap(); // rotates to .2
    let at = again.state();
    again.publish(&events[8..10]).unwrap(); // rotates to .3
    drop(again);
    let mut third = JsonlSink::open_rotating(&path, "jsonl", every).unwrap();
    third.resume(at).unwrap();
    assert!(lines_of(&path).is_empty());
    // only the newest `keep` rotated files stay
    assert_eq!(rotation::generations(&path), vec![1, 2, 3]);
    // a cursor older than one rotation does not match the files: append
    let mut fourth = JsonlSink::open_rotating(&path, "jsonl", every).unwrap();
    fourth.resume(stored).unwrap();
    assert_eq!(State::decode(fourth.state()).generation, 4);
}

#[cfg(target_os = "linux")]
#[test]
fn synced_batches_leave_the_page_cache() {
    let events = crate::events::model::tests::sample_events();
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("events.jsonl");
    let mut sink = JsonlSink::open(&path).unwrap();
    while sink.len < 256 * 1024 {
        sink.publish(&events).unwrap();
    }
    let full = (sink.len / 4096) as usize;
    if !volley_spool::pagecache::drops_clean_pages(d.path()) {
        eprintln!("skipped: the temporary directory's file system keeps clean pages");
        return;
    }
    assert_eq!(
        volley_spool::pagecache::cached_pages(&path, full),
        Some(0),
        "of {full} pages written"
    );
    // what was written is all there
    assert_eq!(std::fs::metadata(&path).unwrap().len(), sink.len);
    let lines = lines_of(&path);
    assert_eq!(lines.len() % events.len(), 0);
    assert!(
        lines
            .iter()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
    );
}

#[cfg(target_os = "linux")]
#[test]
fn a_batch_larger_than_the_write_behind_is_written_whole_and_let_go() {
    let sample = crate::events::model::tests::sample_events();
    // one batch of several WRITE_BEHIND steps, after a smaller one
    let mut events = Vec::new();
    while events.len() * 1_000 < 3 * WRITE_BEHIND as usize {
        events.extend(sample.iter().cloned());
    }
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("events.jsonl");
    let mut sink = JsonlSink::open(&path).unwrap();
    sink.publish(&sample).unwrap();
    let first = sink.len;
    sink.publish(&events).unwrap();
    assert!(sink.len - first > 2 * WRITE_BEHIND, "{}", sink.len - first);
    // written out while the batch was written, not only at its end
    assert!(sink.started > first + WRITE_BEHIND, "{}", sink.started);
    // let go as written (before the file is read back below)
    if volley_spool::pagecache::drops_clean_pages(d.path()) {
        let full = (sink.len / 4096) as usize;
        assert_eq!(volley_spool::pagecache::cached_pages(&path, full), Some(0));
    }
    let mut want = Vec::new();
    let mut l = crate::events::json::Lines::default();
    for e in sample.iter().chain(&events) {
        l.write(e, &mut want).unwrap();
    }
    assert_eq!(std::fs::read(&path).unwrap(), want, "every line, in order");
    // a failed batch after it leaves the file as it was
    let len = sink.len;
    sink.rollback(first);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), first);
    assert!(sink.uncached <= first && sink.started <= first);
    sink.publish(&events).unwrap();
    assert_eq!(sink.len, len);
}
