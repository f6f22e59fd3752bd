//! Recipient lists: CSV with a header row that includes `email` (every other
//! column is a template variable), or JSON lines `{"email": ..., "vars": {...}}`.
//!
//! Yields rows in batches; a bad row (wrong field count, a stray quote,
//! invalid UTF-8 or JSON, invalid address, too large) is a [`Rejection`]
//! naming its line and the reason, and reading goes on. A row whose address
//! an earlier row of the list had (ignoring ASCII case, see [`seen`]) is a
//! [`Item::Duplicate`] naming its line. Only an unreadable file or a header
//! without `email` stops the list. Exposure: list files are untrusted input.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::address;
use csv_source::CsvSource;
use jsonl_source::JsonlSource;
use seen::AddressSet;

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

/// A row whose address an earlier row had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    pub line: u64,
    pub row: u32,
    /// The address as this row has it.
    pub email: String,
}

/// One item of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Row(Row),
    Rejected(Rejection),
    Duplicate(Duplicate),
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
    /// Addresses of the rows so far (`None`: duplicates are not looked
    /// for).
    seen: Option<AddressSet>,
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
            seen: Some(AddressSet::new()),
        })
    }

    /// Yields duplicates as rows (only for measuring what looking for them
    /// costs: a campaign sends once per address).
    pub fn keep_duplicates(mut self) -> ListReader {
        self.seen = None;
        self
    }

    /// Heap bytes held to find duplicates.
    pub fn seen_bytes(&self) -> usize {
        self.seen.as_ref().map_or(0, AddressSet::heap_bytes)
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
        let item = match &mut self.source {
            Source::Csv(s) => s.next(&mut self.row, &self.path)?,
            Source::Jsonl(s) => s.next(&mut self.row, &self.path)?,
        };
        let Some(Item::Row(r)) = item else {
            return Ok(item);
        };
        if self.seen.as_mut().is_none_or(|seen| seen.insert(&r.email)) {
            return Ok(Some(Item::Row(r)));
        }
        let line = match &mut self.source {
            Source::Csv(s) => s.last_line().map_err(|e| read_err(&self.path, e))?,
            Source::Jsonl(s) => s.last_line(),
        };
        Ok(Some(Item::Duplicate(Duplicate {
            line,
            row: r.row,
            email: r.email,
        })))
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

mod csv_source;
mod jsonl_source;
mod quotes;
pub mod seen;
#[cfg(test)]
mod tests;
