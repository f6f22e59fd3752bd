//! File names and small file operations of the store's directory.
//!
//! The directory holds `hash.key`, at most one live `base-<gen>` (the
//! compacted entries, sorted by key) and `log-<gen>` (changes since that
//! base was written). Generation 0 has no base file. Anything named
//! `*.tmp` is an interrupted write and is deleted on open. Exposure: the
//! names are read from the directory; only names of this form are used.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::error::SuppressionError;

pub fn base_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("base-{generation:08}"))
}

pub fn log_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("log-{generation:08}"))
}

/// What a directory entry is, by its name.
pub enum Kind {
    Base(u64),
    Log(u64),
    Temp,
    Other,
}

pub fn kind(name: &str) -> Kind {
    if name.ends_with(".tmp") {
        return Kind::Temp;
    }
    let generation = |rest: &str| {
        (rest.len() == 8 && rest.bytes().all(|b| b.is_ascii_digit()))
            .then(|| rest.parse::<u64>().ok())
            .flatten()
    };
    if let Some(g) = name.strip_prefix("base-").and_then(generation) {
        Kind::Base(g)
    } else if let Some(g) = name.strip_prefix("log-").and_then(generation) {
        Kind::Log(g)
    } else {
        Kind::Other
    }
}

/// Makes the directory's entries (created, renamed, deleted files)
/// durable.
pub fn sync_dir(dir: &Path) -> Result<(), SuppressionError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SuppressionError::io(dir, e))
}

/// Reads exactly `buf.len()` bytes at `offset`; a short file is corrupt.
pub fn read_exact_at(
    file: &File,
    path: &Path,
    buf: &mut [u8],
    offset: u64,
) -> Result<(), SuppressionError> {
    file.read_exact_at(buf, offset).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            SuppressionError::corrupt(path, offset, "file ends inside a record")
        } else {
            SuppressionError::io(path, e)
        }
    })
}

/// Deletes `path`, logging (not failing) when it cannot.
pub fn remove_quietly(path: &Path) {
    if let Err(e) = fs::remove_file(path) {
        tracing::warn!(path = %path.display(), error = %e, "cannot delete an old suppression file");
    }
}
