//! Tests of the session's pure parts: AUTH PLAIN/LOGIN decoding (cancel,
//! bad base64, a foreign authorization id), refusal codes, message ids.

use super::*;

#[test]
fn auth_plain_and_login_decoding() {
    let b = |s: &str| B64.encode(s);
    match decode(b("\0app\0secret").as_bytes()) {
        Decoded::Ok(v) => assert_eq!(plain(&v), Some(("app".into(), "secret".into()))),
        _ => panic!("decodes"),
    }
    // an authorization id other than the user is refused
    match decode(b("other\0app\0secret").as_bytes()) {
        Decoded::Ok(v) => assert_eq!(plain(&v), None),
        _ => panic!("decodes"),
    }
    match decode(b("app\0app\0secret").as_bytes()) {
        Decoded::Ok(v) => assert!(plain(&v).is_some()),
        _ => panic!("decodes"),
    }
    assert!(matches!(decode(b"*\r\n"), Decoded::Cancel));
    assert!(matches!(decode(b"not base64!\r\n"), Decoded::Bad));
    assert!(matches!(decode(b"=\r\n"), Decoded::Ok(v) if v.is_empty()));
    match decode(b("app\0secret").as_bytes()) {
        Decoded::Ok(v) => assert_eq!(plain(&v), None, "two parts is not PLAIN"),
        _ => panic!("decodes"),
    }
}

#[test]
fn refusals_carry_enhanced_codes() {
    assert!(refusal(&Rejected::TooLarge { size: 2, limit: 1 }).starts_with("552 5.3.4"));
    assert!(refusal(&Rejected::UnknownSet("x".into())).starts_with("554 "));
    assert!(refusal(&Rejected::NoFrom).starts_with("554 5.6.0"));
    assert!(refusal(&Rejected::TooManyRecipients { count: 3, limit: 2 }).starts_with("452 4.5.3"));
    let id = unique_id("smtp");
    assert!(id.starts_with("smtp:") && id.len() == 5 + 24, "{id}");
    assert_ne!(id, unique_id("smtp"));
}
