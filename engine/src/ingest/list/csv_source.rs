//! CSV recipient lists: a header row that includes `email`, every other
//! column a variable. A malformed record that ran over several lines (a
//! stray quote) costs only its own row: reading goes on from its second
//! line (see [`place_rejected`]).

use std::fs::File;
use std::path::Path;

use volley_spool::Vars;

use super::{Item, ListError, Rejection, make_row, read_err};

/// An open CSV list, past its header.
pub(super) struct CsvSource {
    reader: csv::Reader<File>,
    email_col: usize,
    record: csv::StringRecord,
}

impl CsvSource {
    /// Reads the header of `file`; returns the source and the variable
    /// column names, in record order.
    pub(super) fn open(file: File, path: &Path) -> Result<(CsvSource, Vec<String>), ListError> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .buffer_capacity(1 << 20)
            .from_reader(file);
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
        };
        Ok((source, columns))
    }

    /// The next item; `row` counts data rows.
    pub(super) fn next(&mut self, row: &mut u32, path: &Path) -> Result<Option<Item>, ListError> {
        // where the record begins (by the parser's count; see
        // `place_rejected`)
        let mut start = self.reader.position().clone();
        // the record's CSV structure is wrong (not its content)
        let mut malformed = false;
        let mut item = match self.reader.read_record(&mut self.record) {
            Ok(false) => return Ok(None),
            Ok(true) => {
                *row += 1;
                if let Some(p) = self.record.position() {
                    start = p.clone();
                }
                let line = start.line();
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
                if let Some(p) = e.position() {
                    start = p.clone();
                }
                let line = start.line();
                malformed = true;
                match e.kind() {
                    csv::ErrorKind::Io(_) => return Err(read_err(path, e)),
                    csv::ErrorKind::UnequalLengths {
                        expected_len, len, ..
                    } => {
                        *row += 1;
                        Item::Rejected(Rejection {
                            line,
                            row: *row,
                            reason: format!("row has {len} fields; the header has {expected_len}"),
                        })
                    }
                    _ => {
                        *row += 1;
                        Item::Rejected(Rejection {
                            line,
                            row: *row,
                            reason: format!("malformed CSV row: {e}"),
                        })
                    }
                }
            }
        };
        if let Item::Rejected(r) = &mut item
            && place_rejected(&mut self.reader, &start, r, malformed)
                .map_err(|e| read_err(path, e))?
        {
            tracing::debug!(
                line = r.line,
                "rejected CSV row ran over several lines; reading again from the next line"
            );
        }
        Ok(Some(item))
    }
}

/// Finds where a rejected CSV record really begins and, when it is
/// `malformed` and ran over several lines, reads on from the line after its
/// first one; returns whether it did. Only rejected rows get here (the
/// record's bytes are read again from the file).
///
/// The parser's record position is taken before the line ends and blank
/// lines in front of the record (with CRLF, the `\n` of the previous line
/// end), so its line number can be short: the rejection's `line` is set from
/// the bytes. A malformed record (wrong field count, invalid UTF-8) running
/// over several lines is most likely a stray quote opening a field that
/// goes on to the next quote, or to the end of the file: it must not take
/// the rows after it along. A well-formed record over several lines that is
/// rejected for its content (an address with a line break in it) stays one
/// row: its lines are not read as rows of their own.
fn place_rejected(
    reader: &mut csv::Reader<File>,
    start: &csv::Position,
    rejection: &mut Rejection,
    malformed: bool,
) -> std::io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let end = reader.position().byte();
    let file = reader.get_ref();
    let mut line = start.line();
    let mut off = start.byte();
    // where the record's first line ends, once its first byte was seen
    let mut in_record = false;
    let mut buf = [0u8; 4096];
    while off < end {
        let want = usize::try_from(end - off).map_or(buf.len(), |n| n.min(buf.len()));
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
                    if !malformed {
                        return Ok(false);
                    }
                    let mut next = at + 1;
                    let mut lf = [0u8; 1];
                    if b == b'\r' && file.read_at(&mut lf, next)? == 1 && lf[0] == b'\n' {
                        next += 1;
                    }
                    if next >= end {
                        // the record ended on its first line
                        return Ok(false);
                    }
                    let mut pos = csv::Position::new();
                    pos.set_byte(next)
                        .set_line(line + 1)
                        .set_record(start.record() + 1);
                    reader.seek(pos).map_err(std::io::Error::other)?;
                    return Ok(true);
                }
                (true, _) => {}
            }
        }
        off += n as u64;
    }
    rejection.line = line;
    Ok(false)
}
