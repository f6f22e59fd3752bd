//! The journal's pages every sink has read leave the page cache; pages a
//! sink still has to read stay; entries read back afterwards are whole.

mod common;

use common::*;
use volley_spool::journal::files::Reader;
use volley_spool::{Cursor, Entry, Kind, Spool, pagecache};

/// The journal file's pages held in the page cache, and all its pages.
fn journal_pages(dir: &std::path::Path) -> (usize, usize) {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("journal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    let last = files.last().expect("a journal file");
    let pages = (std::fs::metadata(last).unwrap().len() / 4096) as usize;
    (pagecache::cached_pages(last, pages).unwrap(), pages)
}

fn all_entries(r: &mut Reader, end: u64) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut damage = Vec::new();
    loop {
        let got = r.read(end, 4096, &mut damage).unwrap();
        if got.is_empty() {
            break;
        }
        out.extend(got.into_iter().map(|(_, e)| e));
    }
    assert!(damage.is_empty());
    out
}

/// A spool in `dir` whose `sinks` stored cursors at the start, then 3,000
/// outcomes of ~1 KB journaled 64 a commit; its journal end. `None` (the
/// test is skipped) where the file system keeps clean pages.
fn journaled(dir: &std::path::Path, sinks: &[&str]) -> Option<(Spool, u64)> {
    if !pagecache::drops_clean_pages(dir) {
        eprintln!("skipped: the temporary directory's file system keeps clean pages");
        return None;
    }
    let (spool, _) = Spool::open(dir).unwrap();
    for s in sinks {
        spool.set_cursor(s, at(0)).unwrap();
    }
    let c = spool.create_campaign("c", b"{}").unwrap();
    let ids = spool
        .append(&(0..3000).map(|i| rec(c.no, i)).collect::<Vec<_>>())
        .unwrap();
    let detail = vec![b'x'; 1000];
    for batch in ids.chunks(64) {
        let entries: Vec<Entry> = batch
            .iter()
            .map(|&id| Entry::outcome(Kind::Delivered, id, 1, 1, 0, detail.clone()))
            .collect();
        spool.record(&entries).unwrap();
    }
    let end = spool.journal_end();
    Some((spool, end))
}

fn at(position: u64) -> Cursor {
    Cursor {
        position,
        sink_state: 0,
    }
}

#[test]
fn journal_pages_read_by_every_sink_are_let_go() {
    let dir = tempfile::tempdir().unwrap();
    let Some((spool, end)) = journaled(dir.path(), &["a", "b"]) else {
        return;
    };
    let before = all_entries(&mut spool.journal_reader(0).unwrap(), end);
    let (cached, pages) = journal_pages(dir.path());
    assert!(pages > 700, "{pages} pages of journal");
    assert!(
        cached * 10 >= pages * 9,
        "{cached} of {pages} cached after writing"
    );

    // one sink read everything, the other nothing: every page stays
    spool.set_cursor("a", at(end)).unwrap();
    let (cached, _) = journal_pages(dir.path());
    assert!(
        cached * 10 >= pages * 9,
        "{cached} of {pages} cached while b has not read them"
    );

    // both read everything: the pages go (the last may stay)
    spool.set_cursor("b", at(end)).unwrap();
    let (cached, _) = journal_pages(dir.path());
    assert!(cached <= 1, "{cached} of {pages} pages still cached");

    // what is read again (from the disk) is what was written
    let again = all_entries(&mut spool.journal_reader(0).unwrap(), end);
    assert_eq!(again.len(), before.len());
    assert!(
        again
            .iter()
            .zip(&before)
            .all(|(x, y)| x.id == y.id && x.detail == y.detail)
    );
}

#[test]
fn a_removed_sink_holds_no_pages() {
    let dir = tempfile::tempdir().unwrap();
    let Some((spool, end)) = journaled(dir.path(), &["gone"]) else {
        return;
    };
    spool.set_cursor("jsonl", at(end)).unwrap();
    let (cached, pages) = journal_pages(dir.path());
    assert!(
        cached * 10 >= pages * 9,
        "{cached} of {pages}: `gone` holds them"
    );
    spool.remove_cursor("gone").unwrap();
    spool.set_cursor("jsonl", at(end)).unwrap();
    let (cached, _) = journal_pages(dir.path());
    assert!(cached <= 1, "{cached} of {pages} pages still cached");
}
