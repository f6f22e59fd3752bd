//! Recipient lists: CSV with a header row that includes `email` (every other
//! column is a template variable), or JSON lines `{"email": ..., "vars": {...}}`.
//!
//! Yields rows in batches; a bad row (wrong field count, a stray quote,
//! invalid UTF-8 or JSON, invalid address, too large) is a [`Rejection`]
//! naming its line and the reason, and reading goes on. Only an unreadable
//! file or a header without `email` stops the list. A row's exact line is
//! found only when asked for ([`Locator`]: the CSV parser's count can be
//! short). Exposure: list files are untrusted input.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::address;
use csv_source::CsvSource;
use jsonl_source::JsonlSource;

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
    /// Where reading the row began; its line: [`Locator::line`].
    pub start: Start,
}

/// Where reading a row began: the byte, and the line by the parser's count
/// (exact for JSON lines; for CSV it can be short by the line ends and
/// blank lines before the row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    pub byte: u64,
    pub line: u64,
}

/// Finds the exact line of a row (reading a few bytes of a CSV file again).
pub struct Locator {
    /// The CSV file (`None`: JSON lines, whose lines are exact, or a list
    /// that cannot be read twice).
    file: Option<File>,
}

impl Locator {
    /// The line `start` really is on (the parser's count if the file cannot
    /// be read again).
    pub fn line(&self, start: Start) -> u64 {
        match &self.file {
            Some(file) => csv_source::line_at(file, start).unwrap_or(start.line),
            None => start.line,
        }
    }
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
    Csv(CsvSource),
    Jsonl(JsonlSource),
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
        let (source, columns) = if ext == "jsonl" || ext == "ndjson" {
            (Source::Jsonl(JsonlSource::new(file)), Vec::new())
        } else {
            let (csv, columns) = CsvSource::open(file, path)?;
            (Source::Csv(csv), columns)
        };
        Ok(ListReader {
            path: path.to_path_buf(),
            source,
            columns,
            row: 0,
        })
    }

    /// Finds the exact lines of this list's rows.
    pub fn locator(&self) -> Result<Locator, ListError> {
        let file = match &self.source {
            Source::Csv(s) => s.file().map_err(|e| read_err(&self.path, e))?,
            Source::Jsonl(_) => None,
        };
        Ok(Locator { file })
    }

    /// Reads up to `max` items; an empty batch means the end of the list.
    pub fn next_batch(&mut self, max: usize) -> Result<Vec<Item>, ListError> {
        self.next_batch_within(max, usize::MAX)
    }

    /// Reads up to `max` items, ending the batch early once its rows hold
    /// `max_bytes` of addresses and variables (at least one item is read):
    /// a list of long rows is handed on in batches of bounded memory.
    pub fn next_batch_within(
        &mut self,
        max: usize,
        max_bytes: usize,
    ) -> Result<Vec<Item>, ListError> {
        let mut out = Vec::with_capacity(max.min(65536));
        let mut bytes = 0usize;
        while out.len() < max && bytes < max_bytes {
            let item = match &mut self.source {
                Source::Csv(s) => s.next(&mut self.row, &self.path)?,
                Source::Jsonl(s) => s.next(&mut self.row, &self.path)?,
            };
            match item {
                Some(item) => {
                    if let Item::Row(r) = &item {
                        bytes += r.email.len() + r.vars.len();
                    }
                    out.push(item)
                }
                None => break,
            }
        }
        Ok(out)
    }
}

fn make_row(start: Start, row: u32, email: &str, vars: Vec<u8>) -> Item {
    let line = start.line;
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
            start,
        }),
        Err(reason) => Item::Rejected(Rejection {
            line,
            row,
            reason: format!("invalid address {email:?}: {reason}"),
        }),
    }
}

mod csv_source;
mod jsonl_source;
mod quotes;
#[cfg(test)]
mod tests;
