//! Unit tests of the event model: SES shapes, the headers sent, the
//! identity fields and the fallbacks when no message was produced.

use super::*;
use crate::message::headers::SentHeaders;
use crate::outcome::Outcome;
use std::path::Path;
use volley_spool::RecipientId;

fn def() -> CampaignDef {
    CampaignDef {
        id: "spring".into(),
        from: "News <news@example.com>".into(),
        from_name: Some("News".into()),
        from_addr: "news@example.com".into(),
        reply_to: None,
        subject: "Hi".into(),
        html: None,
        text: Some("x".into()),
        list_unsubscribe: None,
        tags: [("kind".to_string(), "promo".to_string())].into(),
        columns: vec![],
        personalized: true,
        to: None,
        configuration_set: None,
        message: None,
        list_management: None,
        pool: None,
    }
}

fn sender(d: &CampaignDef) -> Arc<Sender> {
    Arc::new(Sender::new(
        d,
        "arn:aws:ses:us-east-1:000000000000:identity/example.com",
        "000000000000",
    ))
}

fn context<'a>(d: &'a CampaignDef, s: &'a Arc<Sender>) -> Context<'a> {
    Context {
        campaign: d,
        accepted_ms: 1_000,
        email: "r@x.test",
        message_id: "abc-000000",
        reporting_mta: "mta.test",
        sender: s,
    }
}

#[test]
fn bounce_event_shape() {
    let d = def();
    let s = sender(&d);
    let c = context(&d, &s);
    let o = Outcome::Bounced {
        status: "5.1.1".into(),
        diagnostic: "smtp; 550 5.1.1 unknown".into(),
        bounce_type: "Permanent",
        bounce_subtype: "NoEmail",
    };
    let e = Entry::outcome(
        Kind::Bounced,
        RecipientId(1),
        1,
        2_000,
        0,
        Detail::of(&o, "Hi r", None, None).encode(),
    );
    let evs = events(&c, &e);
    assert_eq!(evs.len(), 2);
    let v = serde_json::to_value(&evs[1]).unwrap();
    assert_eq!(v["eventType"], "Bounce");
    assert_eq!(v["bounce"]["bounceType"], "Permanent");
    assert_eq!(v["bounce"]["bounceSubType"], "NoEmail");
    assert_eq!(v["bounce"]["bouncedRecipients"][0]["status"], "5.1.1");
    assert_eq!(
        v["bounce"]["bouncedRecipients"][0]["diagnosticCode"],
        "smtp; 550 5.1.1 unknown"
    );
    assert_eq!(v["mail"]["destination"][0], "r@x.test");
    assert_eq!(v["mail"]["commonHeaders"]["subject"], "Hi r");
    assert_eq!(v["mail"]["tags"]["kind"][0], "promo");
    assert_eq!(v["mail"]["timestamp"], "1970-01-01T00:00:01.000Z");
    let s = serde_json::to_value(&evs[0]).unwrap();
    assert_eq!(s["eventType"], "Send");
    assert_eq!(s["send"], serde_json::json!({}));
}

