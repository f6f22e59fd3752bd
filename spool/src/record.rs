//! Recipient and campaign records: what is stored once per recipient and once
//! per campaign, and their rkyv encoding.
//!
//! A recipient record holds the campaign number, the source row (for resuming
//! an interrupted ingest), the address and the template variables: either the
//! values of the campaign's CSV columns in column order (names are stored once,
//! in the campaign) or one JSON object. Records are read in place from the
//! memory-mapped segment with rkyv's validating access, so a damaged record
//! yields an error, never undefined behaviour. Exposure: record bytes come
//! from disk and may be damaged.

use rkyv::{Archive, Deserialize, Serialize, rancor};

use crate::error::{Error, Result};

/// Largest encoded recipient record accepted (address plus variables).
pub const MAX_RECORD: usize = 64 * 1024;

/// Template variables of one recipient.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Vars {
    /// Values of the campaign's columns, in the campaign's column order.
    Columns(Vec<String>),
    /// A JSON object (from `.jsonl` lists, where values may nest).
    Json(String),
}

/// One recipient of a campaign, as stored in a segment.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// Campaign number (see [`crate::Campaign::no`]).
    pub campaign: u32,
    /// 1-based data row in the campaign's recipient list (resume point).
    pub row: u32,
    /// The address, already validated and with a lower-cased domain.
    pub email: String,
    pub vars: Vars,
}

impl ArchivedRecipient {
    /// The domain part of the address (everything after the last `@`).
    pub fn domain(&self) -> &str {
        let email = self.email.as_str();
        email.rsplit_once('@').map_or("", |(_, d)| d)
    }
}

/// Encodes a recipient into its archived bytes.
pub fn encode(rec: &Recipient) -> Result<rkyv::util::AlignedVec> {
    let bytes = rkyv::to_bytes::<rancor::Error>(rec).map_err(|e| Error::Encode(e.to_string()))?;
    if bytes.len() > MAX_RECORD {
        return Err(Error::RecordTooLarge {
            email: rec.email.clone(),
            size: bytes.len(),
            limit: MAX_RECORD,
        });
    }
    Ok(bytes)
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

    #[test]
    fn round_trip_in_place() {
        let r = Recipient {
            campaign: 3,
            row: 17,
            email: "ada@example.org".into(),
            vars: Vars::Columns(vec!["Ada".into(), "Lovelace".into()]),
        };
        let bytes = encode(&r).unwrap();
        let a = access(&bytes).unwrap();
        assert_eq!(a.email.as_str(), "ada@example.org");
        assert_eq!(a.domain(), "example.org");
        assert_eq!(a.campaign.to_native(), 3);
        match &a.vars {
            ArchivedVars::Columns(v) => assert_eq!(v[1].as_str(), "Lovelace"),
            ArchivedVars::Json(_) => panic!("columns expected"),
        }
    }

    #[test]
    fn garbage_is_an_error() {
        let r = Recipient {
            campaign: 1,
            row: 1,
            email: "a@b.c".into(),
            vars: Vars::Json("{}".into()),
        };
        let bytes = encode(&r).unwrap();
        let mut aligned = rkyv::util::AlignedVec::<16>::new();
        for i in 0..bytes.len() {
            for bit in [0x01u8, 0x80] {
                aligned.clear();
                aligned.extend_from_slice(&bytes);
                aligned[i] ^= bit;
                let _ = access(&aligned);
            }
        }
        assert!(access(&[0u8; 3]).is_err());
    }
}
