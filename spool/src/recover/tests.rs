//! Opening a spool whose checkpoint predates acceptance times (format 1).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::record::{Recipient, Vars};
use crate::{Clock, Spool, checkpoint};

const DAY: u64 = 24 * 3600 * 1000;
const T0: u64 = 1_700_000_000_250;

fn clock(t: &Arc<AtomicU64>) -> Clock {
    let t = Arc::clone(t);
    Arc::new(move || t.load(Ordering::SeqCst))
}

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
fn a_format_1_checkpoint_gives_the_campaigns_creation_time() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicU64::new(T0));
    let ids = {
        let (spool, _) = Spool::open_with_clock(dir.path(), clock(&now)).unwrap();
        let c = spool.create_campaign("c", b"{}").unwrap();
        now.store(T0 + 2 * DAY, Ordering::SeqCst);
        let ids = spool
            .append(&(0..20).map(|i| rec(c.no, i)).collect::<Vec<_>>())
            .unwrap();
        assert_eq!(spool.accepted_ms(ids[0]), Some(T0 + 2 * DAY));
        // the checkpoint covers the append; write it as format 1 did
        spool.checkpoint().unwrap();
        let (ckpt, problems) = checkpoint::read(dir.path());
        assert!(problems.is_empty());
        checkpoint::write(dir.path(), &ckpt.unwrap().encode_as(1)).unwrap();
        ids
    };
    now.store(T0 + 5 * DAY, Ordering::SeqCst);
    let created = T0; // the campaign's creation
    for _ in 0..2 {
        // from the format 1 checkpoint, then from the one written at open
        let (spool, report) = Spool::open_with_clock(dir.path(), clock(&now)).unwrap();
        assert!(report.damage.is_empty(), "{:?}", report.damage);
        assert_eq!(report.journal_entries, 0);
        for &id in &ids {
            assert_eq!(spool.accepted_ms(id), Some(created), "{id}");
        }
    }
    let b = std::fs::read(dir.path().join("checkpoint")).unwrap();
    assert_eq!(&b[..8], b"VLYCKPT2", "open writes the current format");
}