#[test]
fn mail_carries_the_headers_sent_and_the_identity() {
    let mut d = def();
    d.reply_to = Some("Help <help@example.com>".into());
    let s = sender(&d);
    let c = context(&d, &s);
    let sent = SentHeaders::capture(&[
        b"DKIM-Signature: v=1; a=ed25519-sha256; d=example.com;\r\n\tb=AbC=\r\n",
        b"From: \"News\" <news@example.com>\r\nTo: <r@x.test>\r\nReply-To: \"Help\" <help@example.com>\r\nSubject: Hi r\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\nMessage-ID: <abc-000000@example.com>\r\n\r\nbody\r\n",
    ]);
    let o = Outcome::Delivered {
        reply: "250 ok".into(),
    };
    let e = Entry::outcome(
        Kind::Delivered,
        RecipientId(1),
        1,
        2_000,
        0,
        Detail::of(&o, "Hi r", None, Some(&sent)).encode(),
    );
    let v = serde_json::to_value(&events(&c, &e)[1]).unwrap();
    let m = &v["mail"];
    let headers: Vec<(String, String)> = m["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["name"].as_str().unwrap().to_string(),
                h["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = sent
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    assert_eq!(headers, want);
    assert_eq!(headers[0].0, "DKIM-Signature");
    assert_eq!(
        headers[0].1,
        "v=1; a=ed25519-sha256; d=example.com;\tb=AbC="
    );
    assert_eq!(m["headersTruncated"], false);
    let common = &m["commonHeaders"];
    assert_eq!(common["date"], "Tue, 14 Nov 2023 22:13:20 +0000");
    assert_eq!(
        common["replyTo"],
        serde_json::json!(["Help <help@example.com>"])
    );
    assert_eq!(common["from"][0], "News <news@example.com>");
    assert_eq!(
        m["sourceArn"],
        "arn:aws:ses:us-east-1:000000000000:identity/example.com"
    );
    assert_eq!(m["sendingAccountId"], "000000000000");
}

#[test]
fn events_carry_the_configuration_set_as_ses_does() {
    let mut d = def();
    let reply = "250 ok".into();
    let detail = Detail::of(&Outcome::Delivered { reply }, "Hi", None, None).encode();
    let e = Entry::outcome(Kind::Delivered, RecipientId(1), 1, 2_000, 0, detail);
    let tags = |d: &CampaignDef| {
        let s = sender(d);
        let v = serde_json::to_value(&events(&context(d, &s), &e)[1]).unwrap();
        v["mail"]["tags"].clone()
    };
    assert!(tags(&d).get("ses:configuration-set").is_none());
    d.configuration_set = Some("main".into());
    assert_eq!(
        tags(&d)["ses:configuration-set"],
        serde_json::json!(["main"])
    );
    assert_eq!(tags(&d)["kind"], serde_json::json!(["promo"]));
}

#[test]
fn truncated_headers_are_flagged() {
    let d = def();
    let s = sender(&d);
    let c = context(&d, &s);
    let sent = SentHeaders::new("From: a@x.test".into(), true);
    let o = Outcome::Delivered {
        reply: "250 ok".into(),
    };
    let e = Entry::outcome(
        Kind::Delivered,
        RecipientId(1),
        2,
        2_000,
        0,
        Detail::of(&o, "s", None, Some(&sent)).encode(),
    );
    let v = serde_json::to_value(&events(&c, &e)[0]).unwrap();
    assert_eq!(v["mail"]["headersTruncated"], true);
}

#[test]
fn without_a_message_the_headers_it_would_have_had() {
    // a rendering failure: no message was built
    let d = def();
    let s = sender(&d);
    let c = context(&d, &s);
    let o = Outcome::RenderFailed {
        message: "Attribute 'x' is not present in the rendering data.".into(),
    };
    let e = Entry::outcome(
        Kind::Failed,
        RecipientId(1),
        1,
        1_700_000_000_000,
        0,
        Detail::of(&o, "Hi Ada", None, None).encode(),
    );
    let evs = events(&c, &e);
    assert_eq!(evs.len(), 1);
    let v = serde_json::to_value(&evs[0]).unwrap();
    let m = &v["mail"];
    assert_eq!(m["commonHeaders"]["subject"], "Hi Ada");
    assert_eq!(
        m["commonHeaders"]["date"],
        "Tue, 14 Nov 2023 22:13:20 +0000"
    );
    assert!(m["commonHeaders"].get("replyTo").is_none());
    let names: Vec<&str> = m["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["From", "To", "Subject", "Date", "Message-ID"]);
}

#[test]
fn identity_comes_from_the_config_with_well_formed_defaults() {
    let d = def();
    let parse = |t: &str| crate::config::Config::parse(t, Path::new("c.toml"), Path::new("/"));
    let c = parse("").unwrap();
    let id = Identity::from(&c.events);
    assert_eq!(id.account_id, "000000000000");
    assert_eq!(
        id.source_arn(&d),
        "arn:aws:ses:us-east-1:000000000000:identity/example.com"
    );
    let c = parse(
        "[events]\naccount_id = \"123456789012\"\nidentity_arn = \"arn:aws:ses:eu-west-1:{account_id}:identity/{address}\"\n",
    )
    .unwrap();
    assert_eq!(
        Identity::from(&c.events).source_arn(&d),
        "arn:aws:ses:eu-west-1:123456789012:identity/news@example.com"
    );
    let bad = parse("[events]\naccount_id = \"12ab\"\n").unwrap_err();
    assert!(bad.to_string().contains("12 digits"), "{bad}");
    let bad = parse("[events]\nidentity_arn = \"ses:identity\"\n").unwrap_err();
    assert!(bad.to_string().contains("must be an ARN"), "{bad}");
}

#[test]
fn entries_of_earlier_versions_write_the_same_events() {
    // their detail carries the headers sent as text: split and escaped by
    // the pump, once for a run of entries with the same ones
    let d = def();
    let s = sender(&d);
    let c = context(&d, &s);
    let capture = |to: &str| {
        let head = format!(
            "From: \"News\" <news@example.com>\r\nTo: <{to}>\r\nSubject: Hi \"r\"\\\r\n\tnext\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\n\r\nbody\r\n"
        );
        SentHeaders::capture(&[b"DKIM-Signature: v=1; b=AbC=\r\n", head.as_bytes()])
    };
    let (a, b) = (capture("a@x.test"), capture("b@x.test"));
    let delivered = Outcome::Delivered {
        reply: "250 ok".into(),
    };
    // a shared message's recipients, another message, no message, the first again
    let details = [Some(&a), Some(&a), Some(&b), None, Some(&b), Some(&a)];
    let entry = |i: usize, detail: Vec<u8>| {
        Entry::outcome(Kind::Delivered, RecipientId(i as u64), 1, 2_000, 0, detail)
    };
    let now: Vec<Entry> = details
        .iter()
        .enumerate()
        .map(|(i, h)| entry(i, Detail::of(&delivered, "Hi r", None, *h).encode()))
        .collect();
    let earlier: Vec<Entry> = details
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let mut d = Detail::of(&delivered, "Hi r", None, None);
            if let Some(h) = h {
                d.headers.clone_from(&h.text);
            }
            entry(i, d.encode())
        })
        .collect();
    assert!(now[0].detail.windows(6).any(|w| w == b"\"hl\":["));
    assert!(!earlier[0].detail.windows(6).any(|w| w == b"\"hl\":["));
    let json = |evs: Vec<Event>| -> Vec<String> {
        evs.iter()
            .map(|e| serde_json::to_string(e).unwrap())
            .collect()
    };
    let mut cache = HeadersCache::default();
    let cached: Vec<String> = earlier
        .iter()
        .flat_map(|e| json(events_with(&c, e, &mut cache)))
        .collect();
    let fresh: Vec<String> = now.iter().flat_map(|e| json(events(&c, e))).collect();
    assert_eq!(cached.len(), 12);
    assert_eq!(cached, fresh);
    // entries with the same detail bytes, decoded once
    assert_eq!(now[0].detail, now[1].detail);
    let mut cache = HeadersCache::default();
    let cached_now: Vec<String> = now
        .iter()
        .flat_map(|e| json(events_with(&c, e, &mut cache)))
        .collect();
    assert_eq!(cached_now, fresh);
    assert!(cached[4].contains("<b@x.test>") && cached[2].contains("<a@x.test>"));
    let v: serde_json::Value = serde_json::from_str(&cached[0]).unwrap();
    assert_eq!(v["mail"]["headers"][3]["value"], "Hi \"r\"\\\tnext");
    assert_eq!(
        v["mail"]["commonHeaders"]["date"],
        "Tue, 14 Nov 2023 22:13:20 +0000"
    );
}

/// The events of every kind of outcome, first attempts and later ones,
/// with the headers sent and without (for the JSON writer's tests).
/// Their campaign has a Reply-To, and texts that JSON escapes.
pub(crate) fn sample_events() -> Vec<Event> {
    let mut d = def();
    d.reply_to = Some("\"Desk\\\" <desk@example.com>".into());
    d.tags.insert("q\"k".into(), "v\u{1}".into());
    let s = sender(&d);
    let c = context(&d, &s);
    let sent = SentHeaders::capture(&[
        b"DKIM-Signature: v=1; a=ed25519-sha256;\r\n\tb=AbC=\r\n",
        b"From: \"News\" <news@example.com>\r\nTo: <r@x.test>\r\nSubject: Hi \"r\"\\\r\n\tnext\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\n\r\nbody\r\n",
    ]);
    let outcomes = [
        (
            Kind::Delivered,
            Outcome::Delivered {
                reply: "250 2.0.0 \"queued\" as \\x".into(),
            },
        ),
        (
            Kind::Bounced,
            Outcome::Bounced {
                status: "5.1.1".into(),
                diagnostic: "smtp; 550 5.1.1 unknown".into(),
                bounce_type: "Permanent",
                bounce_subtype: "NoEmail",
            },
        ),
        (
            Kind::Deferred,
            Outcome::Deferred {
                status: "4.2.0".into(),
                diagnostic: "smtp; 451 later".into(),
                delay_type: "TransientCommunicationFailure",
            },
        ),
        (
            Kind::Failed,
            Outcome::RenderFailed {
                message: "no such variable".into(),
            },
        ),
    ];
    let mut out = Vec::new();
    for attempts in [1, 2] {
        for (kind, o) in &outcomes {
            for headers in [Some(&sent), None] {
                let detail = Detail::of(o, "Hi \"r\"\t", Some(9_000), headers).encode();
                let e = Entry::outcome(*kind, RecipientId(1), attempts, 2_000, 0, detail);
                out.extend(events(&c, &e));
            }
        }
    }
    out
}

#[test]
fn event_types_name_the_events_an_entry_stands_for() {
    let d = def();
    let s = sender(&d);
    let c = context(&d, &s);
    for kind in [Kind::Delivered, Kind::Bounced, Kind::Deferred, Kind::Failed] {
        for attempts in [1, 2, 3] {
            let e = Entry::outcome(kind, RecipientId(1), attempts, 2_000, 0, Vec::new());
            let built: Vec<&str> = events(&c, &e).iter().map(|e| e.event_type).collect();
            let named: Vec<&str> = event_types(&e).collect();
            assert_eq!(built, named, "{kind:?} attempt {attempts}");
        }
    }
    let mark = Entry::outcome(
        Kind::CampaignSealed,
        RecipientId(1),
        0,
        2_000,
        0,
        Vec::new(),
    );
    assert_eq!(event_types(&mark).count(), 0);
    assert!(events(&c, &mark).is_empty());
}
