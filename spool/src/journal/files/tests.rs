//! Journal file tests: rotation, torn tails, readers across files.

use super::*;
use crate::journal::Kind;
use crate::{RecipientId, State};

fn entry(i: u64) -> Entry {
    let mut e = Entry::outcome(Kind::Delivered, RecipientId(i), 1, i, 0, b"250 ok".to_vec());
    e.prev = State::Queued;
    e.email = "x@d.test".into();
    e
}

#[test]
fn replay_stops_at_torn_tail_and_skips_mid_damage() {
    let entries: Vec<Entry> = (0..5).map(entry).collect();
    let mut bytes = MAGIC.to_vec();
    let mut sizes = Vec::new();
    for e in &entries {
        let mut p = Vec::new();
        e.encode(&mut p);
        let before = bytes.len();
        frame::encode(&mut bytes, &p);
        sizes.push(bytes.len() - before);
    }
    let r = replay(&bytes, 1000, 0);
    assert_eq!(
        r.entries.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(),
        entries
    );
    assert_eq!(r.end, 1000 + bytes.len() as u64);
    for cut in MAGIC.len()..bytes.len() {
        let r = replay(&bytes[..cut], 0, 0);
        assert_eq!(r.end + r.torn_bytes, cut as u64);
        assert!(r.entries.iter().zip(&entries).all(|((_, a), b)| a == b));
    }
    let mut damaged = bytes.clone();
    damaged[MAGIC.len() + sizes[0] + 20] ^= 1;
    let r = replay(&damaged, 0, 0);
    assert_eq!(r.entries.len(), 4);
    assert_eq!(r.damage.len(), 1);
    // starting in the middle
    let from = (MAGIC.len() + sizes[0] + sizes[1]) as u64;
    assert_eq!(replay(&bytes, 0, from).entries.len(), 3);
}

#[test]
fn reader_crosses_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("journal")).unwrap();
    let f = create(dir.path(), 0).unwrap();
    let mut w = Writer::new(dir.path(), f, 0, MAGIC.len() as u64);
    let mut ends = Vec::new();
    w.append(&[entry(1), entry(2)], &mut ends).unwrap();
    w.rotate().unwrap();
    w.append(&[entry(3)], &mut ends).unwrap();
    let end = w.end;
    let mut r = Reader::open(dir.path(), 0).unwrap();
    let mut damage = Vec::new();
    let got = r.read(end, 100, &mut damage).unwrap();
    assert_eq!(
        got.iter().map(|(_, e)| e.id.0).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(r.position(), end);
    assert!(damage.is_empty());
    // a reader at the end of a file that is then rotated away and
    // deleted (one file out, one in: the listing has as many files as
    // before) follows into the new file
    std::fs::remove_file(path(dir.path(), 0)).unwrap();
    let mut r2 = Reader::open(dir.path(), 0).unwrap();
    assert_eq!(r2.read(end, 100, &mut damage).unwrap().len(), 1);
    let old_base = w.base;
    w.rotate().unwrap();
    std::fs::remove_file(path(dir.path(), old_base)).unwrap();
    w.append(&[entry(4)], &mut ends).unwrap();
    let got4 = r2.read(w.end, 100, &mut damage).unwrap();
    assert_eq!(
        got4.iter().map(|(_, e)| e.id.0).collect::<Vec<_>>(),
        vec![4]
    );
    assert!(damage.is_empty(), "{damage:?}");
    let _ = got;
}
