//! Damage and crashes found on reopen: torn segment and journal tails,
//! flipped and lost records reported by id and campaign, missing segment
//! files, segment creation cut short, unreadable segment headers.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use common::*;
use volley_spool::{Kind, RecipientId, Spool, State, inspect};

#[test]
fn torn_segment_tail_is_cut_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let ids = spooled(dir.path(), |c| (0..10).map(|i| rec(c, i)).collect()).1;
    // an append cut short: half a frame after the last record
    let seg = seg_path(dir.path(), ids[0].segment());
    let bytes = std::fs::read(&seg).unwrap();
    let mut end = 16usize;
    while bytes[end..end + 8] != [0u8; 8] {
        let len = u32::from_le_bytes(bytes[end..end + 4].try_into().unwrap()) as usize;
        end += (8 + len).div_ceil(8) * 8;
    }
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.write_all_at(&[200, 0, 0, 0, 1, 2, 3, 4, 9, 9, 9], end as u64)
        .unwrap();
    drop(f);

    let (spool, report) = Spool::open(dir.path()).unwrap();
    assert_eq!(report.recipients, 10);
    assert_eq!(report.damage.len(), 1, "{:?}", report.damage);
    assert!(report.damage[0].what.contains("torn tail"));
    assert_eq!(report.lost(), 0, "an unacknowledged append loses nobody");
    let more = spool.append(&[rec(1, 10)]).unwrap();
    assert_eq!(more[0].index(), 10);
    drop(spool);
    let (spool, report) = Spool::open(dir.path()).unwrap();
    assert!(report.damage.is_empty(), "{:?}", report.damage);
    assert_eq!(report.recipients, 11);
    assert_eq!(spool.state(ids[9]), Some(State::Queued));
}

#[test]
fn flipped_record_is_reported_lost_by_id_and_campaign() {
    let dir = tempfile::tempdir().unwrap();
    let ids = spooled(dir.path(), |c| (0..5).map(|i| rec(c, i)).collect()).1;
    let seg = seg_path(dir.path(), ids[0].segment());
    let f = OpenOptions::new()
        .write(true)
        .read(true)
        .open(&seg)
        .unwrap();
    let mut b = [0u8; 4];
    f.read_exact_at(&mut b, 16).unwrap();
    let first = (8 + u32::from_le_bytes(b) as u64).div_ceil(8) * 8;
    f.write_all_at(&[0xAA], 16 + first + 12).unwrap();
    drop(f);
    let (spool, report) = Spool::open(dir.path()).unwrap();
    assert_eq!(report.lost(), 1);
    assert_eq!(report.damage[0].lost, vec![ids[1]]);
    assert_eq!(report.damage[0].campaigns, vec![1]);
    assert_eq!(spool.state(ids[1]), Some(State::Lost));
    assert!(spool.with_record(ids[1], |_| ()).is_err());
    assert_eq!(
        spool.with_record(ids[2], |r| r.email.to_string()).unwrap(),
        "user2@d2.test"
    );
    assert_eq!(spool.summary().campaigns[&1].counts.lost, 1);
    drop(spool);
    // reported once: the loss is now part of the state
    let (_, report) = Spool::open(dir.path()).unwrap();
    assert_eq!(report.lost(), 0);
    assert_eq!(
        inspect(dir.path()).unwrap().summary.campaigns[&1]
            .counts
            .lost,
        1
    );
}

#[test]
fn missing_segment_file_loses_exactly_its_pending_recipients() {
    let dir = tempfile::tempdir().unwrap();
    let ids = {
        let (spool, ids) = spooled(dir.path(), |c| (0..20).map(|i| rec(c, i)).collect());
        spool
            .record(&[
                outcome(ids[0], Kind::Delivered),
                outcome(ids[1], Kind::Delivered),
            ])
            .unwrap();
        ids
    };
    std::fs::remove_file(seg_path(dir.path(), ids[0].segment())).unwrap();
    let (spool, report) = Spool::open(dir.path()).unwrap();
    assert_eq!(report.lost(), 18);
    let d = report
        .damage
        .iter()
        .find(|d| d.what.contains("missing"))
        .unwrap();
    assert_eq!(d.lost, ids[2..].to_vec());
    assert_eq!(d.campaigns, vec![1]);
    assert_eq!(spool.state(ids[0]), Some(State::Delivered));
    assert_eq!(spool.state(ids[5]), Some(State::Lost));
    let c = spool.summary().campaigns[&1].counts;
    assert_eq!((c.delivered, c.lost, c.queued), (2, 18, 0));
    assert!(spool.take_pending().queued.is_empty());
}

