//! AWS Signature Version 4 (`AWS4-HMAC-SHA256` in the `Authorization`
//! header), checked as AWS checks it: the canonical request (method, the
//! path URI-encoded once more as AWS does for every service but S3, the
//! query decoded, re-encoded and sorted, the signed headers with their
//! values trimmed and inner spaces collapsed, the body's SHA-256), the
//! string to sign with the credential scope, and the signing key derived
//! from the secret, date, region and service. [`sign`] makes the same
//! signature for clients (the bench). Pure: the caller gives the time.
//! Exposure: every input comes from the network; errors, never panics.

use aws_lc_rs::{digest, hmac};

/// The algorithm this module speaks.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Why a request's signature is not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigError {
    /// No `Authorization` header.
    Missing,
    /// An `Authorization` header this module cannot read.
    Malformed(String),
    /// The access key id is not configured.
    UnknownKey(String),
    /// The signature does not match.
    Mismatch,
    /// `X-Amz-Date` is too far from now (or missing).
    Expired(String),
    /// Signed for another region or service.
    WrongScope(String),
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization<'a> {
    pub access_key: &'a str,
    /// `YYYYMMDD`.
    pub date: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    /// Lower-case header names, in the order given.
    pub signed_headers: Vec<&'a str>,
    pub signature: &'a str,
}

/// Reads the `Authorization` header.
pub fn parse_authorization(v: &str) -> Result<Authorization<'_>, SigError> {
    let bad = |why: &str| SigError::Malformed(why.to_string());
    let rest = v
        .trim()
        .strip_prefix(ALGORITHM)
        .ok_or_else(|| bad("the Authorization header is not AWS4-HMAC-SHA256"))?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, val) = part.trim().split_once('=').unwrap_or((part.trim(), ""));
        match k {
            "Credential" => credential = Some(val),
            "SignedHeaders" => signed = Some(val),
            "Signature" => signature = Some(val),
            _ => {}
        }
    }
    let credential =
        credential.ok_or_else(|| bad("Authorization header requires a 'Credential' parameter"))?;
    let signed =
        signed.ok_or_else(|| bad("Authorization header requires a 'SignedHeaders' parameter"))?;
    let signature =
        signature.ok_or_else(|| bad("Authorization header requires a 'Signature' parameter"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key, date, region, service, "aws4_request"] = scope[..] else {
        return Err(bad(
            "Credential must be ACCESS_KEY/YYYYMMDD/REGION/SERVICE/aws4_request",
        ));
    };
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("the Credential's date is not YYYYMMDD"));
    }
    let signed_headers: Vec<&str> = signed.split(';').filter(|h| !h.is_empty()).collect();
    if signed_headers.is_empty() || !signed_headers.contains(&"host") {
        return Err(bad("SignedHeaders must include host"));
    }
    Ok(Authorization {
        access_key,
        date,
        region,
        service,
        signed_headers,
        signature,
    })
}

/// What the canonical request is made of.
pub struct Request<'a> {
    pub method: &'a str,
    /// The path as sent (percent-encoded), without the query.
    pub raw_path: &'a str,
    /// The query as sent, without `?`.
    pub raw_query: &'a str,
    /// Every header (any case); a name may repeat.
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// Percent-encodes every byte but the unreserved ones (and `/` when
/// `keep_slash`), upper-case hex, as AWS's `UriEncode`.
fn uri_encode(s: &[u8], keep_slash: bool, out: &mut String) {
    for &b in s {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
}

/// Decodes `%XX` (RFC 3986: `+` stays `+`).
pub fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: Option<&u8>| c.and_then(|&c| (c as char).to_digit(16));
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (hex(b.get(i + 1)), hex(b.get(i + 2)))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Removes `.` and `..` segments and repeated slashes (RFC 3986 §5.2.4).
fn normalize_path(p: &str) -> String {
    let mut segs: Vec<&str> = Vec::new();
    for s in p.split('/') {
        match s {
            "" | "." => {}
            ".." => {
                segs.pop();
            }
            s => segs.push(s),
        }
    }
    let mut out = format!("/{}", segs.join("/"));
    if p.ends_with('/') && out.len() > 1 {
        out.push('/');
    }
    out
}

fn canonical_query(raw: &str) -> String {
    let mut pairs: Vec<(String, String)> = raw
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let (mut ek, mut ev) = (String::new(), String::new());
            uri_encode(&percent_decode(k), false, &mut ek);
            uri_encode(&percent_decode(v), false, &mut ev);
            (ek, ev)
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn hex(b: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(b)
}

/// The hex SHA-256 of `b`.
pub fn sha256_hex(b: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, b).as_ref())
}

/// The canonical request (AWS's format, lines joined by `\n`).
pub fn canonical_request(r: &Request<'_>, signed_headers: &[&str]) -> String {
    let mut uri = String::with_capacity(r.raw_path.len() + 16);
    uri_encode(normalize_path(r.raw_path).as_bytes(), true, &mut uri);
    let mut headers = String::new();
    for name in signed_headers {
        let values: Vec<String> = r
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        headers.push_str(name);
        headers.push(':');
        headers.push_str(&values.join(","));
        headers.push('\n');
    }
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        r.method,
        uri,
        canonical_query(r.raw_query),
        headers,
        signed_headers.join(";"),
        sha256_hex(r.body)
    )
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> hmac::Tag {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
}

