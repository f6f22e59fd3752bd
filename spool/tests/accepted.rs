//! Acceptance times: each recipient's is when its own append was accepted
//! (exact for a batch; never later and less than a second earlier for
//! appends that share a run), not when its campaign was created, and it
//! survives journal replay, checkpoints, recovery and reclamation.

mod common;

use common::*;
use volley_spool::{ACCEPTED_GRANULE_MS, Kind, RecipientId, Spool};

const DAY: u64 = 24 * 3600 * 1000;
/// A time that is not on a whole second.
const T0: u64 = 1_700_000_000_250;

fn assert_accepted(spool: &Spool, ids: &[RecipientId], at: u64) {
    for &id in ids {
        let got = spool
            .accepted_ms(id)
            .unwrap_or_else(|| panic!("{id} has no time"));
        assert_eq!(got, at, "{id}");
    }
}

/// A campaign created at T0 with 50 recipients appended at T0 and 50 more
/// by an ingest resumed three days later.
fn resumed(dir: &std::path::Path, clock: &TestClock) -> (Vec<RecipientId>, Vec<RecipientId>) {
    let (spool, _) = clock.open(dir);
    let c = spool.create_campaign("c", b"{}").unwrap();
    assert_eq!(c.created_ms, T0);
    let first = spool
        .append(&(0..50).map(|i| rec(c.no, i)).collect::<Vec<_>>())
        .unwrap();
    clock.set(T0 + 3 * DAY);
    let later = spool
        .append(&(50..100).map(|i| rec(c.no, i)).collect::<Vec<_>>())
        .unwrap();
    assert_accepted(&spool, &first, T0);
    assert_accepted(&spool, &later, T0 + 3 * DAY);
    (first, later)
}

#[test]
fn a_resumed_append_days_later_is_accepted_then() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::at(T0);
    resumed(dir.path(), &clock);
}

#[test]
fn acceptance_survives_journal_replay_without_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::at(T0);
    let (first, later) = resumed(dir.path(), &clock); // dropped: no checkpoint
    clock.set(T0 + 10 * DAY);
    let (spool, report) = clock.open(dir.path());
    assert!(report.damage.is_empty(), "{:?}", report.damage);
    assert!(report.journal_entries >= 2, "the appends are replayed");
    assert_accepted(&spool, &first, T0);
    assert_accepted(&spool, &later, T0 + 3 * DAY);
}

#[test]
fn acceptance_survives_a_checkpoint_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::at(T0);
    let (first, later) = resumed(dir.path(), &clock);
    {
        let (spool, _) = clock.open(dir.path());
        spool.checkpoint().unwrap();
    }
    clock.set(T0 + 10 * DAY);
    let (spool, report) = clock.open(dir.path());
    assert_eq!(
        report.journal_entries, 0,
        "nothing replayed: the checkpoint has it all"
    );
    assert_accepted(&spool, &first, T0);
    assert_accepted(&spool, &later, T0 + 3 * DAY);
}

#[test]
fn small_appends_close_together_share_a_time_that_is_never_later() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::at(T0);
    let (spool, _) = clock.open(dir.path());
    let c = spool.create_campaign("c", b"{}").unwrap();
    let mut ids = Vec::new();
    for i in 0..100u32 {
        let at = T0 + u64::from(i) * 7; // 700 ms in all, within one second
        clock.set(at);
        let id = spool.append(&[rec(c.no, i)]).unwrap()[0];
        let got = spool.accepted_ms(id).unwrap();
        assert!(
            got <= at && at - got < ACCEPTED_GRANULE_MS,
            "{got} for {at}"
        );
        ids.push(id);
    }
    // one run: the first append's exact time
    assert_accepted(&spool, &ids, T0);
    clock.set(T0 + 999);
    let next = spool.append(&[rec(c.no, 100)]).unwrap();
    assert_eq!(spool.accepted_ms(next[0]), Some(T0));
    // a second after the run began: a run of its own, exact
    clock.set(T0 + 1000);
    let next = spool.append(&[rec(c.no, 101)]).unwrap();
    assert_eq!(spool.accepted_ms(next[0]), Some(T0 + 1000));
}

