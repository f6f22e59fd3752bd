//! The record format shared by the log and the base file, and a reader of
//! a stream of records.
//!
//! A record is `len: u32 LE | crc32(body): u32 LE | body`, with body
//! `op: u8 (1 put, 2 remove) | reason: u8 | at_ms: u64 LE |` then four
//! strings, each `u16 LE length | UTF-8 bytes` (length 0 = absent): email,
//! message id, feedback id, topic. A remove carries the email and topic it
//! removes (reason and ids unused) and the time of the removal.
//!
//! Exposure: records are read back from files that may be torn by a crash
//! or damaged; every length is bounded and checked, the CRC must match,
//! and a bad record is an error value naming what is wrong, never a panic.

use std::io::{self, Read};

use super::entry::{Entry, MAX_EMAIL, MAX_FIELD, Reason};

pub const PUT: u8 = 1;
pub const REMOVE: u8 = 2;
/// Frame header: length and CRC.
pub const HEADER: usize = 8;
/// Largest body a valid record can have.
pub const MAX_BODY: usize = 10 + 8 + MAX_EMAIL + 3 * MAX_FIELD;

/// A decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub op: u8,
    pub entry: Entry,
}

fn put_str(out: &mut Vec<u8>, s: Option<&str>) {
    let b = s.unwrap_or("").as_bytes();
    // Lengths are bounded by the entry checks (at most MAX_FIELD).
    out.extend_from_slice(&(b.len().min(u16::MAX as usize) as u16).to_le_bytes());
    out.extend_from_slice(&b[..b.len().min(u16::MAX as usize)]);
}

/// Appends the framed record to `out`.
pub fn encode(op: u8, e: &Entry, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    out.push(op);
    out.push(e.reason.code());
    out.extend_from_slice(&e.at_ms.to_le_bytes());
    put_str(out, Some(&e.email));
    put_str(out, e.message_id.as_deref());
    put_str(out, e.feedback_id.as_deref());
    put_str(out, e.topic.as_deref());
    let body_len = (out.len() - start - HEADER) as u32;
    let crc = crc32fast::hash(&out[start + HEADER..]);
    out[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Checks a frame header: the body length, or why it is not a record.
pub fn body_len(header: &[u8; HEADER]) -> Result<usize, &'static str> {
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if !(10 + 8..=MAX_BODY).contains(&len) {
        return Err("record length out of range");
    }
    Ok(len)
}

/// Checks the CRC in `header` against `body`.
pub fn check_crc(header: &[u8; HEADER], body: &[u8]) -> Result<(), &'static str> {
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if crc32fast::hash(body) != crc {
        return Err("record checksum mismatch");
    }
    Ok(())
}

/// Decodes a body whose CRC was checked.
pub fn decode(body: &[u8]) -> Result<Record, &'static str> {
    let short = "record body too short";
    let (&op, rest) = body.split_first().ok_or(short)?;
    if op != PUT && op != REMOVE {
        return Err("unknown record type");
    }
    let (&code, rest) = rest.split_first().ok_or(short)?;
    let reason = Reason::from_code(code).ok_or("unknown reason code")?;
    let (at, mut rest) = rest.split_at_checked(8).ok_or(short)?;
    let at_ms = u64::from_le_bytes(at.try_into().map_err(|_| short)?);
    let mut take = |max: usize| -> Result<Option<String>, &'static str> {
        let (len, r) = rest.split_at_checked(2).ok_or(short)?;
        let len = u16::from_le_bytes([len[0], len[1]]) as usize;
        if len > max {
            return Err("string too long in record");
        }
        let (s, r) = r.split_at_checked(len).ok_or(short)?;
        rest = r;
        let s = std::str::from_utf8(s).map_err(|_| "string not UTF-8 in record")?;
        Ok((!s.is_empty()).then(|| s.to_string()))
    };
    let email = take(MAX_EMAIL)?.ok_or("record without an email address")?;
    let message_id = take(MAX_FIELD)?;
    let feedback_id = take(MAX_FIELD)?;
    let topic = take(MAX_FIELD)?;
    if !rest.is_empty() {
        return Err("trailing bytes in record");
    }
    Ok(Record {
        op,
        entry: Entry {
            email,
            reason,
            at_ms,
            message_id,
            feedback_id,
            topic,
        },
    })
}

/// The outcome of reading one framed record from a stream.
pub enum Next {
    /// A whole record with a valid CRC is in the buffer (header and body).
    Frame,
    /// The stream ended cleanly between records.
    End,
    /// The stream ended inside a record, or the record is damaged.
    Bad(&'static str),
}

/// Reads the next frame (header and body) into `buf`.
pub fn next_frame(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<Next> {
    let mut header = [0u8; HEADER];
    let got = read_full(r, &mut header)?;
    if got == 0 {
        return Ok(Next::End);
    }
    if got < HEADER {
        return Ok(Next::Bad("file ends inside a record header"));
    }
    let len = match body_len(&header) {
        Ok(l) => l,
        Err(why) => return Ok(Next::Bad(why)),
    };
    buf.clear();
    buf.extend_from_slice(&header);
    buf.resize(HEADER + len, 0);
    if read_full(r, &mut buf[HEADER..])? < len {
        return Ok(Next::Bad("file ends inside a record"));
    }
    if let Err(why) = check_crc(&header, &buf[HEADER..]) {
        return Ok(Next::Bad(why));
    }
    Ok(Next::Frame)
}

/// Reads until `buf` is full or the stream ends; returns bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
