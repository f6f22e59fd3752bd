//! The per-message bench's stage timings: one campaign spooled into a
//! fresh spool, then each stage of a message's life run over all its
//! recipients in this process, one stage after another, timed by the
//! process's user + system CPU (`getrusage`). See `benches/per_message.rs`
//! for what each stage covers. Only generated, trusted input.

use std::net::SocketAddr;

use volley_engine::campaign::{self, CampaignDef};
use volley_engine::config::DkimConfig;
use volley_engine::events::detail::Detail;
use volley_engine::events::model::{self, Context};
use volley_engine::events::sink::{JsonlSink, NotificationSink};
use volley_engine::ingest;
use volley_engine::message::dkim::Signers;
use volley_engine::message::headers::SentHeaders;
use volley_engine::message::payload::Payload;
use volley_engine::message::{self, Campaigns, mime};
use volley_engine::outcome::Outcome;
use volley_engine::smtp::client::{self, Timeouts, TlsMode, TlsSettings};
use volley_engine::smtp::session::Follow;
use volley_engine::template::Templates;
use volley_spool::{Cursor, Entry, Kind, RecipientId, Spool};
use volley_tests::Fixture;

use crate::newsletter::{self, Alg};
use crate::workloads::Workload;

/// Recipients of one shared message (the default `recipients_per_transaction`).
const PER_TRANSACTION: usize = 100;
/// Outcomes per journal commit, and per event batch.
const JOURNAL_BATCH: usize = 64;
const EVENT_BATCH: usize = 512;

/// User + system CPU seconds of this process.
fn cpu() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(u.ru_utime) + secs(u.ru_stime)
}

/// CPU seconds of this thread (exact, unlike `getrusage`'s ticks).
fn thread_cpu() -> f64 {
    // SAFETY: clock_gettime only writes the struct it is given.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Runs `f`, adding this thread's CPU seconds in it to `total`.
fn thread_timed<T>(total: &mut f64, f: impl FnOnce() -> T) -> T {
    let at = thread_cpu();
    let r = f();
    *total += thread_cpu() - at;
    r
}

/// Runs `f`, adding the process's CPU seconds in it to `total` (for
/// stages that may use other threads).
fn timed<T>(total: &mut f64, f: impl FnOnce() -> T) -> T {
    let at = cpu();
    let r = f();
    *total += cpu() - at;
    r
}

/// The stages of `n` recipients of workload `w`: (stage, µs per recipient).
pub fn measure(w: Workload, n: usize, alg: Alg, sink_port: u16) -> Vec<(&'static str, f64)> {
    let fx = Fixture::new();
    let key = newsletter::write_key(&fx, alg);
    w.write(&fx, n, |i| format!("d{}.bench.test", i % 100));
    let loaded = campaign::load(&fx.path().join("campaign.toml")).expect("campaign loads");
    let (spool, _) = Spool::open(&fx.path().join("spool")).expect("spool opens");
    ingest::run(&spool, &loaded, Default::default(), |_, _| {}, |_| {}).expect("ingest");
    let mut ids = Vec::with_capacity(n);
    spool.for_each(|id, _, _, _| ids.push(id));
    let no = spool.campaign_of(ids[0]).expect("campaign");
    let def = CampaignDef::from_bytes(&spool.campaign(no).expect("campaign").body).expect("def");
    let per = if w.shared() { PER_TRANSACTION } else { 1 };
    let groups: Vec<&[RecipientId]> = ids.chunks(per).collect();
    let signers = Signers::load(&[DkimConfig {
        domain: newsletter::FROM_DOMAIN.into(),
        selector: "b".into(),
        key,
        algorithm: alg.dkim(),
    }])
    .expect("key loads");
    let templates = Templates::compile(def.template_sources()).expect("templates");
    let domain = def.from_domain();
    // [record, render, MIME, body hash, signature, DATA payload, whole,
    //  SMTP, journal, events]
    let mut t = [0.0f64; 10];
    // each message through every stage, its buffers dropped before the
    // next (as production does), each stage timed by this thread's CPU
    for (i, g) in groups.iter().enumerate() {
        let (rcpt, vars) = thread_timed(&mut t[0], || {
            spool
                .with_record(g[0], |r| {
                    let email = r.email.to_string();
                    let vars = if def.personalized {
                        message::variables(&def, &email, r.vars()).expect("variables")
                    } else {
                        serde_json::Value::Object(Default::default())
                    };
                    (email, vars)
                })
                .expect("record")
        });
        let rendered = thread_timed(&mut t[1], || templates.render(vars).expect("renders"));
        let id = format!("{i:016x}@bench.test");
        let body = thread_timed(&mut t[2], || {
            mime::build(&def, &rcpt, &rendered, &id, 1_700_000_000).expect("mime")
        });
        let end = body
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("header end");
        let mut whole = 0.0;
        let sigs = thread_timed(&mut whole, || signers.sign(domain, &body).expect("signs"));
        thread_timed(&mut t[4], || {
            signers.sign(domain, &body[..end + 4]).expect("signs")
        });
        t[3] += whole;
        thread_timed(&mut t[5], || {
            let headers = SentHeaders::capture(&[&sigs, &body]);
            (Payload::new(sigs, body), headers)
        });
    }
    // the body hash: signing the message less signing its headers alone
    t[3] = (t[3] - t[4]).max(0.0);
    // production as a whole, as a production thread runs it
    let mut cache = Campaigns::default();
    for g in &groups {
        thread_timed(&mut t[6], || {
            message::produce(&spool, &signers, None, &mut cache, g).expect("produces")
        });
    }
    // the messages for SMTP, the journal and the events (not timed)
    let data: Vec<(Payload, SentHeaders)> = groups
        .iter()
        .map(|g| {
            let o = message::produce(&spool, &signers, None, &mut cache, g).expect("produces");
            (o.data, std::sync::Arc::unwrap_or_clone(o.headers))
        })
        .collect();
    let subject = "Name1, your June update";
    let addr = SocketAddr::from(([127, 0, 0, 1], sink_port));
    let all: Vec<String> = ids
        .iter()
        .map(|&id| {
            spool
                .with_record(id, |r| r.email.to_string())
                .expect("record")
        })
        .collect();
    timed(&mut t[7], || smtp(addr, &def.from_addr, &all, per, &data));
    timed(&mut t[8], || journal(&spool, &ids, per, &data, subject));
    let events_path = fx.path().join("events.jsonl");
    timed(&mut t[9], || events(&spool, &def, &events_path));
    let us = |s: f64| s * 1e6 / n as f64;
    let staged: f64 = t[..6].iter().sum();
    vec![
        ("record and variables", us(t[0])),
        ("render", us(t[1])),
        ("MIME", us(t[2])),
        ("body hash", us(t[3])),
        ("signature (headers + sign)", us(t[4])),
        ("DATA payload", us(t[5])),
        ("production, sum of the above", us(staged)),
        ("production, measured whole", us(t[6])),
        ("SMTP (one session, streamed)", us(t[7])),
        ("journal (64 a commit)", us(t[8])),
        ("events (512 a batch)", us(t[9])),
        (
            "total (whole production + SMTP + journal + events)",
            us(t[6] + t[7] + t[8] + t[9]),
        ),
    ]
}

/// Sends every message over one session (a shared message to its group).
fn smtp(addr: SocketAddr, from: &str, all: &[String], per: usize, data: &[(Payload, SentHeaders)]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let tls = TlsSettings::disabled();
        let t = Timeouts::default();
        let mut s = client::open(addr, None, "bench.test", &tls, TlsMode::Disabled, "", &t)
            .await
            .expect("session opens");
        // streamed as the engine sends a site's ready messages: each
        // message followed by the next transaction's commands
        let groups: Vec<Vec<&str>> = all
            .chunks(per)
            .map(|g| g.iter().map(String::as_str).collect())
            .collect();
        let msgs: Vec<_> = groups.iter().zip(data).collect();
        for (i, (rcpts, (d, _))) in msgs.iter().enumerate() {
            let next = msgs.get(i + 1).map(|(r, (n, _))| Follow {
                from,
                rcpts: r,
                len: n.len(),
            });
            s.send_then(from, rcpts, &d.parts(), next)
                .await
                .expect("sent");
        }
        s.quit().await;
    });
}

