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
//! Clean text is checked and copied in one pass of [`bytemask`] blocks,
//! so the common case costs little more than the CRLF copy when the
//! template has LF line ends. Pure.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::bytemask;

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
    if let Some(text) = seven_bit(text) {
        return Encoded {
            cte: Cte::SevenBit,
            text,
        };
    }
    // not clean (rare): the shorter of quoted-printable and base64
    let b = text.as_bytes();
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

/// `text` as `7bit`, CRLF line ends: borrowed when they already are, else
/// copied once with LF made CRLF; `None` when it needs encoding (an
/// [`bytemask::unusual`] byte, a bare CR, a line over [`MAX_LINE`]). One
/// pass of [`bytemask`] blocks: the checks are bit tests, and the copy
/// starts at the first LF without its CR.
fn seven_bit(text: &str) -> Option<Cow<'_, str>> {
    let b = text.as_bytes();
    let mut out: Option<String> = None;
    // the start of the text not yet copied, and of the current line
    let (mut from, mut line_start) = (0usize, 0usize);
    let mut cr_in = 0u64;
    for (at, m) in bytemask::blocks(b) {
        let after_cr = (m.cr << 1) | cr_in;
        if m.unusual != 0 || after_cr & !m.lf != 0 {
            return None;
        }
        cr_in = m.cr >> 63;
        let mut lfs = m.lf;
        while lfs != 0 {
            let bit = lfs.trailing_zeros();
            lfs &= lfs - 1;
            let i = at + bit as usize;
            let cr = (after_cr >> bit) & 1 == 1;
            if i - line_start - usize::from(cr) > MAX_LINE {
                return None;
            }
            line_start = i + 1;
            if !cr {
                let o =
                    out.get_or_insert_with(|| String::with_capacity(b.len() + b.len() / 32 + 2));
                // `i` is an ASCII byte, so a character boundary
                o.push_str(&text[from..i]);
                o.push_str("\r\n");
                from = i + 1;
            }
        }
    }
    // a CR that ends the text (at a block's end) has no LF
    if cr_in != 0 || b.len() - line_start > MAX_LINE {
        return None;
    }
    Some(match out {
        None => Cow::Borrowed(text),
        Some(mut o) => {
            o.push_str(&text[from..]);
            Cow::Owned(o)
        }
    })
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
