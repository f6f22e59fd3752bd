//! The append-only change log: `VOLSUPL1` then records (see `record`).
//!
//! In: batches of encoded records, appended at the known end and made
//! durable with one fdatasync per batch. Out, on open: every valid record
//! with its offset, in order. A torn or damaged record ends the log: it and
//! everything after it are dropped with a warning naming the file and
//! offset, and the file is truncated there so later appends follow valid
//! data. Exposure: the file may be torn by a crash or damaged.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::error::SuppressionError;
use super::files::read_exact_at;
use super::record::{self, HEADER, Next, Record};

const MAGIC: &[u8; 8] = b"VOLSUPL1";
/// Offset of the first record.
pub const START: u64 = MAGIC.len() as u64;

/// An open log file.
#[derive(Debug)]
pub struct Log {
    pub path: PathBuf,
    pub file: File,
}

impl Log {
    /// Creates an empty log (the caller syncs the directory).
    pub fn create(path: &Path) -> Result<Log, SuppressionError> {
        let io = |e| SuppressionError::io(path, e);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(io)?;
        file.write_all(MAGIC).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(Log {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Opens a log and replays it: `visit(offset, record)` for each valid
    /// record. Returns the log and the end of its valid records.
    pub fn open(
        path: &Path,
        mut visit: impl FnMut(u64, Record),
    ) -> Result<(Log, u64), SuppressionError> {
        let io = |e| SuppressionError::io(path, e);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let mut magic = [0u8; 8];
        let n = len.min(START) as usize;
        read_exact_at(&file, path, &mut magic[..n], 0)?;
        if n < MAGIC.len() && MAGIC.starts_with(&magic[..n]) {
            // Torn while being created: start it again.
            drop(file);
            return Ok((Log::create(path)?, START));
        }
        if &magic != MAGIC {
            return Err(SuppressionError::corrupt(path, 0, "not a suppression log"));
        }
        let mut r = BufReader::with_capacity(1 << 20, &file);
        r.seek(SeekFrom::Start(START)).map_err(io)?;
        let mut offset = START;
        let mut buf = Vec::new();
        loop {
            match record::next_frame(&mut r, &mut buf).map_err(io)? {
                Next::End => break,
                Next::Bad(why) => {
                    tracing::warn!(
                        path = %path.display(),
                        offset,
                        dropped_bytes = len - offset,
                        why,
                        "suppression log: dropping a torn or damaged tail"
                    );
                    break;
                }
                Next::Frame => match record::decode(&buf[HEADER..]) {
                    Ok(rec) => {
                        visit(offset, rec);
                        offset += buf.len() as u64;
                    }
                    Err(why) => {
                        tracing::warn!(path = %path.display(), offset, why,
                            "suppression log: dropping a damaged tail");
                        break;
                    }
                },
            }
        }
        drop(r);
        if offset < len {
            file.set_len(offset).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        let log = Log {
            path: path.to_path_buf(),
            file,
        };
        Ok((log, offset))
    }

    /// Writes `bytes` at `end` and makes them durable.
    pub fn append(&self, end: u64, bytes: &[u8]) -> Result<(), SuppressionError> {
        let io = |e| SuppressionError::io(&self.path, e);
        let r = self
            .file
            .write_all_at(bytes, end)
            .and_then(|_| self.file.sync_data());
        if let Err(e) = r {
            // Best effort: leave no partial batch behind the valid records.
            let _ = self.file.set_len(end);
            return Err(io(e));
        }
        Ok(())
    }

    /// Reads the record at `offset`.
    pub fn read(&self, offset: u64) -> Result<Record, SuppressionError> {
        read_record(&self.file, &self.path, offset)
    }
}

/// Reads and checks one framed record at `offset` of `file`.
pub fn read_record(file: &File, path: &Path, offset: u64) -> Result<Record, SuppressionError> {
    let mut header = [0u8; HEADER];
    read_exact_at(file, path, &mut header, offset)?;
    let len = record::body_len(&header).map_err(|w| SuppressionError::corrupt(path, offset, w))?;
    let mut body = vec![0u8; len];
    read_exact_at(file, path, &mut body, offset + HEADER as u64)?;
    record::check_crc(&header, &body).map_err(|w| SuppressionError::corrupt(path, offset, w))?;
    record::decode(&body).map_err(|w| SuppressionError::corrupt(path, offset, w))
}