/// Commits a Delivered outcome per recipient, as the recorder writes it.
fn journal(
    spool: &Spool,
    ids: &[RecipientId],
    per: usize,
    data: &[(Payload, SentHeaders)],
    subject: &str,
) {
    let outcome = Outcome::Delivered {
        reply: "250 2.0.0 Ok: queued as 4ZbQ2s1Xy8z".into(),
    };
    let now = volley_spool::now_ms();
    for (b, batch) in ids.chunks(JOURNAL_BATCH).enumerate() {
        let entries: Vec<Entry> = batch
            .iter()
            .enumerate()
            .map(|(i, &id)| {
                let k = (b * JOURNAL_BATCH + i) / per;
                let mut d = Detail::of(&outcome, subject, Some(now + 86_400_000), Some(&data[k].1));
                d.accepted_ms = Some(now);
                Entry::outcome(Kind::Delivered, id, 1, now, 0, d.encode())
            })
            .collect();
        spool.record(&entries).expect("journaled");
    }
}

/// Publishes the journal's outcomes as the pump does.
fn events(spool: &Spool, def: &CampaignDef, path: &std::path::Path) {
    let mut sink = JsonlSink::open(path).expect("sink");
    let mut reader = spool.journal_reader(0).expect("reader");
    let end = spool.journal_end();
    let mut damage = Vec::new();
    let mut headers = model::HeadersCache::default();
    let sender = std::sync::Arc::new(model::Sender::new(
        def,
        "arn:aws:ses:local:000000000000:identity/bench.test",
        "000000000000",
    ));
    loop {
        let batch = reader.read(end, EVENT_BATCH, &mut damage).expect("read");
        if batch.is_empty() {
            break;
        }
        let mut events = Vec::with_capacity(batch.len() * 2);
        for (_, e) in &batch {
            if e.kind.outcome_state().is_none() {
                continue;
            }
            let mid = message::message_id(spool.uid(), e.id);
            let c = Context {
                campaign: def,
                accepted_ms: 0,
                email: &e.email,
                message_id: &mid,
                reporting_mta: "bench.test",
                sender: &sender,
            };
            events.extend(model::events_with(&c, e, &mut headers));
        }
        sink.publish(&events).expect("published");
        let c = Cursor {
            position: reader.position(),
            sink_state: sink.state(),
        };
        spool.set_cursor(sink.name(), c).expect("cursor");
    }
}
