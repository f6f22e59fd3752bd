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
    /// Line in the file (1-based).
    pub line: u64,
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
                let line = reader.position().line();
                match reader.read_record(record) {
                    Ok(false) => Ok(None),
                    Ok(true) => {
                        self.row += 1;
                        let line = record.position().map_or(line, |p| p.line());
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
                        Ok(Some(make_row(line, self.row, email, vars)))
                    }
                    Err(e) => {
                        let line = e.position().map_or(line, |p| p.line());
                        match e.kind() {
                            csv::ErrorKind::Io(_) => Err(read_err(&path, e)),
                            csv::ErrorKind::UnequalLengths {
                                expected_len, len, ..
                            } => {
                                self.row += 1;
                                Ok(Some(Item::Rejected(Rejection {
                                    line,
                                    row: self.row,
                                    reason: format!(
                                        "row has {len} fields; the header has {expected_len}"
                                    ),
                                })))
                            }
                            _ => {
                                self.row += 1;
                                Ok(Some(Item::Rejected(Rejection {
                                    line,
                                    row: self.row,
                                    reason: format!("malformed CSV row: {e}"),
                                })))
                            }
                        }
                    }
                }
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
            line,
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
mod tests {
    use super::*;

    fn write(name: &str, text: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(name);
        std::fs::write(&p, text).unwrap();
        (d, p)
    }

    #[test]
    fn csv_rows_and_rejections_name_lines() {
        let (_d, p) = write(
            "r.csv",
            b"name,email,city\nAda,ada@x.test,London\nBad,no-at-sign,Paris\nShort,s@x.test\n\"Multi\nline\",m@x.test,Rome\nEve,eve@y.test,\xff\n",
        );
        let mut r = ListReader::open(&p).unwrap();
        assert_eq!(r.columns, vec!["name", "city"]);
        let items = r.next_batch(100).unwrap();
        assert_eq!(items.len(), 5, "{items:?}");
        let Item::Row(a) = &items[0] else { panic!() };
        assert_eq!((a.line, a.row, a.email.as_str()), (2, 1, "ada@x.test"));
        assert_eq!(
            Vars::decode(&a.vars).unwrap(),
            Vars::Columns(vec!["Ada", "London"])
        );
        let Item::Rejected(b) = &items[1] else {
            panic!()
        };
        assert_eq!(b.line, 3);
        assert!(b.reason.contains("invalid address"), "{}", b.reason);
        let Item::Rejected(c) = &items[2] else {
            panic!()
        };
        assert_eq!(c.line, 4);
        assert!(c.reason.contains("2 fields"), "{}", c.reason);
        let Item::Row(m) = &items[3] else { panic!() };
        assert_eq!(m.line, 5);
        let Item::Rejected(e) = &items[4] else {
            panic!("{:?}", items[4])
        };
        assert_eq!(e.line, 7);
        assert!(r.next_batch(10).unwrap().is_empty());
    }

    #[test]
    fn csv_without_email_column() {
        let (_d, p) = write("r.csv", b"name,mail\na,b@c.test\n");
        assert!(matches!(
            ListReader::open(&p),
            Err(ListError::NoEmail { .. })
        ));
    }

    #[test]
    fn overlong_json_line_is_rejected_and_reading_goes_on() {
        let mut text = b"{\"email\":\"a@x.test\"}\r\n{\"email\":\"".to_vec();
        text.extend(std::iter::repeat_n(b'x', MAX_LINE * 3));
        text.extend_from_slice(b"\"}\n{\"email\":\"b@y.test\"}\n{\"email\":\"c@z.test\"}");
        let (_d, p) = write("r.jsonl", &text);
        let mut r = ListReader::open(&p).unwrap();
        let items = r.next_batch(100).unwrap();
        assert_eq!(items.len(), 4, "{items:?}");
        assert!(matches!(&items[0], Item::Row(r) if r.email == "a@x.test"));
        assert!(
            matches!(&items[1], Item::Rejected(r) if r.line == 2 && r.reason.contains("longer than"))
        );
        assert!(matches!(&items[2], Item::Row(r) if r.line == 3 && r.email == "b@y.test"));
        // the last line has no newline
        assert!(matches!(&items[3], Item::Row(r) if r.line == 4 && r.email == "c@z.test"));
    }

    #[test]
    fn jsonl_rows() {
        let (_d, p) = write(
            "r.jsonl",
            b"{\"email\":\"a@x.test\",\"vars\":{\"n\":{\"first\":\"A\"}}}\n\n{\"mail\":\"x\"}\nnot json\n{\"email\":\"b@y.test\"}\n",
        );
        let mut r = ListReader::open(&p).unwrap();
        let items = r.next_batch(100).unwrap();
        assert_eq!(items.len(), 4);
        assert!(
            matches!(&items[0], Item::Row(r) if Vars::decode(&r.vars).unwrap() == Vars::Json("{\"n\":{\"first\":\"A\"}}"))
        );
        assert!(matches!(&items[1], Item::Rejected(r) if r.line == 3));
        assert!(matches!(&items[2], Item::Rejected(r) if r.line == 4));
        assert!(matches!(&items[3], Item::Row(r) if r.line == 5 && r.row == 4));
    }
}
