//! Unit tests of the store's operations: add, contains, remove, get,
//! topics, normalization, CSV import and export (temp directories, fixed
//! clock).

use std::sync::Arc;

use super::*;

pub(super) const NOW: u64 = 1_700_000_000_000;

pub(super) fn open(dir: &std::path::Path) -> SuppressionList {
    let opts = Options {
        clock: Arc::new(|| NOW),
        ..Options::default()
    };
    SuppressionList::open_with(dir, opts).unwrap()
}

pub(super) fn entry(email: &str, reason: Reason, at_ms: u64) -> Entry {
    Entry::new(email, reason, at_ms)
}

#[test]
fn add_contains_get_update_remove() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path());
    assert!(s.is_empty());
    let mut e = entry("Bob@Example.COM", Reason::Bounce, 5);
    e.message_id = Some("0100-abc".into());
    e.feedback_id = Some(" fb-1 ".into());
    assert_eq!(
        s.add(vec![e, entry("carol@example.com", Reason::Complaint, 6)])
            .unwrap(),
        2
    );
    assert_eq!(s.len(), 2);
    assert!(s.contains("bob@example.com", None));
    assert!(s.contains("  BOB@example.com ", Some("news")));
    assert!(!s.contains("dave@example.com", None));
    let got = s.get("bob@EXAMPLE.com").unwrap().unwrap();
    assert_eq!(got.email, "bob@example.com");
    assert_eq!(got.reason, Reason::Bounce);
    assert_eq!(got.at_ms, 5);
    assert_eq!(got.message_id.as_deref(), Some("0100-abc"));
    assert_eq!(got.feedback_id.as_deref(), Some("fb-1"));
    assert_eq!(got.topic, None);

    // Re-adding replaces: one entry, latest reason and time.
    assert_eq!(
        s.add(vec![entry("bob@example.com", Reason::Complaint, 9)])
            .unwrap(),
        0
    );
    assert_eq!(s.len(), 2);
    let got = s.get("bob@example.com").unwrap().unwrap();
    assert_eq!(
        (got.reason, got.at_ms, got.message_id),
        (Reason::Complaint, 9, None)
    );

    assert_eq!(
        s.remove(&["BOB@example.com", "nobody@example.com", "bob@example.com"])
            .unwrap(),
        1
    );
    assert!(!s.contains("bob@example.com", None));
    assert_eq!(s.get("bob@example.com").unwrap(), None);
    assert_eq!(s.len(), 1);
    // Added again after removal: new.
    assert_eq!(
        s.add(vec![entry("bob@example.com", Reason::Bounce, 10)])
            .unwrap(),
        1
    );
    assert_eq!(s.len(), 2);
}

#[test]
fn topic_entries_scope_to_their_topic() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path());
    let mut e = entry("ann@example.com", Reason::Complaint, 1);
    e.topic = Some("weekly".into());
    s.add(vec![e]).unwrap();
    assert!(s.contains("ann@example.com", Some("weekly")));
    assert!(s.contains("ann@example.com", Some(" weekly ")));
    assert!(!s.contains("ann@example.com", Some("Weekly")));
    assert!(!s.contains("ann@example.com", Some("offers")));
    assert!(!s.contains("ann@example.com", None));
    assert_eq!(s.get("ann@example.com").unwrap(), None);
    let got = s
        .get_scoped("ann@example.com", Some("weekly"))
        .unwrap()
        .unwrap();
    assert_eq!(got.topic.as_deref(), Some("weekly"));
    // A whole-address entry beside it covers every topic.
    s.add(vec![entry("ann@example.com", Reason::Bounce, 2)])
        .unwrap();
    assert_eq!(s.len(), 2);
    assert!(s.contains("ann@example.com", Some("offers")));
    assert_eq!(s.remove(&["ann@example.com"]).unwrap(), 1);
    assert!(!s.contains("ann@example.com", Some("offers")));
    assert!(s.contains("ann@example.com", Some("weekly")));
    assert_eq!(
        s.remove_scoped(&[("ann@example.com", Some("weekly"))])
            .unwrap(),
        1
    );
    assert!(s.is_empty());
}

