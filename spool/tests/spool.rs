//! Behaviour of the spool across reopen: durability, replay, torn tails,
//! damage reports and the directory lock.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use volley_spool::{Entry, Error, Kind, Recipient, RecipientId, Spool, State, Vars};

fn rec(campaign: u32, i: u32) -> Recipient {
    Recipient {
        campaign,
        row: i + 1,
        email: format!("user{i}@d{}.test", i % 7),
        vars: Vars::Columns(vec![format!("Name {i}"), "x".repeat((i % 13) as usize)]),
    }
}

fn outcome(id: RecipientId, kind: Kind) -> Entry {
    Entry {
        kind,
        id,
        attempts: 1,
        at_ms: 1,
        next_ms: if kind == Kind::Deferred { 99 } else { 0 },
        detail: b"250 ok".to_vec(),
    }
}

#[test]
fn records_and_states_survive_reopen() {
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
    // appends continue after the last record
    let more = spool.append(&[rec(c.no, 1000)]).unwrap();
    assert_eq!(more[0], RecipientId::new(ids[999].segment(), 1000));
    let mut n = 0;
    spool.for_each(|_, _, _, _| n += 1);
    assert_eq!(n, 1001);
    assert!(matches!(
        spool.create_campaign("spring", b"{}"),
        Err(Error::DuplicateCampaign(_))
    ));
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
    // simulate an append cut short: half a frame after the last record
    let seg = dir.path().join("segments/00000001.seg");
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    // find the end of the written region: the first zero header after 16
    let mut end = 0u64;
    let bytes = std::fs::read(&seg).unwrap();
    let mut pos = 16usize;
    while bytes[pos..pos + 8] != [0u8; 8] {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        pos += (8 + len).div_ceil(8) * 8;
        end = pos as u64;
    }
    f.write_all_at(&[200, 0, 0, 0, 1, 2, 3, 4, 9, 9, 9], end)
        .unwrap();
    drop(f);

    let (spool, report) = Spool::open(dir.path()).unwrap();
    assert_eq!(report.recipients, 10);
    assert_eq!(report.damage.len(), 1, "{:?}", report.damage);
    assert!(report.damage[0].what.contains("torn tail"));
    let more = spool.append(&[rec(1, 10)]).unwrap();
    assert_eq!(more[0].index(), 10);
    drop(spool);
    let (spool, report) = Spool::open(dir.path()).unwrap();
    assert!(report.damage.is_empty(), "{:?}", report.damage);
    assert_eq!(report.recipients, 11);
    assert_eq!(spool.state(ids[9]), Some(State::Queued));
}

#[test]
fn flipped_record_is_reported_lost_and_others_survive() {
    let dir = tempfile::tempdir().unwrap();
    let ids = {
        let (spool, _) = Spool::open(dir.path()).unwrap();
        let c = spool.create_campaign("c", b"{}").unwrap();
        spool
            .append(&(0..5).map(|i| rec(c.no, i)).collect::<Vec<_>>())
            .unwrap()
    };
    let seg = dir.path().join("segments/00000001.seg");
    let f = OpenOptions::new()
        .write(true)
        .read(true)
        .open(&seg)
        .unwrap();
    // flip a byte inside the second record's payload
    let mut b = [0u8; 4];
    f.read_exact_at(&mut b, 16).unwrap();
    let first = (8 + u32::from_le_bytes(b) as u64).div_ceil(8) * 8;
    f.write_all_at(&[0xAA], 16 + first + 12).unwrap();
    drop(f);
    let (spool, report) = Spool::open(dir.path()).unwrap();
    assert_eq!(report.lost(), 1);
    assert_eq!(report.damage[0].lost, vec![ids[1]]);
    assert_eq!(spool.state(ids[1]), Some(State::Lost));
    assert!(spool.with_record(ids[1], |_| ()).is_err());
    assert_eq!(
        spool.with_record(ids[2], |r| r.email.to_string()).unwrap(),
        "user2@d2.test"
    );
}

#[test]
fn torn_journal_tail_is_cut() {
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
    let j = dir.path().join("journal.log");
    let len = std::fs::metadata(&j).unwrap().len();
    let f = OpenOptions::new().write(true).open(&j).unwrap();
    f.write_all_at(&[60, 0, 0, 0, 7, 7], len).unwrap();
    drop(f);
    let (spool, report) = Spool::open(dir.path()).unwrap();
    assert_eq!(report.damage.len(), 1);
    assert_eq!(std::fs::metadata(&j).unwrap().len(), len);
    assert_eq!(spool.state(ids[0]), Some(State::Delivered));
    spool.record(&[outcome(ids[1], Kind::Delivered)]).unwrap();
    drop(spool);
    let (spool, report) = Spool::open(dir.path()).unwrap();
    assert!(report.damage.is_empty());
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
    assert_eq!(spool.cursor("jsonl"), 0);
    let mut r = spool.journal_reader(spool.cursor("jsonl")).unwrap();
    let mut damage = Vec::new();
    let got = r.read(spool.journal_end(), 2, &mut damage).unwrap();
    assert_eq!(got.len(), 2);
    spool.set_cursor("jsonl", got[1].0).unwrap();
    let mut r = spool.journal_reader(spool.cursor("jsonl")).unwrap();
    let rest = r.read(spool.journal_end(), 100, &mut damage).unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].1.id, ids[2]);
    assert!(damage.is_empty());
}

#[test]
fn segments_roll_over() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    let c = spool.create_campaign("big", b"{}").unwrap();
    // ~40 KB records: a 64 MiB segment holds ~1,600 of them
    let recs: Vec<_> = (0..2000)
        .map(|i| Recipient {
            campaign: c.no,
            row: i + 1,
            email: format!("u{i}@big.test"),
            vars: Vars::Json("x".repeat(40_000)),
        })
        .collect();
    let ids = spool.append(&recs).unwrap();
    assert!(ids.last().unwrap().segment() > ids[0].segment());
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
}
