//! Recipient lists: CSV with a header row that includes `email` (every other
//! column is a template variable), or JSON lines `{"email": ..., "vars": {...}}`.
//!
//! Yields rows in batches; a bad row (wrong field count, invalid UTF-8 or
//! JSON, invalid address, too large) is a [`Rejection`] naming its line and
//! the reason, and reading goes on. Only an unreadable file or a header
//! without `email` stops the list. Exposure: list files are untrusted input.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use volley_spool::Vars;

use crate::address;

/// Largest variables of one recipient, in bytes.
pub const MAX_VARS: usize = 60 * 1024;
/// Longest JSON line read (bytes, newline included); longer lines are
/// rejected without being held in memory.
pub const MAX_LINE: usize = 256 * 1024;

/// An accepted row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Data row number (1-based, counting rejected rows too).
    pub row: u32,
    pub email: String,
    /// Variables, encoded for the spool (see `volley_spool::Vars`).
    pub vars: Vec<u8>,
}

/// A row that was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub line: u64,
    pub row: u32,
    pub reason: String,
}

/// One item of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Row(Row),
    Rejected(Rejection),
}

/// A list that cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("cannot read recipient list {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("recipient list {path}: the header row has no `email` column (columns: {columns})")]
    NoEmail { path: PathBuf, columns: String },
}

enum Source {
    Csv {
        reader: csv::Reader<File>,
        email_col: usize,
        record: csv::StringRecord,
    },
    Jsonl {
        reader: BufReader<File>,
        line: u64,
        buf: Vec<u8>,
    },
}

/// Reads a recipient list.
pub struct ListReader {
    path: PathBuf,
    source: Source,
    /// Variable column names, in record order (CSV only).
    pub columns: Vec<String>,
    row: u32,
}

