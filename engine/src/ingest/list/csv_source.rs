//! CSV recipient lists: a header row that includes `email`, every other
//! column a variable.
//!
//! A stray quote must not take the rows after it along. From a regular
//! file, a record that ran over several lines and is malformed costs only
//! its own row: reading goes on from its second line (see
//! [`place_rejected`]). Malformed means a wrong field count, a quoted field
//! never closed before the end of the file, or a quoted field over several
//! lines closed by a quote with text after it (see [`super::quotes`]; the
//! parser accepts the last two when the field count comes out right). A
//! record over [`MAX_RECORD`] bytes is rejected without being held in
//! memory. From a pipe, which cannot be read twice, such a record is still
//! rejected, naming its line, but takes the lines it ran over with it.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use volley_spool::Vars;

use super::quotes::{Quotes, Stray, StreamQuotes};
use super::{Item, ListError, Rejection, Start, make_row, read_err};
pub(super) use place::line_at;
use place::{Bad, Placed, place_rejected, read_full_at};

/// Largest CSV record read, in bytes (far above any acceptable row: the
/// variables alone are capped at `MAX_VARS`).
pub const MAX_RECORD: u64 = 1 << 20;

/// The list file, counting the bytes handed to the parser since the
/// current record began; past `cap` it fails with [`RecordTooLong`]. A
/// list that cannot be read twice has its quotes followed as it is read.
struct Capped {
    file: File,
    since: u64,
    cap: u64,
    stream: Option<StreamQuotes>,
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
        if let Some(s) = &mut self.stream {
            s.feed(&buf[..n]);
        }
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
    /// Its length when opened (a record reaching it ended with the file).
    len: u64,
    /// Where the last record began (by the parser's count).
    start: csv::Position,
    /// Raw bytes of a record being checked.
    raw: Vec<u8>,
}

impl CsvSource {
    /// Reads the header of `file`; returns the source and the variable
    /// column names, in record order.
    pub(super) fn open(file: File, path: &Path) -> Result<(CsvSource, Vec<String>), ListError> {
        let meta = file.metadata().ok();
        let seekable = meta.as_ref().is_some_and(|m| m.file_type().is_file());
        let capped = Capped {
            file,
            since: 0,
            cap: if seekable { MAX_RECORD } else { u64::MAX },
            stream: (!seekable).then(StreamQuotes::default),
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
            len: meta.map_or(0, |m| m.len()),
            start: csv::Position::new(),
            raw: Vec::new(),
        };
        Ok((source, columns))
    }

    /// The next item; `row` counts data rows.
    pub(super) fn next(&mut self, row: &mut u32, path: &Path) -> Result<Option<Item>, ListError> {
        // where the record begins (by the parser's count; see
        // `place_rejected`)
        self.start = self.reader.position().clone();
        let line = self.start.line();
        self.reader.get_mut().since = 0;
        let (item, bad) = match self.reader.read_record(&mut self.record) {
            Ok(false) => return Ok(None),
            Ok(true) => {
                *row += 1;
                match self.stray_quote().map_err(|e| read_err(path, e))? {
                    Some(stray) => (reject(line, *row, stray.reason()), Some(Bad::Malformed)),
                    None => (self.make_row(*row), None),
                }
            }
            Err(e) => {
                *row += 1;
                let (reason, bad) = match e.kind() {
                    csv::ErrorKind::Io(io)
                        if io.get_ref().is_some_and(|x| x.is::<RecordTooLong>()) =>
                    {
                        (String::new(), Bad::TooLong)
                    }
                    csv::ErrorKind::Io(_) => return Err(read_err(path, e)),
                    csv::ErrorKind::UnequalLengths {
                        expected_len, len, ..
                    } => (
                        format!("row has {len} fields; the header has {expected_len}"),
                        Bad::Malformed,
                    ),
                    _ => (format!("malformed CSV row: {e}"), Bad::Content),
                };
                (reject(line, *row, &reason), Some(bad))
            }
        };
        let Item::Rejected(mut r) = item else {
            return Ok(Some(item));
        };
        let bad = bad.unwrap_or(Bad::Content);
        let placed = if self.seekable {
            place_rejected(&mut self.reader, &self.start, &mut r, bad)
                .map_err(|e| read_err(path, e))?
        } else {
            Placed::AsParsed
        };
        match (bad, placed) {
            (Bad::TooLong, Placed::LongLine) => {
                r.reason = format!("line is over {MAX_RECORD} bytes, the limit for a row")
            }
            (Bad::TooLong, _) => {
                r.reason = format!(
                    "row runs over several lines past {MAX_RECORD} bytes, the limit for a row (a quoted field never closed?); the lines after its first are read as rows"
                )
            }
            (_, Placed::ReadOn) => r.reason.push_str(
                "; it ran over several lines: the lines after its first are read as rows",
            ),
            (Bad::Malformed, _) if !self.seekable => r.reason.push_str(
                "; the list is not a regular file, so lines it ran over cannot be read again",
            ),
            _ => {}
        }
        Ok(Some(Item::Rejected(r)))
    }

    /// The list file, to find rows' lines in ([`line_at`]); `None` when
    /// it cannot be read twice.
    pub(super) fn file(&self) -> std::io::Result<Option<File>> {
        if !self.seekable {
            return Ok(None);
        }
        self.reader.get_ref().file.try_clone().map(Some)
    }

    fn make_row(&self, row: u32) -> Item {
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
        let start = Start {
            byte: self.start.byte(),
            line: self.start.line(),
        };
        make_row(start, row, email, vars)
    }

    /// Whether a stray quote spoiled the record just parsed (with the right
    /// field count): only a record with a line end in a field, or one that
    /// ended with the file, can be spoiled, and only those are checked.
    fn stray_quote(&mut self) -> std::io::Result<Option<Stray>> {
        let (start, end) = (self.start.byte(), self.reader.position().byte());
        let capped = self.reader.get_mut();
        if let Some(stream) = &mut capped.stream {
            return Ok(stream.check_record(start, end));
        }
        let fields = self.record.as_slice().as_bytes();
        if memchr::memchr2(b'\n', b'\r', fields).is_none() && end < self.len {
            return Ok(None);
        }
        let len = usize::try_from(end.saturating_sub(start)).unwrap_or(usize::MAX);
        self.raw.resize(len.min(2 * MAX_RECORD as usize), 0);
        let n = read_full_at(&capped.file, &mut self.raw, start)?;
        Ok(Quotes::check_record(&self.raw[..n]))
    }
}

fn reject(line: u64, row: u32, reason: &str) -> Item {
    Item::Rejected(Rejection {
        line,
        row,
        reason: reason.to_string(),
    })
}

mod place;
