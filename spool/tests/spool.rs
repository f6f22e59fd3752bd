//! Behaviour of the spool across reopen: durability, replay from
//! checkpoints, torn tails, damage reports by id and campaign, missing
//! segments, reclamation, counts, cursors and the directory lock.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use volley_spool::{
    Cursor, Entry, Error, Kind, Recipient, RecipientId, Spool, State, Vars, inspect,
};

fn rec(campaign: u32, i: u32) -> Recipient {
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

fn outcome(id: RecipientId, kind: Kind) -> Entry {
    Entry::outcome(
        kind,
        id,
        1,
        1,
        if kind == Kind::Deferred { 99 } else { 0 },
        b"250 ok".to_vec(),
    )
}

fn seg_path(dir: &Path, no: u32) -> std::path::PathBuf {
    dir.join(format!("segments/{no:08}.seg"))
}

#[test]
fn records_states_and_counts_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let ids;
    {
        let (spool, report) = Spool::open(dir.path()).unwrap();
        assert!(report.damage.is_empty());
        let c = spool.create_campaign("spring", b"{}").unwrap();
        let recs: Vec<_> = (0..1000).map(|i| rec(c.no, i)).collect();
        ids = spool.append(&recs).unwrap();
        assert_eq!(ids.len(), 1000);
        spool.seal_campaign(c.no).unwrap();
        spool
            .record(&[
                outcome(ids[0], Kind::Delivered),
                outcome(ids[1], Kind::Bounced),
                outcome(ids[2], Kind::Deferred),
                outcome(ids[3], Kind::Failed),
            ])
            .unwrap();
        // a final state never reverts
        spool.record(&[outcome(ids[0], Kind::Deferred)]).unwrap();
        assert!(matches!(Spool::open(dir.path()), Err(Error::Locked(_))));
        // counts are available without opening the spool
        let i = inspect(dir.path()).unwrap();
        let c = i.summary.campaigns[&1];
        assert_eq!(
            (
                c.counts.queued,
                c.counts.delivered,
                c.counts.deferred,
                c.last_row
            ),
            (996, 1, 1, 1000)
        );
        assert!(i.campaigns[0].sealed);
        assert_eq!(i.summary.domains["d0.test"].total(), 143);
    }
    let (spool, report) = Spool::open(dir.path()).unwrap();
    assert!(report.damage.is_empty(), "{:?}", report.damage);
    assert_eq!(report.recipients, 1000);
    let c = spool.campaign_by_id("spring").unwrap();
    assert!(c.is_sealed());
    assert_eq!(spool.state(ids[0]), Some(State::Delivered));
    assert_eq!(spool.state(ids[1]), Some(State::Bounced));
    assert_eq!(spool.state(ids[2]), Some(State::Deferred));
    assert_eq!(spool.retry(ids[2]).unwrap().next_ms, 99);
    assert_eq!(spool.state(ids[3]), Some(State::Failed));
    assert_eq!(spool.state(ids[4]), Some(State::Queued));
    let email = spool
        .with_record(ids[500], |r| r.email.to_string())
        .unwrap();
    assert_eq!(email, "user500@d3.test");
    let vars = spool
        .with_record(ids[500], |r| format!("{:?}", r.vars().unwrap()))
        .unwrap();
    assert!(vars.contains("Name 500"), "{vars}");
    let pending = spool.take_pending();
    assert_eq!(
        pending.queued.iter().map(|(_, v)| v.len()).sum::<usize>(),
        996
    );
    assert_eq!(pending.deferred.len(), 1);
    // appends continue after the last record
    let more = spool.append(&[rec(c.no, 1000)]).unwrap();
    assert_eq!(more[0], RecipientId::new(ids[999].segment(), 1000));
    assert_eq!(spool.summary().campaigns[&1].counts.queued, 997);
    assert!(matches!(
        spool.create_campaign("spring", b"{}"),
        Err(Error::DuplicateCampaign(_))
    ));
}

