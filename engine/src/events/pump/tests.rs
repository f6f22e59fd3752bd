//! Unit tests of the event pump on a real spool: a crash right after the
//! first publish repeats nothing, and the lag gauges count what waits.

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc;

use volley_spool::{Kind, Recipient, Vars};

use super::*;
use crate::events::JsonlSink;
use crate::events::detail::Detail;
use crate::events::sink::SinkError;
use crate::outcome::Outcome;

fn def() -> CampaignDef {
    CampaignDef {
        id: "c".into(),
        from: "News <news@example.com>".into(),
        from_name: Some("News".into()),
        from_addr: "news@example.com".into(),
        reply_to: None,
        subject: "Hi".into(),
        html: None,
        text: Some("x".into()),
        list_unsubscribe: None,
        tags: Default::default(),
        columns: vec![],
        personalized: true,
        to: None,
        configuration_set: None,
        message: None,
        list_management: None,
        pool: None,
    }
}

/// A spool holding `n` delivered recipients whose outcomes happened
/// `age_ms` ago.
fn spool_with_deliveries(dir: &Path, n: u32, age_ms: u64) -> Arc<Spool> {
    let (spool, _) = Spool::open(dir).unwrap();
    let c = spool.create_campaign("c", &def().to_bytes()).unwrap();
    let mut vars = Vec::new();
    Vars::encode_columns([], &mut vars);
    let recs: Vec<Recipient> = (0..n)
        .map(|i| Recipient {
            campaign: c.no,
            row: i + 1,
            email: format!("r{i}@x.test"),
            vars: vars.clone(),
        })
        .collect();
    let ids = spool.append(&recs).unwrap();
    let at = volley_spool::now_ms() - age_ms;
    let delivered = Outcome::Delivered {
        reply: "250 ok".into(),
    };
    let detail = Detail::of(&delivered, "Hi", None, None).encode();
    let entries: Vec<Entry> = ids
        .iter()
        .map(|&id| Entry::outcome(Kind::Delivered, id, 1, at, 0, detail.clone()))
        .collect();
    spool.record(&entries).unwrap();
    Arc::new(spool)
}

fn ctx(spool: &Arc<Spool>, stop: bool) -> PumpCtx {
    let metrics = Arc::new(Metrics::new());
    PumpCtx {
        spool: Arc::clone(spool),
        counts: metrics.events_file(),
        select: None,
        start_at: 0,
        metrics,
        reporting_mta: "mta.test".into(),
        identity: Identity {
            account_id: "000000000000".into(),
            arn_template: "arn:aws:ses:us-east-1:{account_id}:identity/{domain}".into(),
        },
        stop: Arc::new(AtomicBool::new(stop)),
        position: Arc::new(AtomicU64::new(0)),
    }
}

/// Events in the JSONL file per (recipient, event type).
fn counts(path: &Path) -> HashMap<(String, String), usize> {
    let mut out = HashMap::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = (
            v["mail"]["destination"][0].as_str().unwrap().to_string(),
            v["eventType"].as_str().unwrap().to_string(),
        );
        *out.entry(key).or_default() += 1;
    }
    out
}

/// The JSONL sink, dying (as by kill -9) right after its first batch is
/// durable in the file, before the pump can store a cursor.
struct DiesAfterPublish(JsonlSink);

impl NotificationSink for DiesAfterPublish {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn publish(&mut self, events: &[Event]) -> Result<(), SinkError> {
        self.0.publish(events)?;
        panic!("killed after the first publish");
    }
    fn state(&self) -> u64 {
        self.0.state()
    }
    fn resume(&mut self, state: u64) -> Result<(), SinkError> {
        self.0.resume(state)
    }
}

#[test]
fn a_crash_after_the_first_publish_repeats_no_event() {
    let d = tempfile::tempdir().unwrap();
    let spool = spool_with_deliveries(&d.path().join("spool"), 50, 0);
    let file = d.path().join("events.jsonl");
    let (_wake_tx, wake) = crossbeam_channel::bounded::<()>(1);

    // first start: the sink dies as soon as the first batch is in the file
    let first = ctx(&spool, false);
    let sink = DiesAfterPublish(JsonlSink::open(&file).unwrap());
    let died = std::thread::scope(|s| s.spawn(|| run(&first, Box::new(sink), &wake)).join());
    assert!(died.is_err(), "the sink was meant to die");
    assert_eq!(counts(&file).len(), 100, "the first batch reached the file");

    // the restart publishes from the first cursor: each event once
    let second = ctx(&spool, true);
    run(&second, Box::new(JsonlSink::open(&file).unwrap()), &wake);
    let counts = counts(&file);
    assert_eq!(counts.len(), 100, "a Send and a Delivery per recipient");
    let repeated: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).take(5).collect();
    assert!(repeated.is_empty(), "published twice: {repeated:?}");
}

/// A sink that tells when `publish` is called (with how many events) and
/// waits for a go before it returns.
struct Gated {
    entered: mpsc::Sender<usize>,
    go: mpsc::Receiver<()>,
}

impl NotificationSink for Gated {
    fn name(&self) -> &str {
        "gated"
    }
    fn publish(&mut self, events: &[Event]) -> Result<(), SinkError> {
        let _ = self.entered.send(events.len());
        let _ = self.go.recv();
        Ok(())
    }
}

/// Every entry in the journal.
fn journal_entries(spool: &Spool) -> u64 {
    let mut r = spool.journal_reader(0).unwrap();
    let mut n = 0;
    loop {
        let b = r
            .read(spool.journal_end(), 1 << 20, &mut Vec::new())
            .unwrap();
        if b.is_empty() {
            return n;
        }
        n += b.len() as u64;
    }
}

#[test]
fn lag_gauges_count_unpublished_entries_and_the_oldest_wait() {
    let d = tempfile::tempdir().unwrap();
    // more outcomes than one batch: the rest is counted without publishing
    let spool = spool_with_deliveries(&d.path().join("spool"), 5000, 60_000);
    let total = journal_entries(&spool);
    assert!(total > BATCH as u64);
    let c = ctx(&spool, true);
    let (entered_tx, entered) = mpsc::channel();
    let (go, go_rx) = mpsc::channel();
    let sink = Gated {
        entered: entered_tx,
        go: go_rx,
    };
    let (_wake_tx, wake) = crossbeam_channel::bounded::<()>(1);
    let lag = |c: &PumpCtx| {
        (
            c.metrics.event_sink_lag_entries.get(),
            c.metrics.event_sink_lag_seconds.get(),
        )
    };
    std::thread::scope(|s| {
        let pump = s.spawn(|| run(&c, Box::new(sink), &wake));
        // first batch being published: nothing is published yet
        entered.recv().unwrap();
        let (entries, secs) = lag(&c);
        assert_eq!(entries, total as i64);
        assert!((60.0..3600.0).contains(&secs), "{secs}");
        go.send(()).unwrap();
        // second batch: the first one is off the count
        entered.recv().unwrap();
        assert_eq!(lag(&c).0, total as i64 - BATCH as i64);
        go.send(()).unwrap();
        pump.join().unwrap();
    });
    assert_eq!(lag(&c), (0, 0.0), "caught up");
}