fn read_err(path: &Path, e: impl std::fmt::Display) -> ListError {
    ListError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

impl ListReader {
    /// Opens a list; `.jsonl`/`.ndjson` files are JSON lines, others CSV.
    pub fn open(path: &Path) -> Result<ListReader, ListError> {
        let file = File::open(path).map_err(|e| read_err(path, e))?;
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        if ext == "jsonl" || ext == "ndjson" {
            return Ok(ListReader {
                path: path.to_path_buf(),
                source: Source::Jsonl {
                    reader: BufReader::with_capacity(1 << 20, file),
                    line: 0,
                    buf: Vec::new(),
                },
                columns: Vec::new(),
                row: 0,
            });
        }
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
        Ok(ListReader {
            path: path.to_path_buf(),
            source: Source::Csv {
                reader,
                email_col,
                record: csv::StringRecord::new(),
            },
            columns,
            row: 0,
        })
    }

    /// Reads up to `max` items; an empty batch means the end of the list.
    pub fn next_batch(&mut self, max: usize) -> Result<Vec<Item>, ListError> {
        let mut out = Vec::with_capacity(max.min(65536));
        while out.len() < max {
            match self.next_item()? {
                Some(item) => out.push(item),
                None => break,
            }
        }
        Ok(out)
    }

    fn next_item(&mut self) -> Result<Option<Item>, ListError> {
        let path = self.path.clone();
        match &mut self.source {
            Source::Csv {
                reader,
                email_col,
                record,
            } => {
                // where the record begins (by the parser's count; see
                // `place_rejected`)
                let mut start = reader.position().clone();
                // the record's CSV structure is wrong (not its content)
                let mut malformed = false;
                let mut item = match reader.read_record(record) {
                    Ok(false) => return Ok(None),
                    Ok(true) => {
                        self.row += 1;
                        if let Some(p) = record.position() {
                            start = p.clone();
                        }
                        let line = start.line();
                        let email = record.get(*email_col).unwrap_or("");
                        let col = *email_col;
                        let mut vars = Vec::with_capacity(record.as_slice().len() + record.len());
                        Vars::encode_columns(
                            record
                                .iter()
                                .enumerate()
                                .filter(|(i, _)| *i != col)
                                .map(|(_, v)| v),
                            &mut vars,
                        );
                        make_row(line, self.row, email, vars)
                    }
                    Err(e) => {
                        if let Some(p) = e.position() {
                            start = p.clone();
                        }
                        let line = start.line();
                        malformed = true;
                        match e.kind() {
                            csv::ErrorKind::Io(_) => return Err(read_err(&path, e)),
                            csv::ErrorKind::UnequalLengths {
                                expected_len, len, ..
                            } => {
                                self.row += 1;
                                Item::Rejected(Rejection {
                                    line,
                                    row: self.row,
                                    reason: format!(
                                        "row has {len} fields; the header has {expected_len}"
                                    ),
                                })
                            }
                            _ => {
                                self.row += 1;
                                Item::Rejected(Rejection {
                                    line,
                                    row: self.row,
                                    reason: format!("malformed CSV row: {e}"),
                                })
                            }
                        }
                    }
                };
                if let Item::Rejected(r) = &mut item
                    && place_rejected(reader, &start, r, malformed)
                        .map_err(|e| read_err(&path, e))?
                {
                    tracing::debug!(
                        line = r.line,
                        "rejected CSV row ran over several lines; reading again from the next line"
                    );
                }
                Ok(Some(item))
            }
            Source::Jsonl { reader, line, buf } => loop {
                buf.clear();
                let n = (&mut *reader)
                    .take(MAX_LINE as u64 + 1)
                    .read_until(b'\n', buf)
                    .map_err(|e| read_err(&path, e))?;
                if n == 0 {
                    return Ok(None);
                }
                *line += 1;
                if buf.len() > MAX_LINE {
                    // never hold more than a line's worth: skip the rest
                    skip_line(reader).map_err(|e| read_err(&path, e))?;
                    self.row += 1;
                    return Ok(Some(Item::Rejected(Rejection {
                        line: *line,
                        row: self.row,
                        reason: format!("line is longer than {MAX_LINE} bytes"),
                    })));
                }
                let Ok(text) = std::str::from_utf8(buf) else {
                    self.row += 1;
                    return Ok(Some(Item::Rejected(Rejection {
                        line: *line,
                        row: self.row,
                        reason: "invalid UTF-8".into(),
                    })));
                };
                if text.trim().is_empty() {
                    continue;
                }
                self.row += 1;
                return Ok(Some(json_row(*line, self.row, text.trim_end())));
            },
        }
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

/// Consumes input up to and including the next newline (or the end).
fn skip_line(reader: &mut BufReader<File>) -> std::io::Result<()> {
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok(());
        }
        match chunk.iter().position(|&b| b == b'\n') {
            Some(p) => {
                reader.consume(p + 1);
                return Ok(());
            }
            None => {
                let n = chunk.len();
                reader.consume(n);
            }
        }
    }
}

fn make_row(line: u64, row: u32, email: &str, vars: Vec<u8>) -> Item {
    let vars_size = vars.len();
    if vars_size > MAX_VARS {
        return Item::Rejected(Rejection {
            line,
            row,
            reason: format!("variables take {vars_size} bytes; the limit is {MAX_VARS}"),
        });
    }
    match address::parse(email) {
        Ok(a) => Item::Row(Row {
            row,
            email: a.email,
            vars,
        }),
        Err(reason) => Item::Rejected(Rejection {
            line,
            row,
            reason: format!("invalid address {email:?}: {reason}"),
        }),
    }
}

fn json_row(line: u64, row: u32, text: &str) -> Item {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct JsonRow {
        email: String,
        #[serde(default)]
        vars: Option<serde_json::Map<String, serde_json::Value>>,
    }
    match serde_json::from_str::<JsonRow>(text) {
        Ok(r) => {
            let json =
                serde_json::to_string(&r.vars.unwrap_or_default()).unwrap_or_else(|_| "{}".into());
            let mut vars = Vec::with_capacity(json.len() + 1);
            Vars::encode_json(&json, &mut vars);
            make_row(line, row, &r.email, vars)
        }
        Err(e) => Item::Rejected(Rejection {
            line,
            row,
            reason: format!("not a recipient object {{\"email\": ..., \"vars\": {{...}}}}: {e}"),
        }),
    }
}

#[cfg(test)]
mod tests;