/// The hex signature of `canonical` for the given scope and time.
pub fn signature(
    secret: &str,
    amz_date: &str,
    date: &str,
    region: &str,
    service: &str,
    canonical: &str,
) -> String {
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let mut k = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    for part in [region, service, "aws4_request"] {
        k = hmac_sha256(k.as_ref(), part.as_bytes());
    }
    hex(hmac_sha256(k.as_ref(), to_sign.as_bytes()).as_ref())
}

/// `YYYYMMDDTHHMMSSZ` as seconds since the Unix epoch.
pub fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    // days from civil (Howard Hinnant's algorithm)
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + se)
}

/// Seconds since the epoch as `YYYYMMDDTHHMMSSZ`.
pub fn amz_date(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    // 2026-12-01T10:00:00Z → 20261201T100000Z
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .replace(['-', ':'], "")
}

/// What a verified request proves: its access key.
pub struct Verified<'a> {
    pub access_key: &'a str,
}

/// What can be checked before the body is read: the `Authorization`
/// header, its key, its scope and `X-Amz-Date` (a request failing these
/// is refused without reading its body).
pub fn precheck<'a>(
    headers: &[(&'a str, &'a str)],
    service: &str,
    now_s: i64,
    max_skew_s: i64,
    secret_of: impl Fn(&str) -> Option<(String, String)>,
) -> Result<(), SigError> {
    checked(headers, service, now_s, max_skew_s, secret_of).map(|_| ())
}

/// Checks a request's signature. `secret_of` gives an access key's secret
/// and region; `now_s` and `max_skew_s` bound `X-Amz-Date`.
pub fn verify<'a>(
    r: &Request<'a>,
    service: &str,
    now_s: i64,
    max_skew_s: i64,
    secret_of: impl Fn(&str) -> Option<(String, String)>,
) -> Result<Verified<'a>, SigError> {
    let (auth, secret, amz) = checked(r.headers, service, now_s, max_skew_s, secret_of)?;
    let canonical = canonical_request(r, &auth.signed_headers);
    let want = signature(
        &secret,
        amz,
        auth.date,
        auth.region,
        auth.service,
        &canonical,
    );
    match aws_lc_rs::constant_time::verify_slices_are_equal(
        want.as_bytes(),
        auth.signature.as_bytes(),
    ) {
        Ok(()) => Ok(Verified {
            access_key: auth.access_key,
        }),
        Err(_) => Err(SigError::Mismatch),
    }
}

/// Everything but the signature itself: the `Authorization` header, the
/// key (its secret), `X-Amz-Date` and the scope.
fn checked<'a>(
    headers: &[(&'a str, &'a str)],
    service: &str,
    now_s: i64,
    max_skew_s: i64,
    secret_of: impl Fn(&str) -> Option<(String, String)>,
) -> Result<(Authorization<'a>, String, &'a str), SigError> {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    };
    let auth = parse_authorization(header("authorization").ok_or(SigError::Missing)?)?;
    let Some((secret, region)) = secret_of(auth.access_key) else {
        return Err(SigError::UnknownKey(auth.access_key.to_string()));
    };
    let amz = header("x-amz-date")
        .ok_or_else(|| SigError::Expired("the request has no X-Amz-Date header".into()))?;
    let at = parse_amz_date(amz.trim()).ok_or_else(|| {
        SigError::Malformed(format!("X-Amz-Date {amz:?} is not YYYYMMDDTHHMMSSZ"))
    })?;
    if (now_s - at).abs() > max_skew_s {
        return Err(SigError::Expired(format!(
            "Signature expired: {amz} is more than {} minutes from the server's time {}",
            max_skew_s / 60,
            amz_date(now_s)
        )));
    }
    if !amz.trim().starts_with(auth.date) {
        return Err(SigError::WrongScope(format!(
            "the Credential's date {} is not the date of X-Amz-Date {amz}",
            auth.date
        )));
    }
    if auth.region != region || auth.service != service {
        return Err(SigError::WrongScope(format!(
            "Credential should be scoped to a valid region ({region}) and service ({service}), not {}/{}",
            auth.region, auth.service
        )));
    }
    Ok((auth, secret, amz.trim()))
}

/// Signs a request as a client does: the `Authorization` header's value
/// for `r` (which must carry `host` and `x-amz-date` among its headers,
/// all of them signed).
pub fn sign(
    r: &Request<'_>,
    access_key: &str,
    secret: &str,
    region: &str,
    service: &str,
    amz_date: &str,
) -> String {
    let mut names: Vec<String> = r
        .headers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    names.sort();
    names.dedup();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let date = &amz_date[..8.min(amz_date.len())];
    let canonical = canonical_request(r, &names);
    let sig = signature(secret, amz_date, date, region, service, &canonical);
    format!(
        "{ALGORITHM} Credential={access_key}/{date}/{region}/{service}/aws4_request, SignedHeaders={}, Signature={sig}",
        names.join(";")
    )
}

#[cfg(test)]
mod tests;