#[test]
fn replay_uses_the_checkpoint_and_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let ids = {
        let (spool, _) = Spool::open(dir.path()).unwrap();
        let c = spool.create_campaign("c", b"{}").unwrap();
        let ids = spool
            .append(&(0..100).map(|i| rec(c.no, i)).collect::<Vec<_>>())
            .unwrap();
        spool.record(&[outcome(ids[0], Kind::Delivered)]).unwrap();
        spool.checkpoint().unwrap();
        spool.record(&[outcome(ids[1], Kind::Deferred)]).unwrap();
        ids
    };
    let (spool, report) = Spool::open(dir.path()).unwrap();
    assert_eq!(
        report.journal_entries, 1,
        "only the entry after the checkpoint is replayed"
    );
    assert_eq!(spool.state(ids[0]), Some(State::Delivered));
    assert_eq!(spool.state(ids[1]), Some(State::Deferred));
    assert_eq!(spool.retry(ids[1]).unwrap().attempts, 1);
}

#[test]
fn torn_segment_tail_is_cut_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let ids = {
        let (spool, _) = Spool::open(dir.path()).unwrap();
        let c = spool.create_campaign("c", b"{}").unwrap();
        spool
            .append(&(0..10).map(|i| rec(c.no, i)).collect::<Vec<_>>())
            .unwrap()
    };
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
    let ids = {
        let (spool, _) = Spool::open(dir.path()).unwrap();
        let c = spool.create_campaign("c", b"{}").unwrap();
        spool
            .append(&(0..5).map(|i| rec(c.no, i)).collect::<Vec<_>>())
            .unwrap()
    };
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
        let (spool, _) = Spool::open(dir.path()).unwrap();
        let c = spool.create_campaign("c", b"{}").unwrap();
        let ids = spool
            .append(&(0..20).map(|i| rec(c.no, i)).collect::<Vec<_>>())
            .unwrap();
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
        let (spool, _) = Spool::open(dir.path()).unwrap();
        let c = spool.create_campaign("c", b"{}").unwrap();
        let ids = spool
            .append(&(0..3).map(|i| rec(c.no, i)).collect::<Vec<_>>())
            .unwrap();
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
fn journal_reader_and_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    let c = spool.create_campaign("c", b"{}").unwrap();
    let ids = spool
        .append(&(0..3).map(|i| rec(c.no, i)).collect::<Vec<_>>())
        .unwrap();
    spool
        .record(
            &ids.iter()
                .map(|&id| outcome(id, Kind::Delivered))
                .collect::<Vec<_>>(),
        )
        .unwrap();
    assert_eq!(spool.cursor("jsonl"), None);
    let outcomes = |r: &mut volley_spool::journal::files::Reader| {
        let mut damage = Vec::new();
        let got = r.read(spool.journal_end(), 1000, &mut damage).unwrap();
        assert!(damage.is_empty());
        got.into_iter()
            .filter(|(_, e)| e.kind == Kind::Delivered)
            .collect::<Vec<_>>()
    };
    let mut r = spool.journal_reader(0).unwrap();
    let got = outcomes(&mut r);
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].1.email, "user0@d0.test", "entries carry the address");
    assert_eq!(got[0].1.domain(), "d0.test");
    assert_eq!(got[0].1.prev, State::Queued);
    spool
        .set_cursor(
            "jsonl",
            Cursor {
                position: got[1].0,
                sink_state: 7,
            },
        )
        .unwrap();
    assert_eq!(spool.cursor("jsonl").unwrap().sink_state, 7);
    // the two slots alternate; a torn newest slot falls back to the older one
    spool
        .set_cursor(
            "jsonl",
            Cursor {
                position: got[1].0,
                sink_state: 8,
            },
        )
        .unwrap();
    assert_eq!(spool.cursor("jsonl").unwrap().sink_state, 8);
    let p = dir.path().join("cursors/jsonl");
    let f = OpenOptions::new().write(true).open(&p).unwrap();
    f.write_all_at(&[0xff; 4], 0).unwrap(); // slot 0 holds the newest (sequence 2)
    drop(f);
    assert_eq!(spool.cursor("jsonl").unwrap().sink_state, 7);
    let mut r = spool
        .journal_reader(spool.cursor("jsonl").unwrap().position)
        .unwrap();
    let rest = outcomes(&mut r);
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].1.id, ids[2]);
}