#[test]
fn torn_and_damaged_journal() {
    let dir = tempfile::tempdir().unwrap();
    let ids = {
        let (spool, ids) = spooled(dir.path(), |c| (0..3).map(|i| rec(c, i)).collect());
        spool.record(&[outcome(ids[0], Kind::Delivered)]).unwrap();
        ids
    };
    let journal = std::fs::read_dir(dir.path().join("journal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let len = std::fs::metadata(&journal).unwrap().len();
    let f = OpenOptions::new().write(true).open(&journal).unwrap();
    f.write_all_at(&[60, 0, 0, 0, 7, 7], len).unwrap();
    drop(f);
    let (spool, report) = Spool::open(dir.path()).unwrap();
    assert!(
        report
            .damage
            .iter()
            .any(|d| d.what.contains("torn journal tail")),
        "{:?}",
        report.damage
    );
    assert_eq!(spool.state(ids[0]), Some(State::Delivered));
    spool.record(&[outcome(ids[1], Kind::Delivered)]).unwrap();
    drop(spool);
    let (spool, report) = Spool::open(dir.path()).unwrap();
    assert!(report.damage.is_empty(), "{:?}", report.damage);
    assert_eq!(spool.state(ids[1]), Some(State::Delivered));
}

#[test]
fn appends_after_a_lost_tail_record_keep_ids_in_file_order() {
    let dir = tempfile::tempdir().unwrap();
    let seg = dir.path().join("segments/00000001.seg");
    {
        let (spool, _) = Spool::open(dir.path()).unwrap();
        let c = spool.create_campaign("c", b"{}").unwrap();
        spool
            .append(&(0..10).map(|i| rec_at(c.no, i, 3)).collect::<Vec<_>>())
            .unwrap();
    }
    // damage the last record (a torn tail of an acknowledged append)
    {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&seg)
            .unwrap();
        let mut b = vec![0u8; 4096];
        f.read_at(&mut b, 0).unwrap();
        let end = b.iter().rposition(|&x| x != 0).unwrap();
        f.write_all_at(&[b[end] ^ 0xff], end as u64).unwrap();
    }
    let recs: Vec<_> = (100..105).map(|i| rec_at(1, i, 3)).collect();
    let new_ids = {
        let (spool, report) = Spool::open(dir.path()).unwrap();
        assert_eq!(report.lost(), 1);
        spool.append(&recs).unwrap()
    };
    let (spool, _) = Spool::open(dir.path()).unwrap();
    for (id, r) in new_ids.iter().zip(&recs) {
        assert_eq!(
            spool.with_record(*id, |x| x.email.to_string()).unwrap(),
            r.email
        );
        assert_eq!(spool.state(*id), Some(State::Queued));
    }
    assert_eq!(spool.state(RecipientId::new(1, 9)), Some(State::Lost));
}

#[test]
fn segment_creation_cut_by_a_crash_is_removed_and_its_number_is_free() {
    for len in [0u64, 16, volley_spool::SEGMENT_BYTES] {
        let dir = tempfile::tempdir().unwrap();
        let first = spooled(dir.path(), |c| big_records(c, 10)).1;
        // killed after creating the next file, before its header was synced
        let next = first[0].segment() + 1;
        let f = std::fs::File::create(seg_path(dir.path(), next)).unwrap();
        f.set_len(len).unwrap();
        drop(f);

        let (spool, report) = Spool::open(dir.path()).unwrap();
        assert!(report.damage.is_empty(), "len {len}: {:?}", report.damage);
        assert_eq!(report.recipients, 10);
        // enough to need new segments: creation must not collide
        let more = spool.append(&big_records(1, 400)).unwrap();
        assert!(more.last().unwrap().segment() >= next, "len {len}");
        drop(spool);
        let (_, report) = Spool::open(dir.path()).unwrap();
        assert!(report.damage.is_empty(), "len {len}: {:?}", report.damage);
        assert_eq!(report.recipients, 410);
    }
}

#[test]
fn damaged_segment_header_is_reported_and_new_segments_do_not_collide() {
    let dir = tempfile::tempdir().unwrap();
    let first = spooled(dir.path(), |c| big_records(c, 10)).1;
    // garbage under the next segment's name, not a cut creation
    let next = first[0].segment() + 1;
    std::fs::write(seg_path(dir.path(), next), b"not a segment at all").unwrap();
    let (spool, report) = Spool::open(dir.path()).unwrap();
    assert_eq!(report.damage.len(), 1, "{:?}", report.damage);
    assert!(report.damage[0].what.contains("segment ignored"));
    let more = spool.append(&big_records(1, 400)).unwrap();
    assert!(more.last().unwrap().segment() > next);
    assert!(
        seg_path(dir.path(), next).exists(),
        "the odd file is left alone"
    );
}

#[test]
fn unreadable_campaign_file_keeps_its_number() {
    let dir = tempfile::tempdir().unwrap();
    let ids = spooled(dir.path(), |c| (0..3).map(|i| rec(c, i)).collect()).1;
    let file = dir.path().join("campaigns/00000001.cmp");
    std::fs::write(&file, b"bit rot").unwrap();
    let (spool, report) = Spool::open(dir.path()).unwrap();
    assert!(
        report
            .damage
            .iter()
            .any(|d| d.what.contains("campaign file unreadable")),
        "{:?}",
        report.damage
    );
    let b = spool.create_campaign("b", b"{}").unwrap();
    assert_eq!(b.no, 2, "number 1 is still taken by the unreadable file");
    assert_eq!(std::fs::read(&file).unwrap(), b"bit rot", "left alone");
    assert_eq!(spool.campaign_of(ids[0]), Some(1));
}

#[test]
fn oversized_campaign_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    let e = spool
        .create_campaign("huge", &vec![b'x'; 65 << 20])
        .unwrap_err();
    assert!(
        matches!(e, volley_spool::Error::CampaignTooLarge { ref id, .. } if id == "huge"),
        "{e}"
    );
    assert!(spool.campaigns().is_empty());
    let c = spool.create_campaign("small", b"{}").unwrap();
    assert_eq!(c.no, 1);
}

