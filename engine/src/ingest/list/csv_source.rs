//! CSV recipient lists: a header row that includes `email`, every other
//! column a variable.
//!
//! From a regular file, a record with the wrong field count that ran over
//! several lines (most likely a stray quote) costs only its own row:
//! reading goes on from its second line (see [`place_rejected`]), and a
//! record over [`MAX_RECORD`] bytes (an unterminated quote) is rejected
//! without being held in memory. From a pipe, neither is possible: such a
//! record takes the lines it ran over with it.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use volley_spool::Vars;

use super::{Item, ListError, Rejection, make_row, read_err};

/// Largest CSV record read, in bytes (far above any acceptable row: the
/// variables alone are capped at `MAX_VARS`).
pub const MAX_RECORD: u64 = 1 << 20;

/// The list file, counting the bytes handed to the parser since the
/// current record began; past `cap` it fails with [`RecordTooLong`].
struct Capped {
    file: File,
    since: u64,
    cap: u64,
}

#[derive(Debug)]
struct RecordTooLong;

impl std::fmt::Display for RecordTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "record over {MAX_RECORD} bytes")
    }
}

impl std::error::Error for RecordTooLong {}

impl std::io::Seek for Capped {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        self.since = 0;
        self.file.seek(to)
    }
}

impl Read for Capped {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.since > self.cap {
            return Err(std::io::Error::other(RecordTooLong));
        }
        let n = self.file.read(buf)?;
        self.since += n as u64;
        Ok(n)
    }
}

/// An open CSV list, past its header.
pub(super) struct CsvSource {
    reader: csv::Reader<Capped>,
    email_col: usize,
    record: csv::StringRecord,
    /// The list is a regular file: rejected records can be read again.
    seekable: bool,
}

impl CsvSource {
    /// Reads the header of `file`; returns the source and the variable
    /// column names, in record order.
    pub(super) fn open(file: File, path: &Path) -> Result<(CsvSource, Vec<String>), ListError> {
        let seekable = file.metadata().is_ok_and(|m| m.file_type().is_file());
        let capped = Capped {
            file,
            since: 0,
            cap: if seekable { MAX_RECORD } else { u64::MAX },
        };
        // a re-read (`place_rejected`) refills the whole buffer: keep it small
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .buffer_capacity(1 << 16)
            .from_reader(capped);
        let headers = reader.headers().map_err(|e| read_err(path, e))?.clone();
        let names: Vec<String> = headers
            .iter()
            .map(|h| h.trim().trim_start_matches('\u{feff}').to_string())
            .collect();
        let Some(email_col) = names.iter().position(|h| h.eq_ignore_ascii_case("email")) else {
            return Err(ListError::NoEmail {
                path: path.to_path_buf(),
                columns: names.join(", "),
            });
        };
        let columns = names
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != email_col)
            .map(|(_, n)| n.clone())
            .collect();
        let source = CsvSource {
            reader,
            email_col,
            record: csv::StringRecord::new(),
            seekable,
        };
        Ok((source, columns))
    }

    /// The next item; `row` counts data rows.
    pub(super) fn next(&mut self, row: &mut u32, path: &Path) -> Result<Option<Item>, ListError> {
        // where the record begins (by the parser's count; see
        // `place_rejected`)
        let start = self.reader.position().clone();
        let line = start.line();
        self.reader.get_mut().since = 0;
        // the field count is wrong (perhaps a stray quote), or the record
        // was cut off at MAX_RECORD
        let mut stray = false;
        let mut too_long = false;
        let mut item = match self.reader.read_record(&mut self.record) {
            Ok(false) => return Ok(None),
            Ok(true) => {
                *row += 1;
                let email = self.record.get(self.email_col).unwrap_or("");
                let col = self.email_col;
                let mut vars = Vec::with_capacity(self.record.as_slice().len() + self.record.len());
                Vars::encode_columns(
                    self.record
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| *i != col)
                        .map(|(_, v)| v),
                    &mut vars,
                );
                make_row(line, *row, email, vars)
            }
            Err(e) => {
                *row += 1;
                let reason = match e.kind() {
                    csv::ErrorKind::Io(io)
                        if io.get_ref().is_some_and(|x| x.is::<RecordTooLong>()) =>
                    {
                        (stray, too_long) = (true, true);
                        format!("row is over {MAX_RECORD} bytes (an unterminated quote?)")
                    }
                    csv::ErrorKind::Io(_) => return Err(read_err(path, e)),
                    csv::ErrorKind::UnequalLengths {
                        expected_len, len, ..
                    } => {
                        stray = true;
                        format!("row has {len} fields; the header has {expected_len}")
                    }
                    _ => format!("malformed CSV row: {e}"),
                };
                Item::Rejected(Rejection {
                    line,
                    row: *row,
                    reason,
                })
            }
        };
        if let Item::Rejected(r) = &mut item
            && self.seekable
            && place_rejected(&mut self.reader, &start, r, stray, too_long)
                .map_err(|e| read_err(path, e))?
        {
            r.reason.push_str(
                "; it ran over several lines: the lines after its first are read as rows",
            );
        }
        Ok(Some(item))
    }
}

