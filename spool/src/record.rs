//! Recipient and campaign records: what is stored once per recipient and once
//! per campaign, and their rkyv encoding.
//!
//! A recipient record holds the campaign number, the source row (for resuming
//! an interrupted ingest), the address and the template variables as one
//! byte string (see [`Vars`]): the values of the campaign's CSV columns,
//! each prefixed with its varint length (names are stored once, in the
//! campaign), or a JSON object. The archived root is 24 bytes, so with the
//! 8-byte frame header and padding a record costs at most 32 + 7 + 1 + (one
//! length byte per short value) bytes beyond its address and values. Records
//! are read in place from the memory-mapped segment with rkyv's validating
//! access: a damaged record yields an error, never undefined behaviour.
//! Exposure: record bytes come from disk and may be damaged.

use rkyv::{Archive, Deserialize, Serialize, rancor};

use crate::error::{Error, Result};

/// Largest encoded recipient record accepted (address plus variables).
pub const MAX_RECORD: usize = 64 * 1024;

const VARS_COLUMNS: u8 = 0;
const VARS_JSON: u8 = 1;

/// One recipient of a campaign, as stored in a segment.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// Campaign number (see [`crate::Campaign::no`]).
    pub campaign: u32,
    /// 1-based data row in the campaign's recipient list (resume point).
    pub row: u32,
    /// The address, already validated and with a lower-cased domain.
    pub email: String,
    /// Template variables, encoded by [`Vars::encode`].
    pub vars: Vec<u8>,
}

/// Template variables of one recipient, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vars<'a> {
    /// Values of the campaign's columns, in the campaign's column order.
    Columns(Vec<&'a str>),
    /// A JSON object (from `.jsonl` lists, where values may nest).
    Json(&'a str),
}

fn put_varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn get_varint(b: &[u8]) -> Option<(usize, usize)> {
    let mut n = 0usize;
    for (i, &byte) in b.iter().enumerate().take(4) {
        n |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((n, i + 1));
        }
    }
    None
}

impl<'a> Vars<'a> {
    /// Encodes column values into `out` (cleared first).
    pub fn encode_columns<'v>(values: impl IntoIterator<Item = &'v str>, out: &mut Vec<u8>) {
        out.clear();
        out.push(VARS_COLUMNS);
        for v in values {
            put_varint(out, v.len());
            out.extend_from_slice(v.as_bytes());
        }
    }

    /// Encodes a JSON object's text into `out` (cleared first).
    pub fn encode_json(json: &str, out: &mut Vec<u8>) {
        out.clear();
        out.push(VARS_JSON);
        out.extend_from_slice(json.as_bytes());
    }

    /// Encodes these variables into `out` (cleared first).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Vars::Columns(v) => Vars::encode_columns(v.iter().copied(), out),
            Vars::Json(j) => Vars::encode_json(j, out),
        }
    }

    /// Decodes variables (damage gives an error naming the problem).
    pub fn decode(b: &'a [u8]) -> std::result::Result<Vars<'a>, String> {
        match b.split_first() {
            None => Ok(Vars::Columns(Vec::new())),
            Some((&VARS_JSON, rest)) => std::str::from_utf8(rest)
                .map(Vars::Json)
                .map_err(|_| "variables are not UTF-8".to_string()),
            Some((&VARS_COLUMNS, mut rest)) => {
                let mut values = Vec::new();
                while !rest.is_empty() {
                    let (len, used) = get_varint(rest).ok_or("bad variable length")?;
                    let end = used
                        .checked_add(len)
                        .filter(|e| *e <= rest.len())
                        .ok_or("variable runs past the record")?;
                    let v = std::str::from_utf8(&rest[used..end])
                        .map_err(|_| "variable is not UTF-8")?;
                    values.push(v);
                    rest = &rest[end..];
                }
                Ok(Vars::Columns(values))
            }
            Some((k, _)) => Err(format!("unknown variables kind {k}")),
        }
    }
}

/// The domain part of an address: everything after its last `@` (empty
/// when there is none). The one place that knows where a domain starts.
pub fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map_or("", |(_, d)| d)
}

impl ArchivedRecipient {
    /// The domain part of the address.
    pub fn domain(&self) -> &str {
        domain_of(self.email.as_str())
    }

