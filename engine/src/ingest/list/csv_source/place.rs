//! Where a CSV record lies in the file, read from the file's bytes: the
//! line a row really begins on (the parser's count can be short), and, for
//! a rejected record, where reading goes on (see [`place_rejected`]).
//! Exposure: list files are untrusted input; reads are bounded.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::super::{Rejection, Start};
use super::Capped;

/// Why a record was rejected, for placing it (see [`place_rejected`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Bad {
    /// Its content (an address, UTF-8): it stays one row.
    Content,
    /// Malformed (most likely a stray quote): if it ran over several lines,
    /// reading goes on from its second line.
    Malformed,
    /// Cut off at [`MAX_RECORD`](super::MAX_RECORD): reading goes on after its first line.
    TooLong,
}

/// Where a rejected record was found to lie.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Placed {
    /// Reading goes on where the parser stopped.
    AsParsed,
    /// It ran over several lines; reading goes on from its second line.
    ReadOn,
    /// Its first line alone is over [`MAX_RECORD`](super::MAX_RECORD); reading goes on after
    /// that line.
    LongLine,
}

/// The line a record really begins on, given where the parser began
/// reading it: past the line ends and blank lines the parser had not
/// counted yet (see [`place_rejected`]).
pub(in crate::ingest::list) fn line_at(file: &File, start: Start) -> std::io::Result<u64> {
    let lf = |b: &[u8]| b.iter().filter(|&&b| b == b'\n').count() as u64;
    let (mut off, mut line) = (start.byte, start.line);
    let mut buf = [0u8; 512];
    loop {
        let n = file.read_at(&mut buf, off)?;
        if n == 0 {
            return Ok(line);
        }
        match buf[..n].iter().position(|&b| b != b'\n' && b != b'\r') {
            Some(p) => return Ok(line + lf(&buf[..p])),
            None => {
                line += lf(&buf[..n]);
                off += n as u64;
            }
        }
    }
}

pub(super) fn read_full_at(file: &File, buf: &mut [u8], mut at: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], at)? {
            0 => break,
            k => {
                n += k;
                at += k as u64;
            }
        }
    }
    Ok(n)
}

/// Finds where a rejected CSV record really begins and, when it is
/// malformed (or too long) and ran over several lines, reads on from the
/// line after its first one. Only rejected rows get here (the record's
/// bytes are read again from the file).
///
/// The parser's record position is taken before the line ends and blank
/// lines in front of the record (with CRLF, the `\n` of the previous line
/// end), so its line number can be short: the rejection's `line` is set from
/// the bytes (line ends are `\n` or `\r\n`). A malformed record running
/// over several lines is most likely a stray quote opening a field that
/// goes on to the next quote, or to the end of the file: it must not take
/// the rows after it along. (A well-formed quoted field over several lines
/// in a row that is one field short is read the same way.) A record
/// rejected for its content (an address with a line break in it, invalid
/// UTF-8) stays one row: its lines are not read as rows of their own. A
/// record cut off at [`MAX_RECORD`](super::MAX_RECORD) goes on past where the parser stopped:
/// reading goes on after its first line, wherever that ends.
pub(super) fn place_rejected(
    reader: &mut csv::Reader<Capped>,
    start: &csv::Position,
    rejection: &mut Rejection,
    bad: Bad,
) -> std::io::Result<Placed> {
    // where the parser stopped; a record cut off there goes on past it
    let end = reader.position().byte();
    let too_long = bad == Bad::TooLong;
    let limit = if too_long { u64::MAX } else { end };
    let file = &reader.get_ref().file;
    let mut line = start.line();
    let mut off = start.byte();
    // where the record's first line ends, once its first byte was seen
    let mut in_record = false;
    let mut buf = [0u8; 8192];
    while off < limit {
        let want = usize::try_from(limit - off).map_or(buf.len(), |n| n.min(buf.len()));
        let n = file.read_at(&mut buf[..want], off)?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        let mut i = 0;
        if !in_record {
            // line ends and blank lines before the record
            match chunk.iter().position(|&b| b != b'\n' && b != b'\r') {
                Some(p) => {
                    line += chunk[..p].iter().filter(|&&b| b == b'\n').count() as u64;
                    in_record = true;
                    i = p;
                }
                None => {
                    line += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
                    off += n as u64;
                    continue;
                }
            }
        }
        if let Some(p) = memchr::memchr2(b'\n', b'\r', &chunk[i..]) {
            let at = off + (i + p) as u64;
            rejection.line = line;
            if bad == Bad::Content {
                return Ok(Placed::AsParsed);
            }
            let mut next = at + 1;
            let mut lf = [0u8; 1];
            if chunk[i + p] == b'\r' && file.read_at(&mut lf, next)? == 1 && lf[0] == b'\n' {
                next += 1;
            }
            if next >= end && !too_long {
                // the record ended on its first line
                return Ok(Placed::AsParsed);
            }
            let placed = if too_long && next > end {
                Placed::LongLine
            } else {
                Placed::ReadOn
            };
            seek(reader, next, line + 1, start.record() + 1)?;
            return Ok(placed);
        }
        off += n as u64;
    }
    rejection.line = line;
    if too_long {
        // one line to the end of the file: nothing after it
        seek(reader, off, line + 1, start.record() + 1)?;
        return Ok(Placed::LongLine);
    }
    Ok(Placed::AsParsed)
}

fn seek(
    reader: &mut csv::Reader<Capped>,
    byte: u64,
    line: u64,
    record: u64,
) -> std::io::Result<()> {
    let mut pos = csv::Position::new();
    pos.set_byte(byte).set_line(line).set_record(record);
    reader.seek(pos).map_err(std::io::Error::other)
}