/// Offsets of the frames in a segment file's bytes.
fn frame_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut pos = 16usize;
    while bytes[pos..pos + 8] != [0u8; 8] {
        out.push(pos);
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        pos += (8 + len).div_ceil(8) * 8;
    }
    out
}

#[test]
fn damage_in_the_middle_loses_only_the_damaged_records() {
    let dir = tempfile::tempdir().unwrap();
    let ids = spooled(dir.path(), |c| (0..10).map(|i| rec(c, i)).collect()).1;
    let seg = seg_path(dir.path(), ids[0].segment());
    let bytes = std::fs::read(&seg).unwrap();
    let at = frame_offsets(&bytes);
    assert_eq!(at.len(), 10);
    // records 3 and 4 overwritten (length fields included): the chain of
    // frames breaks there
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.write_all_at(&vec![0xA5; at[5] - at[3]], at[3] as u64)
        .unwrap();
    drop(f);

    for round in 0..2 {
        let (spool, report) = Spool::open(dir.path()).unwrap();
        // newly lost on the first open; known (and still lost) after
        let newly = if round == 0 { 2 } else { 0 };
        assert_eq!(report.lost(), newly, "round {round}: {:?}", report.damage);
        assert!(
            report
                .damage
                .iter()
                .any(|d| d.what.contains("2 record(s) lost") && d.what.contains("kept")),
            "{:?}",
            report.damage
        );
        for (i, id) in ids.iter().enumerate() {
            let want = if i == 3 || i == 4 {
                Some(State::Lost)
            } else {
                Some(State::Queued)
            };
            assert_eq!(spool.state(*id), want, "round {round}, record {i}");
            if want == Some(State::Queued) {
                let email = spool.with_record(*id, |r| r.email.to_string()).unwrap();
                assert_eq!(email, rec(1, i as u32).email);
            }
        }
        if round == 0 {
            // appends go on after the kept records, in file order
            let more = spool.append(&[rec(1, 10)]).unwrap();
            assert_eq!(more[0].index(), 10);
        }
    }
    let (spool, _) = Spool::open(dir.path()).unwrap();
    let next = RecipientId::new(ids[0].segment(), 10);
    assert_eq!(
        spool.with_record(next, |r| r.email.to_string()).unwrap(),
        rec(1, 10).email
    );
}
