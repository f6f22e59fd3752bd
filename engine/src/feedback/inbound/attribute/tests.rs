//! Tests of report attribution: which tokens count, which recipients a
//! report may speak for, and what is ignored.

use super::*;
use crate::feedback::report::{BounceReport, BouncedRecipient, ComplaintReport};
use crate::feedback::token::addr_hash;

const DOMAIN: &str = "bounces.example.net";

fn keys() -> Keys {
    Keys::new(&[("k1".into(), b"0123456789abcdef0123".to_vec())]).unwrap()
}

fn single(email: &str) -> MailRef {
    MailRef {
        campaign: 4,
        recipient: RecipientId::new(2, 9),
        shared: false,
        hash: addr_hash(email),
    }
}

fn address(k: &Keys, p: Purpose, r: &MailRef) -> String {
    format!("{}@{DOMAIN}", k.local_part(p, r))
}

fn bounce(rcpts: &[(&str, &str)]) -> Report {
    Report::Bounce(BounceReport {
        format: "rfc3464",
        reporting_mta: Some("dns; mx.example.org".into()),
        arrival_date: None,
        recipients: rcpts
            .iter()
            .map(|(email, action)| BouncedRecipient {
                email: email.to_string(),
                original_recipient: None,
                action: action.to_string(),
                status: Some("5.1.1".into()),
                diagnostic_code: Some("smtp; 550 5.1.1 no such user".into()),
                remote_mta: None,
                remote_mta_ip: Some("192.0.2.7".into()),
                last_attempt_date: None,
                bounce_type: "Permanent",
                bounce_sub_type: "NoEmail",
            })
            .collect(),
        original: Original::default(),
    })
}

fn run(
    k: &Keys,
    mail_from: &str,
    rcpts: &[String],
    from: Option<&str>,
    report: &Report,
    record: Option<(u32, &str)>,
) -> Verdict {
    let rec = record.map(|(c, e)| (c, e.to_string()));
    let lookup = move |_id: RecipientId| rec.clone();
    let i = Inputs {
        keys: k,
        bounce_domain: DOMAIN,
        mail_from,
        rcpts,
        from,
        report_id: "r1",
        record: &lookup,
    };
    attribute(&i, report)
}

fn emails(v: &Verdict) -> Vec<String> {
    match v {
        Verdict::Found(f) => f.iter().map(|f| f.email.clone()).collect(),
        other => panic!("expected findings, got {other:?}"),
    }
}

#[test]
fn a_bounce_to_a_return_path_names_its_recipient() {
    let k = keys();
    let to = vec![address(&k, Purpose::Bounce, &single("ann@example.org"))];
    let v = run(
        &k,
        "",
        &to,
        None,
        &bounce(&[("Ann@Example.org", "failed")]),
        None,
    );
    assert_eq!(emails(&v), ["ann@example.org"]);
    let Verdict::Found(f) = v else { unreachable!() };
    assert_eq!(f[0].campaign, 4);
    assert_eq!(f[0].feedback.bounce_sub_type.as_deref(), Some("NoEmail"));
    assert_eq!(f[0].feedback.remote_mta_ip.as_deref(), Some("192.0.2.7"));
    assert_eq!(f[0].feedback.feedback_id, "r1-000");
}

#[test]
fn a_bounce_naming_someone_else_changes_nothing() {
    let k = keys();
    let to = vec![address(&k, Purpose::Bounce, &single("ann@example.org"))];
    let v = run(
        &k,
        "",
        &to,
        None,
        &bounce(&[("eve@example.org", "failed"), ("x@y.org", "failed")]),
        None,
    );
    assert!(matches!(v, Verdict::Unattributed(_)), "{v:?}");
    // with the record still there, a single recipient report (a forward)
    // is the token's recipient
    let v = run(
        &k,
        "",
        &to,
        None,
        &bounce(&[("alias@other.org", "failed")]),
        Some((4, "ann@example.org")),
    );
    assert_eq!(emails(&v), ["ann@example.org"]);
    // or the quoted original's To, when it is the token's recipient
    let Report::Bounce(mut quoted) = bounce(&[("alias@other.org", "failed")]) else {
        unreachable!()
    };
    quoted
        .original
        .headers
        .push(("To".into(), "Ann <ANN@example.org>".into()));
    let v = run(&k, "", &to, None, &Report::Bounce(quoted), None);
    assert_eq!(emails(&v), ["ann@example.org"]);
    // a record of another campaign does not count
    let v = run(
        &k,
        "",
        &to,
        None,
        &bounce(&[("alias@other.org", "failed")]),
        Some((5, "ann@example.org")),
    );
    assert!(matches!(v, Verdict::Unattributed(_)), "{v:?}");
}

#[test]
fn a_shared_token_speaks_for_nobody() {
    // any recipient of a shared message sees its token: it could name
    // everyone else at the domain
    let k = keys();
    let r = MailRef {
        shared: true,
        hash: addr_hash("example.org"),
        ..single("x")
    };
    let to = vec![address(&k, Purpose::Bounce, &r)];
    let report = bounce(&[("a@example.org", "failed"), ("b@example.org", "failed")]);
    let v = run(&k, "", &to, None, &report, Some((4, "a@example.org")));
    assert!(matches!(v, Verdict::Unattributed(_)), "{v:?}");
}

