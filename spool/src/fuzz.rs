//! Randomized, structure-aware fuzzing of every decoder that reads spool
//! files: frames, recipient records and their variables, journal entries,
//! whole journal files, segment scans, domain counts and checkpoints (both
//! formats, with acceptance-time runs).
//!
//! Each input starts as a valid encoding and is mutated (bit flips, byte
//! overwrites, truncation, extension, splices, or pure noise); every decoder
//! must return a value or an error and never panic. It runs a million
//! inputs as part of the test suite; alone:
//! `cargo test -p volley-spool fuzz -- --nocapture`
//! (`VOLLEY_FUZZ_ITERATIONS` and `VOLLEY_FUZZ_SEED` change the run).

use crate::accepted::AcceptedTimes;
use crate::checkpoint::{Checkpoint, Run, SegState};
use crate::journal::{self, Entry, Kind, files};
use crate::record::{self, Recipient, Vars};
use crate::summary::{Counts, Summary};
use crate::{RecipientId, State, frame, segment};

fn seeds(rng: &mut fastrand::Rng) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    // a record
    let mut vars = Vec::new();
    Vars::encode_columns(
        ["Ada", "", "Lovelace", &"x".repeat(rng.usize(0..300))],
        &mut vars,
    );
    let r = Recipient {
        campaign: rng.u32(..),
        row: rng.u32(..),
        email: "ada@example.org".into(),
        vars,
    };
    out.push(record::encode(&r).map(|b| b.to_vec()).unwrap_or_default());
    // a journal entry, and a journal file of several
    let mut e = Entry::outcome(
        Kind::Deferred,
        RecipientId(rng.u64(..)),
        3,
        1,
        2,
        b"{\"s\":\"Hi\"}".to_vec(),
    );
    e.email = "a@b.test".into();
    e.prev = State::Queued;
    let mut payload = Vec::new();
    e.encode(&mut payload);
    out.push(payload.clone());
    let mut jfile = files::MAGIC.to_vec();
    for _ in 0..rng.usize(1..6) {
        frame::encode(&mut jfile, &payload);
    }
    let mut appended = Entry::outcome(Kind::Appended, RecipientId::new(1, 0), 0, 0, 0, Vec::new());
    appended.records = 5;
    appended.last_row = 5;
    appended.detail = journal::encode_domain_counts([(
        "a.test",
        Counts {
            queued: 5,
            ..Counts::default()
        },
    )]);
    let mut p = Vec::new();
    appended.encode(&mut p);
    frame::encode(&mut jfile, &p);
    out.push(jfile);
    out.push(appended.detail.clone());
    // a segment with records
    let mut seg = vec![0u8; segment::HEADER];
    seg[..8].copy_from_slice(b"VLYSEG01");
    let rec = record::encode(&r).map(|b| b.to_vec()).unwrap_or_default();
    for _ in 0..rng.usize(1..5) {
        frame::encode(&mut seg, &rec);
    }
    seg.extend_from_slice(&[0u8; 32]);
    out.push(seg);
    // a checkpoint
    let mut summary = Summary::default();
    summary.add(1, "a.test", State::Queued, 2);
    let c = Checkpoint {
        position: 99,
        next_segment: 2,
        sealed_campaigns: vec![1],
        segments: vec![SegState {
            no: 1,
            sealed: false,
            last_pos: 5,
            runs: vec![Run {
                first: 0,
                campaign: 1,
            }],
            accepted: Some({
                let mut a = AcceptedTimes::default();
                a.set(0, 1, rng.u64(..));
                a.set(1, 2, rng.u64(..));
                a
            }),
            states: vec![0, 2],
        }],
        retries: vec![(
            RecipientId::new(1, 0),
            crate::Retry {
                attempts: 1,
                next_ms: 3,
            },
        )],
        summary,
    };
    out.push(c.encode());
    out.push(c.encode_as(1));
    out
}

fn mutate(rng: &mut fastrand::Rng, input: &mut Vec<u8>, pool: &[Vec<u8>]) {
    for _ in 0..rng.usize(1..4) {
        match rng.u8(0..7) {
            0 if !input.is_empty() => {
                let i = rng.usize(0..input.len());
                input[i] ^= 1 << rng.u8(0..8);
            }
            1 if !input.is_empty() => {
                let i = rng.usize(0..input.len());
                input[i] = rng.u8(..);
            }
            2 => input.truncate(rng.usize(0..=input.len())),
            3 => input.extend((0..rng.usize(1..64)).map(|_| rng.u8(..))),
            4 if !input.is_empty() => {
                // interesting values in a 4-byte field
                let i = rng.usize(0..input.len());
                let v = [0u32, 1, 0xff, 0xffff, 0x7fff_ffff, 0xffff_ffff][rng.usize(0..6)]
                    .to_le_bytes();
                for (k, b) in v.iter().enumerate() {
                    if let Some(x) = input.get_mut(i + k) {
                        *x = *b;
                    }
                }
            }
            5 => {
                let other = &pool[rng.usize(0..pool.len())];
                let at = rng.usize(0..=input.len());
                let from = rng.usize(0..=other.len());
                input.splice(at..at, other[from..].iter().copied());
            }
            _ => *input = (0..rng.usize(0..256)).map(|_| rng.u8(..)).collect(),
        }
    }
}

/// Feeds one input to every decoder.
fn decode_all(b: &[u8]) {
    let _ = frame::read(b, 0, record::MAX_RECORD);
    let mut aligned = rkyv::util::AlignedVec::<16>::new();
    aligned.extend_from_slice(b);
    if let Ok(r) = record::access(&aligned) {
        let _ = r.vars();
        let _ = r.domain();
    }
    let _ = Vars::decode(b);
    let _ = Entry::decode(b);
    let _ = journal::decode_domain_counts(b);
    let _ = files::replay(b, 0, 0);
    let _ = files::replay(b, 1 << 40, (1 << 40) + 17);
    let scan = segment::scan(b);
    let _ = segment::resync(b, scan.end);
    let _ = segment::resync(b, b.len() / 2);
    let _ = Checkpoint::decode(b);
}

#[test]
fn decoders_never_panic() {
    let iterations: u64 = std::env::var("VOLLEY_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let seed = std::env::var("VOLLEY_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut pool = seeds(&mut rng);
    let start = std::time::Instant::now();
    for i in 0..iterations {
        if i % 10_000 == 0 {
            // fresh seeds now and then, with new random contents
            pool = seeds(&mut rng);
        }
        let mut input = pool[rng.usize(0..pool.len())].clone();
        mutate(&mut rng, &mut input, &pool);
        decode_all(&input);
    }
    println!(
        "fuzz: {iterations} inputs through 9 decoders in {:.1} s, no panic (seed {seed})",
        start.elapsed().as_secs_f64()
    );
}
