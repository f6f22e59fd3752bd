//! Signatures botocore made (its `SigV4Auth`, 2026-12-01) for the same
//! requests: this module must agree with them byte for byte.

use super::*;

const KEY: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const DATE: &str = "20261201T210347Z";

fn secret_of(k: &str) -> Option<(String, String)> {
    (k == KEY).then(|| (SECRET.to_string(), "us-east-1".to_string()))
}

/// (method, host, path, query, body, content-type, service, botocore's signature)
type Vector = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static str,
    &'static str,
);

const VECTORS: &[Vector] = &[
    (
        "GET",
        "example.amazonaws.com",
        "/",
        "",
        "",
        None,
        "service",
        "c23dedeab96212f0bd46f098fe29c54840bb296f56a28313c1593fd5ef725df3",
    ),
    (
        "GET",
        "example.amazonaws.com",
        "/",
        "Param2=value2&Param1=value1",
        "",
        None,
        "service",
        "644303d4106dfd0baef6a8f8e2348b9eee9288d4f8906d6c2e694ee2bf89e3df",
    ),
    (
        "DELETE",
        "127.0.0.1:8787",
        "/v2/email/suppression/addresses/ada%2Bx%40example.org",
        "",
        "",
        None,
        "ses",
        "08754728106668f4d445862437ca82aaea54540627aea01a88c80a0df5a6acd7",
    ),
    (
        "GET",
        "127.0.0.1:8787",
        "/v2/email/suppression/addresses",
        "Reason=BOUNCE&PageSize=2&NextToken=a%2Fb%3D",
        "",
        None,
        "ses",
        "e2e7ac26e65e6af6c6ad128227d48593d955f825d01c4967d76e0f985929fb1a",
    ),
    (
        "POST",
        "127.0.0.1:8787",
        "/v2/email/outbound-emails",
        "",
        "{\"FromEmailAddress\":\"a@b.test\"}",
        Some("application/json"),
        "ses",
        "413133fe41e48cad2db1b9ddc39b92b0c9ef1cbdf397dee6e42423b1e2c91ea6",
    ),
];

#[test]
fn agrees_with_botocore() {
    let now = parse_amz_date(DATE).unwrap();
    for &(method, host, path, query, body, ctype, service, sig) in VECTORS {
        let mut signed = vec!["host", "x-amz-date"];
        let mut headers = vec![("Host", host), ("X-Amz-Date", DATE)];
        if let Some(c) = ctype {
            headers.push(("Content-Type", c));
            signed.insert(0, "content-type");
        }
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={KEY}/20261201/us-east-1/{service}/aws4_request, SignedHeaders={}, Signature={sig}",
            signed.join(";")
        );
        headers.push(("Authorization", &auth));
        let r = Request {
            method,
            raw_path: path,
            raw_query: query,
            headers: &headers,
            body: body.as_bytes(),
        };
        let v = verify(&r, service, now, 900, secret_of);
        assert!(v.is_ok(), "{method} {path}?{query}: {:?}", v.err());
        // and the client side makes the same header
        let unsigned: Vec<(&str, &str)> = headers[..headers.len() - 1].to_vec();
        let r2 = Request {
            headers: &unsigned,
            ..r
        };
        assert_eq!(sign(&r2, KEY, SECRET, "us-east-1", service, DATE), auth);
    }
}

#[test]
fn refusals_say_why() {
    let now = parse_amz_date(DATE).unwrap();
    let (method, host, path, query, body, _, _, sig) = VECTORS[2];
    let check = |auth: &str, date: &str, now: i64| {
        let headers = [
            ("Host", host),
            ("X-Amz-Date", date),
            ("Authorization", auth),
        ];
        let r = Request {
            method,
            raw_path: path,
            raw_query: query,
            headers: &headers,
            body: body.as_bytes(),
        };
        verify(&r, "ses", now, 900, secret_of).err()
    };
    let good = format!(
        "AWS4-HMAC-SHA256 Credential={KEY}/20261201/us-east-1/ses/aws4_request, SignedHeaders=host;x-amz-date, Signature={sig}"
    );
    assert_eq!(check(&good, DATE, now), None);
    // one bit of the signature changed
    let flipped = good.replace(&sig[..4], "0000");
    assert_eq!(check(&flipped, DATE, now), Some(SigError::Mismatch));
    // another key
    let other = good.replace(KEY, "AKIDOTHER");
    assert_eq!(
        check(&other, DATE, now),
        Some(SigError::UnknownKey("AKIDOTHER".into()))
    );
    // 20 minutes later
    assert!(matches!(
        check(&good, DATE, now + 1200),
        Some(SigError::Expired(_))
    ));
    // another region in the scope
    let region = good.replace("us-east-1", "eu-west-1");
    assert!(matches!(
        check(&region, DATE, now),
        Some(SigError::WrongScope(_))
    ));
    // garbage
    for bad in [
        "",
        "Basic abc",
        "AWS4-HMAC-SHA256 Credential=x",
        "AWS4-HMAC-SHA256 Credential=a/b/c/d/e, SignedHeaders=host, Signature=00",
    ] {
        assert!(
            matches!(check(bad, DATE, now), Some(SigError::Malformed(_))),
            "{bad:?}"
        );
    }
    let headers = [("Host", host)];
    let r = Request {
        method,
        raw_path: path,
        raw_query: query,
        headers: &headers,
        body: b"",
    };
    assert_eq!(
        verify(&r, "ses", now, 900, secret_of).err(),
        Some(SigError::Missing)
    );
}

#[test]
fn dates_round_trip() {
    for s in ["20261201T210347Z", "20000229T000000Z", "19700101T000000Z"] {
        assert_eq!(amz_date(parse_amz_date(s).unwrap()), s);
    }
    assert_eq!(parse_amz_date("19700101T000001Z"), Some(1));
    for bad in ["2026-12-01", "20261301T000000Z", "20261201T250000Z", "x"] {
        assert_eq!(parse_amz_date(bad), None, "{bad}");
    }
}
