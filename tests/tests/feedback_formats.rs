//! Reports in the formats real MTAs and mailbox providers write (every
//! single-recipient sample of the parser's corpus, its recipient replaced
//! by a campaign's), delivered to a recipient's return path with Python's
//! smtplib: each becomes one event of its expected type and subtype for
//! that recipient. And a complaint whose provider redacted the recipient,
//! attributed through its token after the recipient's records are gone.

use std::path::Path;
use std::time::Duration;

use volley_tests::feedback_rig::*;
use volley_tests::*;

/// Replaces every occurrence of `from` (ASCII case-insensitive) in `raw`.
fn replace_ci(raw: &[u8], from: &str, to: &str) -> Vec<u8> {
    let needle = from.to_ascii_lowercase().into_bytes();
    let lower = raw.to_ascii_lowercase();
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if lower[i..].starts_with(&needle) {
            out.extend_from_slice(to.as_bytes());
            i += needle.len();
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    out
}

/// One sample of the parser's corpus about one recipient, as
/// `expected.toml` classifies it.
struct Case {
    file: String,
    email: String,
    kind: String,
    bounce: Option<(String, String)>,
    feedback_type: Option<String>,
}

fn cases() -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/feedback");
    let text = std::fs::read_to_string(dir.join("expected.toml")).expect("expected.toml");
    let table: toml::Table = text.parse().expect("expected.toml parses");
    let mut out = Vec::new();
    for (file, v) in table {
        let kind = v.get("kind").and_then(|k| k.as_str()).unwrap_or("");
        let rcpts = v
            .get("recipients")
            .and_then(|r| r.as_array())
            .cloned()
            .unwrap_or_default();
        if rcpts.len() != 1 || v.get("recipient_count").is_some() {
            continue;
        }
        // the address must be there to be replaced (not in an encoded part)
        let r = &rcpts[0];
        let named = r
            .get("email")
            .or(Some(r))
            .and_then(|x| x.as_str())
            .unwrap_or("");
        let raw = std::fs::read(dir.join(&file)).unwrap_or_default();
        if named.is_empty()
            || !raw
                .to_ascii_lowercase()
                .windows(named.len())
                .any(|w| w == named.to_ascii_lowercase().as_bytes())
        {
            continue;
        }
        let s = |k: &str| r.get(k).and_then(|x| x.as_str()).map(str::to_string);
        let case = match kind {
            "bounce" if s("action").as_deref() == Some("failed") => Case {
                file,
                email: s("email").unwrap_or_default(),
                kind: "Bounce".into(),
                bounce: Some((
                    s("bounce_type").unwrap_or_default(),
                    s("bounce_sub_type").unwrap_or_default(),
                )),
                feedback_type: None,
            },
            "complaint" => Case {
                file,
                email: r.as_str().unwrap_or_default().to_string(),
                kind: "Complaint".into(),
                bounce: None,
                feedback_type: v
                    .get("feedback_type")
                    .and_then(|f| f.as_str())
                    .map(str::to_string),
            },
            _ => continue,
        };
        out.push(case);
    }
    out
}

#[test]
fn reports_in_the_formats_of_real_mtas_are_attributed_by_their_return_path() {
    let cases = cases();
    assert!(cases.len() >= 20, "{} cases", cases.len());
    let rig = rig();
    let _service = start(&rig);
    let rcpts: Vec<String> = (0..cases.len())
        .map(|i| format!("r{i:02}@ex.test"))
        .collect();
    let refs: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    campaign(&rig, "formats", &refs, "");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/feedback");
    for (case, rcpt) in cases.iter().zip(&rcpts) {
        let (rp, _) = received(&rig.sink, rcpt);
        let raw = std::fs::read(dir.join(&case.file)).expect("sample");
        let raw = replace_ci(&raw, &case.email, rcpt);
        let r = smtplib(&rig, "", &rp, &raw);
        assert_eq!(r["ok"], true, "{}: {r}", case.file);
    }
    // every report gets its event (the per-case checks below name any
    // that does not)
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        let ev = rig.fx.events();
        if of_type(&ev, "Bounce").len() + of_type(&ev, "Complaint").len() >= cases.len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let ev = rig.fx.events();
    for (case, rcpt) in cases.iter().zip(&rcpts) {
        let found: Vec<&serde_json::Value> = of_type(&ev, &case.kind)
            .into_iter()
            .filter(|e| e["mail"]["destination"][0] == rcpt.as_str())
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{}: {} events for {rcpt}",
            case.file,
            found.len()
        );
        let e = found[0];
        if let Some((t, sub)) = &case.bounce {
            assert_eq!(e["bounce"]["bounceType"], t.as_str(), "{}: {e}", case.file);
            assert_eq!(
                e["bounce"]["bounceSubType"],
                sub.as_str(),
                "{}: {e}",
                case.file
            );
            assert_eq!(
                e["bounce"]["bouncedRecipients"][0]["emailAddress"],
                rcpt.as_str()
            );
        }
        if let Some(ft) = &case.feedback_type {
            assert_eq!(
                e["complaint"]["complaintFeedbackType"],
                ft.as_str(),
                "{}: {e}",
                case.file
            );
        }
    }
    println!("{} reports in real formats attributed", cases.len());
}

#[test]
fn a_redacted_complaint_is_attributed_after_the_records_are_gone() {
    let rig = rig();
    let _service = start(&rig);
    // a non-personalized campaign: with feedback on its recipients no
    // longer share a transaction, each has its own return path
    campaign(
        &rig,
        "first",
        &["gina@ex.test", "hank@ex.test"],
        "personalized = false\n",
    );
    let (rp, _) = received(&rig.sink, "gina@ex.test");
    let (hank_rp, _) = received(&rig.sink, "hank@ex.test");
    assert_ne!(rp, hank_rp);
    assert_eq!(rig.sink.files().len(), 2, "one transaction each");
    // the finished segment is reclaimed; its addresses stay in the ledger
    let spool = rig.fx.path().join("spool");
    wait_until(Duration::from_secs(60), "the segment reclaimed", || {
        let segs = std::fs::read_dir(spool.join("segments"))
            .map(|d| d.count())
            .unwrap_or(0);
        let ledgers = std::fs::read_dir(spool.join("ledger"))
            .map(|d| d.count())
            .unwrap_or(0);
        segs == 0 && ledgers > 0
    });
    // a complaint whose provider redacted the recipient everywhere
    let report = arf(&rp, "redacted@ex.test").replace("To: redacted@ex.test", "To: [redacted]");
    let r = smtplib(&rig, "fbl@provider.example", "fbl@fbl.example.net", report);
    assert_eq!(r["ok"], true, "{r}");
    wait_events(&rig, "the complaint", |ev| {
        !of_type(ev, "Complaint").is_empty()
    });
    let ev = rig.fx.events();
    let c = of_type(&ev, "Complaint")[0];
    assert_eq!(
        c["complaint"]["complainedRecipients"][0]["emailAddress"], "gina@ex.test",
        "{c}"
    );
    assert_eq!(c["mail"]["tags"]["volley:campaign"][0], "first");
}