#[test]
fn a_quoted_token_after_non_ascii_text_is_found_without_panicking() {
    let k = keys();
    let rp = address(&k, Purpose::Bounce, &single("bob@example.org"));
    let mut o = Original::default();
    o.headers
        .push(("X-Odd".into(), format!("é@{DOMAIN} ü{rp}")));
    o.headers.push(("To".into(), "bob@example.org".into()));
    let report = Report::Complaint(ComplaintReport {
        feedback_type: "abuse".into(),
        user_agent: None,
        arrival_date: None,
        source_ip: None,
        original_mail_from: None,
        original_rcpt_to: Vec::new(),
        reported_domain: Vec::new(),
        original: o,
    });
    let v = run(&k, "", &["fbl@fbl.example.net".into()], None, &report, None);
    assert_eq!(emails(&v), ["bob@example.org"]);
}

#[test]
fn forged_tokens_and_notices_change_nothing() {
    let k = keys();
    let mut rp = address(&k, Purpose::Bounce, &single("ann@example.org"));
    rp.replace_range(8..9, if &rp[8..9] == "a" { "b" } else { "a" });
    let v = run(
        &k,
        "",
        &[rp],
        None,
        &bounce(&[("ann@example.org", "failed")]),
        None,
    );
    assert_eq!(v, Verdict::Forged);
    let to = vec![address(&k, Purpose::Bounce, &single("ann@example.org"))];
    let v = run(
        &k,
        "",
        &to,
        None,
        &bounce(&[("ann@example.org", "delayed")]),
        None,
    );
    assert!(matches!(v, Verdict::Ignored(_)), "{v:?}");
    let auto = Report::AutoReply {
        reason: "Auto-Submitted".into(),
    };
    assert!(matches!(
        run(&k, "ann@example.org", &to, None, &auto, None),
        Verdict::Ignored(_)
    ));
    // no token at all: mail to a feedback address about someone else's mail
    let v = run(
        &k,
        "",
        &["fbl@fbl.example.net".into()],
        None,
        &bounce(&[("ann@example.org", "failed")]),
        None,
    );
    assert!(matches!(v, Verdict::Ignored(_)), "{v:?}");
}

#[test]
fn an_unrecognized_message_is_a_bounce_only_from_the_null_sender() {
    let k = keys();
    let to = vec![address(&k, Purpose::Bounce, &single("ann@example.org"))];
    let junk = Report::Unrecognized {
        reason: "no report".into(),
    };
    let v = run(&k, "", &to, None, &junk, Some((4, "ann@example.org")));
    let Verdict::Found(f) = v else {
        panic!("{v:?}")
    };
    assert_eq!(f[0].feedback.bounce_type.as_deref(), Some("Undetermined"));
    let v = run(
        &k,
        "someone@example.org",
        &to,
        None,
        &junk,
        Some((4, "ann@example.org")),
    );
    assert!(matches!(v, Verdict::Ignored(_)), "{v:?}");
}

#[test]
fn a_complaint_finds_the_token_in_the_quoted_original() {
    let k = keys();
    let rp = address(&k, Purpose::Bounce, &single("bob@example.org"));
    let report = Report::Complaint(ComplaintReport {
        feedback_type: "abuse".into(),
        user_agent: Some("FBL/1".into()),
        arrival_date: None,
        source_ip: None,
        original_mail_from: None,
        original_rcpt_to: Vec::new(),
        reported_domain: Vec::new(),
        original: Original {
            headers: vec![
                ("Return-Path".into(), format!("<{rp}>")),
                ("To".into(), "Bob <Bob@example.org>".into()),
            ],
            ..Original::default()
        },
    });
    let v = run(&k, "", &["fbl@fbl.example.net".into()], None, &report, None);
    assert_eq!(emails(&v), ["bob@example.org"]);
    let Verdict::Found(f) = v else { unreachable!() };
    assert_eq!(f[0].feedback.kind, FeedbackKind::Complaint);
    assert_eq!(f[0].feedback.feedback_type.as_deref(), Some("abuse"));
}

#[test]
fn mail_to_an_unsubscribe_address_must_come_from_its_recipient() {
    let k = keys();
    let to = vec![address(
        &k,
        Purpose::Unsubscribe,
        &single("dee@example.org"),
    )];
    let junk = Report::Unrecognized {
        reason: "plain mail".into(),
    };
    let v = run(
        &k,
        "dee@example.org",
        &to,
        Some("dee@example.org"),
        &junk,
        None,
    );
    let Verdict::Found(f) = v else {
        panic!("{v:?}")
    };
    assert_eq!(f[0].feedback.kind, FeedbackKind::Subscription);
    let v = run(
        &k,
        "eve@example.org",
        &to,
        Some("eve@example.org"),
        &junk,
        None,
    );
    assert!(matches!(v, Verdict::Unattributed(_)), "{v:?}");
}
