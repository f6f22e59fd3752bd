//! Notification sinks: where events go. A sink is a trait so that webhook or
//! broker sinks can be added; the JSONL file sink is the embedded default.
//!
//! The pump calls `publish` with a batch and advances its journal cursor
//! only after `publish` returns Ok, so a sink must make the batch durable
//! before returning (at-least-once). Exposure: none (output only).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::model::Event;

/// A sink failed to take a batch.
#[derive(Debug, thiserror::Error)]
#[error("sink {sink}: {message}")]
pub struct SinkError {
    pub sink: String,
    pub message: String,
}

/// Receives SES-format events.
///
/// The pump stores, with its journal cursor, the sink's [`state`] after each
/// batch; after a crash it calls [`resume`] with the state stored with the
/// cursor before publishing again from there. A sink that can undo output
/// written after that state (the JSONL file truncates to it) publishes each
/// event exactly once; others get at-least-once.
///
/// [`state`]: NotificationSink::state
/// [`resume`]: NotificationSink::resume
pub trait NotificationSink: Send {
    /// Stable name (also the name of its journal cursor).
    fn name(&self) -> &str;
    /// Durably accepts a batch of events, in order.
    fn publish(&mut self, events: &[Event]) -> Result<(), SinkError>;
    /// The sink's position after the last accepted batch.
    fn state(&self) -> u64 {
        0
    }
    /// Returns to `state` (from the stored cursor) before publishing again.
    fn resume(&mut self, _state: u64) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Appends one JSON event per line to a file, fsync'd per batch. Its state
/// is the file length, so after a crash it truncates lines written after
/// the last stored cursor and every event appears exactly once.
pub struct JsonlSink {
    path: PathBuf,
    out: BufWriter<File>,
    len: u64,
}

impl JsonlSink {
    pub fn open(path: &Path) -> Result<JsonlSink, SinkError> {
        let err = |e: std::io::Error| SinkError {
            sink: "jsonl".into(),
            message: format!("{}: {e}", path.display()),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(err)?;
        let len = f.metadata().map_err(err)?.len();
        Ok(JsonlSink {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(1 << 20, f),
            len,
        })
    }

    fn write_batch(&mut self, events: &[Event]) -> Result<(), SinkError> {
        let mut line = Vec::with_capacity(2048);
        for e in events {
            line.clear();
            serde_json::to_writer(&mut line, e).map_err(|e| self.err(e))?;
            line.push(b'\n');
            self.out.write_all(&line).map_err(|e| self.err(e))?;
            self.len += line.len() as u64;
        }
        self.out.flush().map_err(|e| self.err(e))?;
        self.out.get_ref().sync_data().map_err(|e| self.err(e))
    }

    /// Throws away buffered lines and cuts the file back to `len`.
    fn rollback(&mut self, len: u64) {
        match self.out.get_ref().try_clone() {
            Ok(file) => {
                let old = std::mem::replace(&mut self.out, BufWriter::with_capacity(1 << 20, file));
                let (_, _discarded) = old.into_parts();
                if let Err(e) = self.out.get_ref().set_len(len) {
                    tracing::error!(path = %self.path.display(), error = %e, "cannot cut a failed batch from the event file");
                }
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "cannot roll back the event file")
            }
        }
        self.len = len;
    }

    fn err(&self, e: impl std::fmt::Display) -> SinkError {
        SinkError {
            sink: "jsonl".into(),
            message: format!("{}: {e}", self.path.display()),
        }
    }
}

impl NotificationSink for JsonlSink {
    fn name(&self) -> &str {
        "jsonl"
    }

    fn publish(&mut self, events: &[Event]) -> Result<(), SinkError> {
        let start = self.len;
        let written = self.write_batch(events);
        if written.is_err() {
            // nothing of a failed batch may stay: it is published again
            self.rollback(start);
        }
        written
    }

    fn state(&self) -> u64 {
        self.len
    }

    fn resume(&mut self, state: u64) -> Result<(), SinkError> {
        self.out.flush().map_err(|e| self.err(e))?;
        let len = self
            .out
            .get_ref()
            .metadata()
            .map_err(|e| self.err(e))?
            .len();
        if len > state {
            // lines published after the stored cursor: they come again
            self.out.get_ref().set_len(state).map_err(|e| self.err(e))?;
            self.out.get_ref().sync_data().map_err(|e| self.err(e))?;
            tracing::info!(
                path = %self.path.display(),
                removed_bytes = len - state,
                "removed events published after the last cursor; publishing them again"
            );
        } else if len < state {
            tracing::warn!(path = %self.path.display(), "event file is shorter than when last published to (rotated?); appending");
        }
        self.len = len.min(state);
        Ok(())
    }
}
