//! The suppression store's typed errors: each names the file and byte
//! offset, the input line, or the offending value (cut to a readable
//! length: values come from hostile CSV files and API requests).

use std::io;
use std::path::PathBuf;

/// Longest part of an offending value quoted in an error.
const QUOTE_MAX: usize = 120;

/// The first [`QUOTE_MAX`] bytes of `value` (on a character boundary).
pub(crate) fn quote(value: &str) -> String {
    if value.len() <= QUOTE_MAX {
        return value.to_string();
    }
    let mut end = QUOTE_MAX;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &value[..end])
}

#[derive(Debug, thiserror::Error)]
pub enum SuppressionError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("invalid email address {value:?}: {why}")]
    InvalidAddress { value: String, why: &'static str },
    #[error("invalid {field} {value:?}: {why}")]
    InvalidField {
        field: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("{} at byte {offset}: {why}", path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        why: String,
    },
    #[error("CSV input line {line}: {source}")]
    Csv { line: u64, source: csv::Error },
    #[error("CSV output: {0}")]
    CsvOut(csv::Error),
    #[error("the compacted list would hold {0} entries; at most 4,294,967,295 are supported")]
    TooMany(u64),
}

impl SuppressionError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> SuppressionError {
        SuppressionError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        offset: u64,
        why: impl Into<String>,
    ) -> SuppressionError {
        SuppressionError::Corrupt {
            path: path.into(),
            offset,
            why: why.into(),
        }
    }
}