    /// The decoded template variables.
    pub fn vars(&self) -> std::result::Result<Vars<'_>, String> {
        Vars::decode(self.vars.as_slice())
    }
}

/// Encodes a recipient into its archived bytes, reusing `buf`.
pub fn encode_into(rec: &Recipient, buf: rkyv::util::AlignedVec) -> Result<rkyv::util::AlignedVec> {
    let mut buf = buf;
    buf.clear();
    let bytes = rkyv::api::high::to_bytes_in::<_, rancor::Error>(rec, buf)
        .map_err(|e| Error::Encode(e.to_string()))?;
    if bytes.len() > MAX_RECORD {
        return Err(Error::RecordTooLarge {
            email: rec.email.clone(),
            size: bytes.len(),
            limit: MAX_RECORD,
        });
    }
    Ok(bytes)
}

/// Encodes a recipient into its archived bytes.
pub fn encode(rec: &Recipient) -> Result<rkyv::util::AlignedVec> {
    encode_into(rec, rkyv::util::AlignedVec::new())
}

/// Validates and accesses an archived recipient in place.
pub fn access(payload: &[u8]) -> std::result::Result<&ArchivedRecipient, String> {
    rkyv::access::<ArchivedRecipient, rancor::Error>(payload).map_err(|e| e.to_string())
}

/// A campaign as stored once in the spool: an opaque body (the engine's
/// serialized definition) plus what the spool itself needs.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct CampaignRecord {
    pub no: u32,
    pub id: String,
    pub created_ms: u64,
    pub body: Vec<u8>,
}

pub(crate) fn encode_campaign(c: &CampaignRecord) -> Result<rkyv::util::AlignedVec> {
    rkyv::to_bytes::<rancor::Error>(c).map_err(|e| Error::Encode(e.to_string()))
}

pub(crate) fn decode_campaign(payload: &[u8]) -> std::result::Result<CampaignRecord, String> {
    rkyv::from_bytes::<CampaignRecord, rancor::Error>(payload).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(vars: Vars<'_>) -> Recipient {
        let mut v = Vec::new();
        vars.encode(&mut v);
        Recipient {
            campaign: 3,
            row: 17,
            email: "ada@example.org".into(),
            vars: v,
        }
    }

    #[test]
    fn round_trip_in_place() {
        let r = rec(Vars::Columns(vec!["Ada", "", &"L".repeat(300)]));
        let bytes = encode(&r).unwrap();
        let a = access(&bytes).unwrap();
        assert_eq!(a.email.as_str(), "ada@example.org");
        assert_eq!(a.domain(), "example.org");
        assert_eq!(a.campaign.to_native(), 3);
        assert_eq!(
            a.vars().unwrap(),
            Vars::Columns(vec!["Ada", "", &"L".repeat(300)])
        );
        let j = encode(&rec(Vars::Json("{\"a\":1}"))).unwrap();
        assert_eq!(access(&j).unwrap().vars().unwrap(), Vars::Json("{\"a\":1}"));
    }

    #[test]
    fn record_overhead_is_small() {
        // 4 columns of 10 bytes, a 20-byte address
        let r = Recipient {
            campaign: 1,
            row: 1,
            email: "someone@example.test".into(),
            vars: {
                let mut v = Vec::new();
                Vars::encode_columns(["0123456789"; 4], &mut v);
                v
            },
        };
        let bytes = encode(&r).unwrap();
        let framed = crate::frame::frame_len(bytes.len());
        assert!(framed <= 64 + 20 + 40, "{framed} bytes");
    }

    #[test]
    fn garbage_is_an_error() {
        let bytes = encode(&rec(Vars::Columns(vec!["x", "yy"]))).unwrap();
        let mut aligned = rkyv::util::AlignedVec::<16>::new();
        for i in 0..bytes.len() {
            for bit in [0x01u8, 0x80] {
                aligned.clear();
                aligned.extend_from_slice(&bytes);
                aligned[i] ^= bit;
                if let Ok(a) = access(&aligned) {
                    let _ = a.vars();
                }
            }
        }
        assert!(access(&[0u8; 3]).is_err());
        assert!(Vars::decode(&[0, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(Vars::decode(&[0, 5, b'a']).is_err());
        assert!(Vars::decode(&[9]).is_err());
    }
}