#[test]
fn segments_roll_over_and_finished_ones_are_reclaimed() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    let c = spool.create_campaign("big", b"{}").unwrap();
    // ~40 KB records: an 8 MiB segment holds ~200 of them
    let recs: Vec<_> = (0..2000)
        .map(|i| {
            let mut vars = Vec::new();
            Vars::encode_json(&format!("{{\"x\":\"{}\"}}", "x".repeat(40_000)), &mut vars);
            Recipient {
                campaign: c.no,
                row: i + 1,
                email: format!("u{i}@big.test"),
                vars,
            }
        })
        .collect();
    let ids = spool.append(&recs).unwrap();
    let first_seg = ids[0].segment();
    assert!(ids.last().unwrap().segment() > first_seg);
    drop(spool);
    let (spool, report) = Spool::open(dir.path()).unwrap();
    assert!(report.damage.is_empty(), "{:?}", report.damage);
    assert_eq!(report.recipients, 2000);
    assert_eq!(
        spool
            .with_record(ids[1999], |r| r.email.to_string())
            .unwrap(),
        "u1999@big.test"
    );

    // finish all but the last: every segment but the last goes; then it
    let segments = ids.last().unwrap().segment() - first_seg + 1;
    let all: Vec<_> = ids.iter().map(|&id| outcome(id, Kind::Delivered)).collect();
    spool.record(&all[..1999]).unwrap();
    assert_eq!(
        spool.reclaim().unwrap() as u32,
        segments - 1,
        "the finished segments go"
    );
    assert_eq!(spool.reclaim().unwrap(), 0);
    spool.record(&all[1999..]).unwrap();
    assert_eq!(spool.reclaim().unwrap(), 1);
    assert!(!seg_path(dir.path(), first_seg).exists());
    // new appends go to a new segment
    let more = spool.append(&[recs[0].clone()]).unwrap();
    assert!(more[0].segment() > ids[1999].segment());
    drop(spool);
    let (spool, report) = Spool::open(dir.path()).unwrap();
    assert!(
        report.damage.is_empty(),
        "reclaimed segments are not reported missing: {:?}",
        report.damage
    );
    assert_eq!(spool.summary().campaigns[&1].counts.delivered, 2000);
    assert_eq!(spool.state(more[0]), Some(State::Queued));
}

#[test]
fn concurrent_appends_share_fdatasyncs() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    let spool = std::sync::Arc::new(spool);
    let no = spool.create_campaign("c", b"{}").unwrap().no;
    let before = spool.sync_counts();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let spool = std::sync::Arc::clone(&spool);
            std::thread::spawn(move || {
                for k in 0..25 {
                    let ids = spool.append(&[rec(no, t * 100 + k)]).unwrap();
                    // acknowledged means durable: a sync covering it happened
                    assert!(spool.sync_counts().0 > before.0);
                    assert_eq!(ids.len(), 1);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let after = spool.sync_counts();
    let segment_syncs = after.0 - before.0;
    assert!(
        segment_syncs < 200,
        "{segment_syncs} syncs for 200 appends: none shared"
    );
    println!(
        "200 appends from 8 threads: {segment_syncs} segment fdatasyncs, {} journal fdatasyncs",
        after.1 - before.1
    );
}

fn rec_at(campaign: u32, i: u32, domains: u32) -> Recipient {
    let mut vars = Vec::new();
    Vars::encode_columns([format!("Name {i}").as_str()], &mut vars);
    Recipient {
        campaign,
        row: i + 1,
        email: format!("user{i}@dom{}.example", i % domains),
        vars,
    }
}

#[test]
fn checkpoint_between_append_start_and_finish_keeps_counts_exact() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (spool, _) = Spool::open(dir.path()).unwrap();
        let c = spool.create_campaign("c", b"{}").unwrap();
        let recs: Vec<_> = (0..10).map(|i| rec_at(c.no, i, 3)).collect();
        let started = spool.append_start(&recs).unwrap();
        spool.checkpoint().unwrap();
        std::mem::forget(started); // the process dies before acknowledging
    }
    let (spool, _) = Spool::open(dir.path()).unwrap();
    let cc = spool
        .summary()
        .campaigns
        .get(&1)
        .copied()
        .unwrap_or_default();
    let pending: usize = spool
        .take_pending()
        .queued
        .iter()
        .map(|(_, v)| v.len())
        .sum();
    // the unacknowledged records are adopted, and counted, and the resume
    // row covers them (so a resumed ingest does not add them again)
    assert_eq!(pending as u64, cc.counts.queued);
    assert_eq!(cc.counts.queued, 10);
    assert_eq!(cc.last_row, 10);
    assert_eq!(
        inspect(dir.path()).unwrap().summary.campaigns[&1]
            .counts
            .queued,
        10
    );
}