#[test]
fn normalization_and_rejections() {
    assert_eq!(normalize_email("  A.B@Ex.Org\t").unwrap(), "a.b@ex.org");
    assert_eq!(normalize_email("Ünï@Éx.org").unwrap(), "ünï@éx.org");
    for bad in [
        "",
        "   ",
        "no-at-sign",
        "@example.com",
        "user@",
        "user@exa mple.com",
        "us\ner@example.com",
        "user@exa\u{7f}mple.com",
    ] {
        let err = normalize_email(bad).unwrap_err();
        assert!(
            matches!(err, SuppressionError::InvalidAddress { .. }),
            "{bad:?}: {err}"
        );
    }
    let long = format!("{}@example.com", "a".repeat(310));
    assert!(normalize_email(&long).is_err());
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path());
    // One bad entry fails the whole call and writes nothing.
    let err = s
        .add(vec![
            entry("ok@example.com", Reason::Bounce, 1),
            entry("bad", Reason::Bounce, 1),
        ])
        .unwrap_err();
    assert!(err.to_string().contains("\"bad\""), "{err}");
    assert!(s.is_empty());
    let mut e = entry("ok@example.com", Reason::Bounce, 1);
    e.topic = Some("a\u{0}b".into());
    assert!(matches!(
        s.add(vec![e]),
        Err(SuppressionError::InvalidField { field: "topic", .. })
    ));
    assert!(!s.contains("not an address", None));
    assert!(!s.contains(&"x".repeat(1000), None));
    // Non-ASCII addresses are found through the allocating path.
    s.add(vec![entry("Ünï@Éx.org", Reason::Bounce, 1)]).unwrap();
    assert!(s.contains("ünï@éx.ORG", None));
    assert_eq!("complaint".parse::<Reason>().unwrap(), Reason::Complaint);
    assert_eq!(Reason::Bounce.as_str(), "BOUNCE");
    assert!("spam".parse::<Reason>().is_err());
}

#[test]
fn list_filters() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path());
    s.add(vec![
        entry("a@x.org", Reason::Bounce, 10),
        entry("b@x.org", Reason::Complaint, 20),
        entry("c@x.org", Reason::Bounce, 30),
    ])
    .unwrap();
    s.compact().unwrap();
    s.add(vec![entry("d@x.org", Reason::Bounce, 40)]).unwrap();
    s.remove(&["a@x.org"]).unwrap();
    let collect = |f: ListFilter| {
        let mut v = Vec::new();
        s.list(&f, |e| v.push(e.email.clone())).unwrap();
        v.sort();
        v
    };
    assert_eq!(
        collect(ListFilter::default()),
        ["b@x.org", "c@x.org", "d@x.org"]
    );
    let bounces = ListFilter {
        reason: Some(Reason::Bounce),
        ..Default::default()
    };
    assert_eq!(collect(bounces), ["c@x.org", "d@x.org"]);
    let window = ListFilter {
        since_ms: Some(20),
        until_ms: Some(30),
        ..Default::default()
    };
    assert_eq!(collect(window), ["b@x.org", "c@x.org"]);
}

#[test]
fn import_reports_bad_rows_and_keeps_the_rest() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path());
    let csv = "Email,Reason,Last_Update_Time,Message_Id,Feedback_Id,Topic\n\
               a@x.org,bounce,2024-01-02T03:04:05Z,m1,f1,\n\
               not-an-address,BOUNCE,,,,\n\
               b@x.org,spam,,,,\n\
               c@x.org,,1000,,,news\n\
               d@x.org,COMPLAINT,yesterday,,,\n\
               \"e@x.org\"\n\
               a@x.org,complaint,,,,\n";
    let r = s.import_csv(csv.as_bytes(), Reason::Bounce).unwrap();
    assert_eq!((r.added, r.updated, r.rejected_count), (3, 1, 3));
    let lines: Vec<u64> = r.rejected.iter().map(|x| x.0).collect();
    assert_eq!(lines, [3, 4, 6]);
    assert!(
        r.rejected[0].1.contains("not-an-address"),
        "{:?}",
        r.rejected
    );
    assert!(r.rejected[2].1.contains("yesterday"), "{:?}", r.rejected);
    let a = s.get("a@x.org").unwrap().unwrap();
    assert_eq!((a.reason, a.at_ms), (Reason::Complaint, NOW));
    let c = s.get_scoped("c@x.org", Some("news")).unwrap().unwrap();
    assert_eq!((c.reason, c.at_ms), (Reason::Bounce, 1000));
    assert_eq!(s.get("e@x.org").unwrap().unwrap().at_ms, NOW);
    // Without a header, columns come in the documented order.
    let r = s
        .import_csv("f@x.org,COMPLAINT,5\n".as_bytes(), Reason::Bounce)
        .unwrap();
    assert_eq!(r.added, 1);
    assert_eq!(s.get("f@x.org").unwrap().unwrap().reason, Reason::Complaint);
    // Non-UTF-8 bytes are a rejected row, not a failed import.
    let r = s
        .import_csv(&b"g@x.org\n\xff\xfe@x.org\n"[..], Reason::Bounce)
        .unwrap();
    assert_eq!((r.added, r.rejected_count), (1, 1));
}