#[test]
fn batches_finished_out_of_order_each_get_their_own_time() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::at(T0);
    let (a, b) = {
        let (spool, _) = clock.open(dir.path());
        let c = spool.create_campaign("c", b"{}").unwrap();
        let a = spool
            .append_start(&(0..5).map(|i| rec(c.no, i)).collect::<Vec<_>>())
            .unwrap();
        let b = spool
            .append_start(&(5..10).map(|i| rec(c.no, i)).collect::<Vec<_>>())
            .unwrap();
        // another producer's batch, written after `a`, is acknowledged first
        clock.set(T0 + DAY);
        let b = spool.append_finish(b).unwrap();
        assert_eq!(spool.accepted_ms(RecipientId::new(b[0].segment(), 0)), None);
        clock.set(T0 + 2 * DAY);
        let a = spool.append_finish(a).unwrap();
        assert_accepted(&spool, &a, T0 + 2 * DAY);
        assert_accepted(&spool, &b, T0 + DAY);
        (a, b)
    };
    clock.set(T0 + 10 * DAY);
    for _ in 0..2 {
        // replayed, then from the checkpoint written at open
        let (spool, _) = clock.open(dir.path());
        assert_accepted(&spool, &a, T0 + 2 * DAY);
        assert_accepted(&spool, &b, T0 + DAY);
    }
}

#[test]
fn records_never_acknowledged_are_accepted_when_recovery_takes_them_on() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::at(T0);
    let (gap, finished, adopted) = {
        let (spool, _) = clock.open(dir.path());
        let c = spool.create_campaign("c", b"{}").unwrap();
        // written before a batch that is acknowledged: the index keeps them
        // (and the checkpoint has them) without a time
        let gap = spool.append_start(&[rec(c.no, 0), rec(c.no, 1)]).unwrap();
        let later = spool.append_start(&[rec(c.no, 2)]).unwrap();
        let finished = spool.append_finish(later).unwrap();
        spool.checkpoint().unwrap();
        // written after everything the journal knows: the scan adopts it
        let tail = spool.append_start(&[rec(c.no, 3)]).unwrap();
        // the process dies before acknowledging either
        std::mem::forget((gap, tail));
        let no = finished[0].segment();
        (
            vec![RecipientId::new(no, 0), RecipientId::new(no, 1)],
            finished,
            vec![RecipientId::new(no, 3)],
        )
    };
    clock.set(T0 + 4 * DAY);
    let (spool, report) = clock.open(dir.path());
    assert!(report.damage.is_empty(), "{:?}", report.damage);
    assert_eq!(report.recipients, 4);
    assert_accepted(&spool, &finished, T0);
    assert_accepted(&spool, &gap, T0 + 4 * DAY);
    assert_accepted(&spool, &adopted, T0 + 4 * DAY);
}

#[test]
fn acceptance_survives_the_reclamation_of_another_segment() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::at(T0);
    let (spool, _) = clock.open(dir.path());
    let c = spool.create_campaign("big", b"{}").unwrap();
    // ~40 KB records: an 8 MiB segment holds ~200 of them
    let first = spool.append(&big_records(c.no, 250)).unwrap();
    let s1 = first[0].segment();
    let (done, kept_a): (Vec<_>, Vec<_>) = first.iter().partition(|id| id.segment() == s1);
    assert!(!kept_a.is_empty(), "the batch spans two segments");
    spool
        .record(
            &done
                .iter()
                .map(|&id| outcome(id, Kind::Delivered))
                .collect::<Vec<_>>(),
        )
        .unwrap();
    assert_eq!(spool.reclaim().unwrap(), 1);
    clock.set(T0 + DAY);
    let later = spool.append(&big_records(c.no, 5)).unwrap();
    assert_eq!(later[0].segment(), kept_a[0].segment());
    drop(spool);
    clock.set(T0 + 10 * DAY);
    for _ in 0..2 {
        // replayed, then from the checkpoint written at open
        let (spool, report) = clock.open(dir.path());
        assert!(report.damage.is_empty(), "{:?}", report.damage);
        assert_eq!(spool.accepted_ms(done[0]), None, "reclaimed");
        assert_accepted(&spool, &kept_a, T0);
        assert_accepted(&spool, &later, T0 + DAY);
    }
}
