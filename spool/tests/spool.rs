//! Behaviour of the spool across reopen: durability, replay from
//! checkpoints, cursors, reclamation, counts, group commit and the
//! directory lock. Damage and crashes are in `damage.rs`.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use common::*;
use volley_spool::{Cursor, Error, Kind, Recipient, RecipientId, Spool, State, Vars, inspect};

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
        let (spool, ids) = spooled(dir.path(), |c| (0..100).map(|i| rec(c, i)).collect());
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
    // cursors are listed by name and can be released
    let second = Cursor {
        position: got[2].0,
        sink_state: 0,
    };
    spool.set_cursor("dest.main.hook", second).unwrap();
    assert_eq!(spool.cursor_names(), vec!["dest.main.hook", "jsonl"]);
    spool.remove_cursor("dest.main.hook").unwrap();
    spool.remove_cursor("dest.main.hook").unwrap(); // gone already: fine
    assert_eq!(spool.cursor_names(), vec!["jsonl"]);
    assert_eq!(spool.cursor("dest.main.hook"), None);
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
fn concurrent_appends_are_durable_when_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    let spool = std::sync::Arc::new(spool);
    let no = spool.create_campaign("c", b"{}").unwrap().no;
    let before = spool.sync_counts();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let spool = std::sync::Arc::clone(&spool);
            std::thread::spawn(move || {
                (0..25)
                    .map(|k| {
                        let r = rec(no, t * 100 + k);
                        let ids = spool.append(std::slice::from_ref(&r)).unwrap();
                        assert_eq!(ids.len(), 1);
                        // where the journal was durable when it was acknowledged
                        (ids[0], r.email, spool.journal_end())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let acked: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let after = spool.sync_counts();
    println!(
        "200 appends from 8 threads: {} segment fdatasyncs, {} journal fdatasyncs",
        after.0 - before.0,
        after.1 - before.1
    );
    // each acknowledgement came after the journal entry that records its
    // recipient was durable
    let mut damage = Vec::new();
    let appended: Vec<_> = spool
        .journal_reader(0)
        .unwrap()
        .read(spool.journal_end(), 10_000, &mut damage)
        .unwrap()
        .into_iter()
        .filter(|(_, e)| e.kind == Kind::Appended)
        .collect();
    assert!(damage.is_empty());
    for (id, _, durable) in &acked {
        let (end, _) = appended
            .iter()
            .find(|(_, e)| {
                e.id.segment() == id.segment()
                    && (e.id.index()..e.id.index() + e.records).contains(&id.index())
            })
            .unwrap_or_else(|| panic!("no journal entry records {id}"));
        assert!(
            end <= durable,
            "{id} acknowledged before its entry was durable"
        );
    }
    // and every acknowledged record reads back after the process is gone
    drop(spool);
    let (spool, report) = Spool::open(dir.path()).unwrap();
    assert!(report.damage.is_empty(), "{:?}", report.damage);
    assert_eq!(report.recipients, 200);
    for (id, email, _) in &acked {
        assert_eq!(spool.state(*id), Some(State::Queued));
        assert_eq!(
            &spool.with_record(*id, |r| r.email.to_string()).unwrap(),
            email
        );
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

#[test]
fn campaigns_made_in_a_group_are_durable_and_unique() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (spool, _) = Spool::open(dir.path()).unwrap();
        let made = spool
            .create_campaigns(&[("m1", b"one".as_slice()), ("m2", b"two".as_slice())])
            .unwrap();
        assert_eq!((made[0].no, made[1].no), (1, 2));
        // a duplicate in the group, or of an existing id, refuses the group
        assert!(
            spool
                .create_campaigns(&[("m3", b"".as_slice()), ("m3", b"".as_slice())])
                .is_err()
        );
        assert!(
            spool
                .create_campaigns(&[("m4", b"".as_slice()), ("m1", b"".as_slice())])
                .is_err()
        );
        assert_eq!(spool.campaign_by_id("m2").unwrap().body, b"two");
        assert!(spool.campaign_by_id("m4").is_none());
        spool.seal_campaigns(&[1, 2]).unwrap();
    }
    let (spool, _) = Spool::open(dir.path()).unwrap();
    assert_eq!(spool.campaign_by_id("m1").unwrap().body, b"one");
    assert!(spool.campaign_by_id("m2").unwrap().is_sealed());
    let c = spool.create_campaign("m5", b"five").unwrap();
    assert_eq!(c.no, 3);
    assert!(spool.create_campaign("m1", b"again").is_err());
}

#[test]
fn finished_messages_are_reclaimed_once_every_sink_has_them() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    let every = std::time::Duration::ZERO;
    // two messages accepted together (one pack), and a campaign
    let made = spool
        .create_campaigns(&[("smtp:a", b"one".as_slice()), ("smtp:b", b"two".as_slice())])
        .unwrap();
    let camp = spool.create_campaign("spring", b"{}").unwrap();
    let recs = vec![rec(made[0].no, 0), rec(made[1].no, 1), rec(camp.no, 2)];
    let ids = spool
        .append_and_seal(&recs, &[made[0].no, made[1].no, camp.no])
        .unwrap();
    spool
        .set_cursor(
            "jsonl",
            Cursor {
                position: 0,
                sink_state: 0,
            },
        )
        .unwrap();
    assert_eq!(spool.reclaim_messages(every).unwrap(), 0, "not finished");
    spool
        .record(&[
            outcome(ids[0], Kind::Delivered),
            outcome(ids[1], Kind::Delivered),
            outcome(ids[2], Kind::Delivered),
        ])
        .unwrap();
    // finished, but the sink has not published them
    assert_eq!(spool.reclaim_messages(every).unwrap(), 0);
    assert_eq!(spool.reclaim_messages(every).unwrap(), 0);
    let end = spool.journal_end();
    spool
        .set_cursor(
            "jsonl",
            Cursor {
                position: end,
                sink_state: 0,
            },
        )
        .unwrap();
    assert_eq!(spool.reclaim_messages(every).unwrap(), 2);
    assert!(spool.campaign_by_id("smtp:a").is_none() && spool.campaign(made[1].no).is_none());
    assert!(
        spool.campaign_by_id("spring").is_some(),
        "campaigns are kept"
    );
    let files: Vec<_> = std::fs::read_dir(dir.path().join("campaigns"))
        .unwrap()
        .collect();
    assert_eq!(files.len(), 1);
    drop(spool);
    // reopened: the counts stay, the messages are gone, numbers not reused
    let (spool, report) = Spool::open(dir.path()).unwrap();
    assert!(report.damage.is_empty(), "{:?}", report.damage);
    assert_eq!(spool.summary().totals().delivered, 3);
    assert!(spool.campaign_by_id("smtp:b").is_none());
    let next = spool.create_campaign("later", b"{}").unwrap();
    assert!(next.no > camp.no);
}
