//! Content-Transfer-Encoding of rendered text bodies: one scan picks the
//! encoding, one write produces the wire form.
//!
//! In: a rendered body (recipient variables are untrusted, so it may hold
//! anything UTF-8 can). Out: its `7bit`, `quoted-printable` or `base64`
//! form. Invariants, whatever the text holds: the output is US-ASCII, every
//! line ends in CRLF, no line is longer than 998 octets, and it holds no NUL,
//! no bare CR or LF and no other control character but TAB (RFC 5321
//! §2.3.8, RFC 2045 §2.7 and §6.7).
//!
//! - An LF is a line break: written CRLF in every encoding (a CRLF stays
//!   one). A CR that does not start a CRLF is data, not a line break.
//! - Clean text (printable US-ASCII and TAB, lines of at most 998 octets)
//!   stays `7bit`: borrowed as it is when its lines already end in CRLF,
//!   else copied once with LF made CRLF.
//! - Anything else (NUL and other control characters, a bare CR, DEL, 8-bit
//!   UTF-8, a line over 998 octets) is quoted-printable, or base64 when that
//!   is shorter (text that is mostly not ASCII).
//!
//! The scan of clean text is three vectorized passes (unusual bytes, LFs,
//! CRs), so the common case costs little more than the CRLF copy when the
//! template has LF line ends. Pure.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

/// Longest line (octets, without CRLF) that `7bit` may carry (RFC 5322
/// §2.1.1).
pub const MAX_LINE: usize = 998;
/// Longest quoted-printable line, the soft-break `=` included (RFC 2045).
const QP_LINE: usize = 76;

/// A Content-Transfer-Encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cte {
    SevenBit,
    QuotedPrintable,
    Base64,
}

impl Cte {
    /// The header value.
    pub fn name(self) -> &'static str {
        match self {
            Cte::SevenBit => "7bit",
            Cte::QuotedPrintable => "quoted-printable",
            Cte::Base64 => "base64",
        }
    }
}

/// A body in its wire form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded<'a> {
    pub cte: Cte,
    /// US-ASCII, CRLF line ends.
    pub text: Cow<'a, str>,
}

/// Encodes a rendered text body for the wire.
pub fn encode(text: &str) -> Encoded<'_> {
    let b = text.as_bytes();
    let scan = scan(b);
    if !scan.needs_encoding {
        let text = if scan.bare_lf {
            Cow::Owned(crlf(text))
        } else {
            Cow::Borrowed(text)
        };
        return Encoded {
            cte: Cte::SevenBit,
            text,
        };
    }
    // not clean (rare): the shorter of quoted-printable and base64
    let escaped = b.iter().filter(|&&c| qp_escaped(c)).count();
    let qp_len = b.len() + 2 * escaped + b.len() / (QP_LINE - 1) * 3;
    let b64_chars = b.len().div_ceil(3) * 4;
    let b64_len = b64_chars + b64_chars.div_ceil(76) * 2;
    if qp_len <= b64_len {
        Encoded {
            cte: Cte::QuotedPrintable,
            text: Cow::Owned(quoted_printable(b)),
        }
    } else {
        Encoded {
            cte: Cte::Base64,
            text: Cow::Owned(base64_lines(crlf(text).as_bytes())),
        }
    }
}

#[derive(Debug, Default)]
struct Scan {
    /// An LF without a CR before it.
    bare_lf: bool,
    /// Not valid `7bit`.
    needs_encoding: bool,
}

/// A byte clean text cannot hold: a control character other than TAB, CR
/// and LF, DEL, or 8-bit.
#[inline(always)]
fn unusual(c: u8) -> bool {
    c >= 0x7F || (c < 0x20 && c != b'\t' && c != b'\n' && c != b'\r')
}

/// Whether `b` holds an [`unusual`] byte: branch-free over 64-byte blocks
/// (the compiler makes each block a few vector compares).
fn any_unusual(b: &[u8]) -> bool {
    b.chunks(64)
        .any(|block| block.iter().fold(false, |acc, &c| acc | unusual(c)))
}

/// The body's needs, in three vectorized passes: unusual bytes, the line
/// breaks (their lengths and whether each LF has its CR), and the CRs
/// (one that starts no CRLF is a bare CR). Stops as soon as the body is
/// known to need encoding.
fn scan(b: &[u8]) -> Scan {
    let mut s = Scan::default();
    if any_unusual(b) {
        s.needs_encoding = true;
        return s;
    }
    let mut line_start = 0;
    let mut crlfs = 0usize;
    for at in memchr::memchr_iter(b'\n', b) {
        let cr = at > 0 && b[at - 1] == b'\r';
        s.bare_lf |= !cr;
        crlfs += usize::from(cr);
        if at - line_start - usize::from(cr) > MAX_LINE {
            s.needs_encoding = true;
            return s;
        }
        line_start = at + 1;
    }
    s.needs_encoding =
        b.len() - line_start > MAX_LINE || memchr::memchr_iter(b'\r', b).count() != crlfs;
    s
}

/// `text` with every LF that has no CR before it made CRLF.
fn crlf(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(b.len() + b.len() / 32 + 2);
    let mut from = 0;
    for at in memchr::memchr_iter(b'\n', b) {
        if at == 0 || b[at - 1] != b'\r' {
            // `at` is an ASCII byte, so a character boundary
            out.push_str(&text[from..at]);
            out.push_str("\r\n");
            from = at + 1;
        }
    }
    out.push_str(&text[from..]);
    out
}

/// Bytes quoted-printable writes as `=XX` (besides white space at a line
/// end).
fn qp_escaped(c: u8) -> bool {
    !(c == b'\t' || c == b'\n' || c == b'\r' || (0x20..0x7F).contains(&c)) || c == b'='
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Quoted-printable (RFC 2045 §6.7): LF and CRLF are hard line breaks
/// (CRLF); everything else that is not printable ASCII, `=`, and white
/// space before a line break or at the end is `=XX`; lines are soft-broken
/// at 76 characters.
fn quoted_printable(b: &[u8]) -> String {
    let mut out = Vec::with_capacity(b.len() + b.len() / 4 + 8);
    let mut col = 0;
    let mut i = 0;
    let is_break = |at: usize| match b.get(at) {
        Some(b'\n') => true,
        Some(b'\r') => b.get(at + 1) == Some(&b'\n'),
        _ => false,
    };
    while i < b.len() {
        if is_break(i) {
            i += if b[i] == b'\r' { 2 } else { 1 };
            out.extend_from_slice(b"\r\n");
            col = 0;
            continue;
        }
        let c = b[i];
        let literal = match c {
            b' ' | b'\t' => i + 1 < b.len() && !is_break(i + 1),
            b'=' => false,
            0x21..=0x7E => true,
            _ => false,
        };
        let width = if literal { 1 } else { 3 };
        if col + width > QP_LINE - 1 {
            out.extend_from_slice(b"=\r\n");
            col = 0;
        }
        if literal {
            out.push(c);
        } else {
            out.extend_from_slice(&[b'=', HEX[usize::from(c >> 4)], HEX[usize::from(c & 15)]]);
        }
        col += width;
        i += 1;
    }
    // ASCII only
    String::from_utf8(out).unwrap_or_default()
}

/// Base64 in lines of 76 characters, each ending in CRLF.
fn base64_lines(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len().div_ceil(57) * 78);
    for chunk in b.chunks(57) {
        B64.encode_string(chunk, &mut out);
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests;