#[test]
fn batches_with_many_domains_keep_exact_counts_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (spool, _) = Spool::open(dir.path()).unwrap();
        let c = spool.create_campaign("c", b"{}").unwrap();
        let recs: Vec<_> = (0..16384).map(|i| rec_at(c.no, i, 4000)).collect();
        let ids = spool.append(&recs).unwrap();
        spool.record(&[outcome(ids[0], Kind::Delivered)]).unwrap();
        // dies here: no checkpoint at shutdown
    }
    let i = inspect(dir.path()).unwrap();
    assert_eq!(i.summary.campaigns[&1].counts.total(), 16384);
    assert_eq!(i.summary.domains.len(), 4000);
    let (spool, _) = Spool::open(dir.path()).unwrap();
    let cc = spool.summary().campaigns[&1];
    assert_eq!((cc.counts.total(), cc.counts.delivered), (16384, 1));
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

fn big_records(campaign: u32, n: u32) -> Vec<Recipient> {
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

#[test]
fn segment_creation_cut_by_a_crash_is_removed_and_its_number_is_free() {
    for len in [0u64, 16, volley_spool::SEGMENT_BYTES] {
        let dir = tempfile::tempdir().unwrap();
        let first = {
            let (spool, _) = Spool::open(dir.path()).unwrap();
            let c = spool.create_campaign("c", b"{}").unwrap();
            spool.append(&big_records(c.no, 10)).unwrap()
        };
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
    let first = {
        let (spool, _) = Spool::open(dir.path()).unwrap();
        let c = spool.create_campaign("c", b"{}").unwrap();
        spool.append(&big_records(c.no, 10)).unwrap()
    };
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
fn campaign_of_comes_from_the_index_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, ids_a, ids_b) = {
        let (spool, _) = Spool::open(dir.path()).unwrap();
        let a = spool.create_campaign("a", b"{}").unwrap().no;
        let b = spool.create_campaign("b", b"{}").unwrap().no;
        let ids_a = spool
            .append(&(0..5).map(|i| rec(a, i)).collect::<Vec<_>>())
            .unwrap();
        let ids_b = spool
            .append(&(0..5).map(|i| rec(b, i)).collect::<Vec<_>>())
            .unwrap();
        for id in &ids_a {
            assert_eq!(spool.campaign_of(*id), Some(a));
        }
        (a, b, ids_a, ids_b)
    };
    let (spool, _) = Spool::open(dir.path()).unwrap();
    for id in &ids_a {
        assert_eq!(spool.campaign_of(*id), Some(a));
    }
    for id in &ids_b {
        assert_eq!(spool.campaign_of(*id), Some(b));
    }
    let past = RecipientId::new(ids_b[4].segment(), ids_b[4].index() + 1);
    assert_eq!(spool.campaign_of(past), None);
}
