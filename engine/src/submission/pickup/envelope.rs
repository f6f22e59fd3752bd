//! The envelope of a message dropped into `pickup/` (pure).
//!
//! Sender: `X-Envelope-From`, else `Return-Path`, else the first `From`
//! address (`<>` in the first two is the null sender). Recipients: every
//! `X-Envelope-To` (comma-separated addresses, the header may repeat),
//! else the `To`, `Cc` and `Bcc` addresses, as `sendmail -t` takes them.
//! Exposure: the file is hostile input; problems are errors that say what
//! is wrong.

use super::super::message::{crlf, split_fields};

/// A dropped message's envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub mail_from: String,
    pub rcpts: Vec<String>,
}

/// Addresses of an address-list header value (groups flattened).
fn addresses(name: &str, value: &str) -> Vec<String> {
    let header = format!("{name}: {value}\r\n\r\n");
    let Some(m) = mail_parser::MessageParser::new().parse_headers(header.as_bytes()) else {
        return Vec::new();
    };
    let list = match name {
        "To" => m.to(),
        "Cc" => m.cc(),
        "Bcc" => m.bcc(),
        _ => m.from(),
    };
    list.map(|a| {
        a.clone()
            .into_list()
            .into_iter()
            .filter_map(|x| x.address().map(str::to_string))
            .collect()
    })
    .unwrap_or_default()
}

/// The bare address of `<addr>` or `addr` (empty for `<>`).
fn bare(v: &str) -> String {
    v.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_string()
}

/// Whether the message has a From header.
pub fn has_from(raw: &[u8]) -> bool {
    let m = crlf(
        &raw[..raw
            .len()
            .min(super::super::message::MAX_HEADER_BYTES + 4096)],
    );
    split_fields(&m).is_ok_and(|(fields, _)| fields.iter().any(|f| f.is("From")))
}

/// Reads the envelope from the message's header block.
pub fn of(raw: &[u8]) -> Result<Envelope, String> {
    let m = crlf(
        &raw[..raw
            .len()
            .min(super::super::message::MAX_HEADER_BYTES + 4096)],
    );
    let (fields, _) = split_fields(&m).map_err(|e| e.to_string())?;
    let first = |name: &str| fields.iter().find(|f| f.is(name)).map(|f| f.value());
    let mail_from = match (first("X-Envelope-From"), first("Return-Path")) {
        (Some(v), _) | (None, Some(v)) => bare(&v),
        (None, None) => match first("From") {
            Some(v) => addresses("From", &v).into_iter().next().unwrap_or_default(),
            None => String::new(),
        },
    };
    let mut rcpts: Vec<String> = fields
        .iter()
        .filter(|f| f.is("X-Envelope-To"))
        .flat_map(|f| {
            f.value()
                .split(',')
                .map(bare)
                .filter(|a| !a.is_empty())
                .collect::<Vec<_>>()
        })
        .collect();
    if rcpts.is_empty() {
        for name in ["To", "Cc", "Bcc"] {
            for f in fields.iter().filter(|f| f.is(name)) {
                rcpts.extend(addresses(name, &f.value()));
            }
        }
    }
    if rcpts.is_empty() {
        return Err("no recipients (no X-Envelope-To, To, Cc or Bcc address)".into());
    }
    Ok(Envelope { mail_from, rcpts })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_headers_win() {
        let e = of(b"X-Envelope-From: <app@example.com>\nX-Envelope-To: a@x.test, <b@y.test>\nX-Envelope-To: c@z.test\nFrom: other@example.org\nTo: d@w.test\n\nbody").unwrap();
        assert_eq!(e.mail_from, "app@example.com");
        assert_eq!(e.rcpts, ["a@x.test", "b@y.test", "c@z.test"]);
    }

    #[test]
    fn like_sendmail_t() {
        let e = of(b"Return-Path: <>\r\nFrom: App <app@example.com>\r\nTo: A <a@x.test>, b@y.test\r\nCc: team: c@z.test, d@z.test;\r\nBcc: e@v.test\r\n\r\nbody").unwrap();
        assert_eq!(e.mail_from, "");
        assert_eq!(
            e.rcpts,
            ["a@x.test", "b@y.test", "c@z.test", "d@z.test", "e@v.test"]
        );
        let e = of(b"From: App <app@example.com>\nTo: a@x.test\n\n").unwrap();
        assert_eq!(e.mail_from, "app@example.com");
        assert!(of(b"From: a@b.test\n\nno recipients").is_err());
        assert!(of(b"").is_err());
        assert!(of(&[0xff; 100]).is_err());
    }
}