/// Finds where a rejected CSV record really begins and, when it is a
/// `stray` (wrong field count, or too long) and ran over several lines,
/// reads on from the line after its first one; returns whether it did. Only rejected rows get here (the
/// record's bytes are read again from the file).
///
/// The parser's record position is taken before the line ends and blank
/// lines in front of the record (with CRLF, the `\n` of the previous line
/// end), so its line number can be short: the rejection's `line` is set from
/// the bytes (line ends are `\n` or `\r\n`). A record with the wrong field
/// count running over several lines is most likely a stray quote opening a
/// field that goes on to the next quote, or to the end of the file: it must
/// not take the rows after it along. (A well-formed quoted field over
/// several lines in a row that is one field short is read the same way.) A
/// record with the right field count rejected for its content (an address
/// with a line break in it, invalid UTF-8) stays one row: its lines are not
/// read as rows of their own.
fn place_rejected(
    reader: &mut csv::Reader<Capped>,
    start: &csv::Position,
    rejection: &mut Rejection,
    stray: bool,
    too_long: bool,
) -> std::io::Result<bool> {
    use std::os::unix::fs::FileExt;
    // where the parser stopped; a record cut off there goes on past it
    let end = reader.position().byte();
    let limit = if too_long { u64::MAX } else { end };
    let file = &reader.get_ref().file;
    let mut line = start.line();
    let mut off = start.byte();
    // where the record's first line ends, once its first byte was seen
    let mut in_record = false;
    let mut buf = [0u8; 4096];
    while off < limit {
        let want = usize::try_from(limit - off).map_or(buf.len(), |n| n.min(buf.len()));
        let n = file.read_at(&mut buf[..want], off)?;
        if n == 0 {
            break;
        }
        for (i, &b) in buf[..n].iter().enumerate() {
            let at = off + i as u64;
            match (in_record, b) {
                (false, b'\n') => line += 1,
                (false, b'\r') => {}
                (false, _) => in_record = true,
                (true, b'\n' | b'\r') => {
                    rejection.line = line;
                    if !stray {
                        return Ok(false);
                    }
                    let mut next = at + 1;
                    let mut lf = [0u8; 1];
                    if b == b'\r' && file.read_at(&mut lf, next)? == 1 && lf[0] == b'\n' {
                        next += 1;
                    }
                    if next >= end && !too_long {
                        // the record ended on its first line
                        return Ok(false);
                    }
                    seek(reader, next, line + 1, start.record() + 1)?;
                    return Ok(true);
                }
                (true, _) => {}
            }
        }
        off += n as u64;
    }
    rejection.line = line;
    if too_long {
        // one line to the end of the file: nothing after it
        seek(reader, off, line + 1, start.record() + 1)?;
    }
    Ok(false)
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
