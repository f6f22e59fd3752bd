//! Tests of the feedback tokens: round trips, rotation, forgery.

use super::*;

fn keys(list: &[(&str, &str)]) -> Keys {
    let v: Vec<(String, Vec<u8>)> = list
        .iter()
        .map(|(k, s)| (k.to_string(), s.as_bytes().to_vec()))
        .collect();
    Keys::new(&v).unwrap()
}

fn sample() -> MailRef {
    MailRef {
        campaign: 7,
        recipient: RecipientId::new(3, 41),
        shared: false,
        hash: addr_hash("Bob@Example.com"),
    }
}

#[test]
fn an_address_token_round_trips_and_fits_a_local_part() {
    let k = keys(&[("k1", "0123456789abcdef0123")]);
    let local = k.local_part(Purpose::Bounce, &sample());
    assert!(local.len() <= 64, "{local} is {} bytes", local.len());
    assert!(local.starts_with("b-k1-"));
    assert_eq!(k.verify_local_part(Purpose::Bounce, &local), Some(sample()));
    // case folding on the way back does not matter
    assert_eq!(
        k.verify_local_part(Purpose::Bounce, &local.to_ascii_uppercase()),
        Some(sample())
    );
    // a bounce token is no unsubscribe token
    assert_eq!(k.verify_local_part(Purpose::Unsubscribe, &local), None);
    assert!(sample().matches("bob@example.com"));
    assert!(!sample().matches("eve@example.com"));
}

#[test]
fn shared_tokens_bind_the_domain() {
    let r = MailRef {
        shared: true,
        hash: addr_hash("example.com"),
        ..sample()
    };
    assert!(r.matches("anyone@EXAMPLE.com"));
    assert!(!r.matches("anyone@example.org"));
}

#[test]
fn altered_or_foreign_tokens_do_not_verify() {
    let k = keys(&[("k1", "0123456789abcdef0123")]);
    let other = keys(&[("k1", "another secret of enough bytes")]);
    let local = k.local_part(Purpose::Bounce, &sample());
    assert_eq!(other.verify_local_part(Purpose::Bounce, &local), None);
    // every single-character change is caught
    let symbols = "abcdefghijklmnopqrstuvwxyz234567";
    for i in 5..local.len() {
        for c in symbols.chars().step_by(5) {
            let mut s = local.clone();
            if s.as_bytes()[i] as char == c {
                continue;
            }
            s.replace_range(i..=i, &c.to_string());
            assert_eq!(k.verify_local_part(Purpose::Bounce, &s), None, "{s}");
        }
    }
    for bad in [
        "",
        "b",
        "b-",
        "b-k1-",
        "b-k9-aaaa",
        "x-k1-abc",
        &"b-k1-".repeat(20),
    ] {
        assert_eq!(k.verify_local_part(Purpose::Bounce, bad), None);
    }
}

#[test]
fn old_keys_verify_after_rotation_and_the_first_signs() {
    let old = keys(&[("k1", "0123456789abcdef0123")]);
    let both = keys(&[
        ("k2", "a newer secret, long enough"),
        ("k1", "0123456789abcdef0123"),
    ]);
    let local = old.local_part(Purpose::Bounce, &sample());
    assert_eq!(
        both.verify_local_part(Purpose::Bounce, &local),
        Some(sample())
    );
    assert!(
        both.local_part(Purpose::Bounce, &sample())
            .starts_with("b-k2-")
    );
    let newer = both.local_part(Purpose::Bounce, &sample());
    assert_eq!(old.verify_local_part(Purpose::Bounce, &newer), None);
}

#[test]
fn tokens_of_another_spool_do_not_verify() {
    let a = keys(&[("k1", "0123456789abcdef0123")]).scoped(1);
    let b = keys(&[("k1", "0123456789abcdef0123")]).scoped(2);
    let local = a.local_part(Purpose::Bounce, &sample());
    assert_eq!(a.verify_local_part(Purpose::Bounce, &local), Some(sample()));
    assert_eq!(b.verify_local_part(Purpose::Bounce, &local), None);
    let r = UnsubRef {
        campaign: 1,
        recipient: RecipientId::new(1, 1),
        email: "a@b.test".into(),
        topic: None,
    };
    assert!(b.verify_url_token(&a.url_token(&r)).is_none());
}

#[test]
fn url_tokens_carry_address_and_topic() {
    let k = keys(&[("k1", "0123456789abcdef0123")]);
    let r = UnsubRef {
        campaign: 9,
        recipient: RecipientId::new(1, 2),
        email: "ann@example.com".into(),
        topic: Some("weekly".into()),
    };
    let t = k.url_token(&r);
    assert!(
        t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    );
    assert_eq!(k.verify_url_token(&t), Some(r.clone()));
    let none = UnsubRef { topic: None, ..r };
    assert_eq!(k.verify_url_token(&k.url_token(&none)), Some(none));
    let mut forged = t.clone();
    forged.replace_range(4..5, if &t[4..5] == "A" { "B" } else { "A" });
    assert_eq!(k.verify_url_token(&forged), None);
    for bad in ["", "k1", "k1..", "k1.e30.AAAA", "zz.e30.AAAA", "k1.%%.%%"] {
        assert_eq!(k.verify_url_token(bad), None);
    }
}

#[test]
fn keys_are_checked() {
    let s = b"0123456789abcdef".to_vec();
    assert!(Keys::new(&[]).is_err());
    assert!(Keys::new(&[("K1".into(), s.clone())]).is_err());
    assert!(Keys::new(&[("toolongkey".into(), s.clone())]).is_err());
    assert!(Keys::new(&[("k1".into(), b"short".to_vec())]).is_err());
    assert!(Keys::new(&[("k1".into(), s.clone()), ("k1".into(), s)]).is_err());
}