#[test]
fn rejected_rows_are_capped_but_counted() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path());
    let csv: String = (0..2500).map(|i| format!("bad{i}\n")).collect();
    let r = s.import_csv(csv.as_bytes(), Reason::Bounce).unwrap();
    assert_eq!(r.rejected_count, 2500);
    assert_eq!(r.rejected.len(), csv::REJECTED_LISTED);
}

#[test]
fn export_import_round_trip() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path());
    let mut e = entry("x,y@x.org", Reason::Complaint, 1_712_345_678_901);
    e.message_id = Some("m \"quoted\"".into());
    e.topic = Some("news".into());
    s.add(vec![
        e,
        entry("plain@x.org", Reason::Bounce, 0),
        entry("far@x.org", Reason::Bounce, u64::MAX),
    ])
    .unwrap();
    let mut out = Vec::new();
    assert_eq!(s.export_csv(&mut out).unwrap(), 3);
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(text.starts_with("email,reason,last_update_time,message_id,feedback_id,topic\n"));
    assert!(text.contains("2024-04-05T19:34:38.901Z"), "{text}");
    let d2 = tempfile::tempdir().unwrap();
    let s2 = open(d2.path());
    let r = s2.import_csv(&out[..], Reason::Bounce).unwrap();
    assert_eq!((r.added, r.rejected_count), (3, 0), "{:?}", r.rejected);
    let mut a = Vec::new();
    s.list(&ListFilter::default(), |e| a.push(e.clone()))
        .unwrap();
    let mut b = Vec::new();
    s2.list(&ListFilter::default(), |e| b.push(e.clone()))
        .unwrap();
    a.sort_by(|x, y| x.email.cmp(&y.email));
    b.sort_by(|x, y| x.email.cmp(&y.email));
    assert_eq!(a, b);
}

#[test]
fn import_100k() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path());
    let mut csv = String::from("email\n");
    for i in 0..100_000 {
        csv.push_str(&format!("user{i}@d{}.example\n", i % 97));
    }
    let r = s.import_csv(csv.as_bytes(), Reason::Bounce).unwrap();
    assert_eq!((r.added, r.updated, r.rejected_count), (100_000, 0, 0));
    assert_eq!(s.len(), 100_000);
    for i in (0..100_000).step_by(997) {
        assert!(s.contains(&format!("USER{i}@d{}.example", i % 97), None));
        assert!(!s.contains(&format!("user{i}@d{}.example", (i + 1) % 97), None));
    }
    drop(s);
    let s = open(d.path());
    assert_eq!(s.len(), 100_000);
    assert!(s.contains("user99999@d89.example", None));
}

#[test]
fn contains_many_answers_as_contains_does() {
    let dir = tempfile::tempdir().unwrap();
    let list = SuppressionList::open(dir.path()).unwrap();
    let listed: Vec<Entry> = (0..5000)
        .filter(|i| i % 3 == 0)
        .map(|i| Entry::new(format!("u{i}@d{}.test", i % 7), Reason::Bounce, 1))
        .collect();
    list.add(listed).unwrap();
    list.compact().unwrap();
    // changes after the compaction sit in the overlay
    list.remove(&["u3@d3.test"]).unwrap();
    list.add(vec![Entry::new("u1@d1.test", Reason::Complaint, 2)])
        .unwrap();
    let mut topical = Entry::new("u2@d2.test", Reason::Unsubscribe, 3);
    topical.topic = Some("weekly".into());
    list.add(vec![topical]).unwrap();
    let emails: Vec<String> = (0..5000)
        .map(|i| format!("U{i}@D{}.test", i % 7))
        .chain(["not an address".to_string(), String::new()])
        .collect();
    for topic in [None, Some("weekly"), Some("daily")] {
        let want: Vec<usize> = emails
            .iter()
            .enumerate()
            .filter(|(_, e)| list.contains(e, topic))
            .map(|(i, _)| i)
            .collect();
        let got = list.contains_many(emails.iter().map(String::as_str), topic);
        assert_eq!(got, want, "topic {topic:?}");
        assert!(got.contains(&1) && !got.contains(&3));
        assert_eq!(got.contains(&2), topic == Some("weekly"));
    }
}
