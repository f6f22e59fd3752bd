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
pub trait NotificationSink: Send {
    /// Stable name (also the name of its journal cursor).
    fn name(&self) -> &str;
    /// Durably accepts a batch of events, in order.
    fn publish(&mut self, events: &[Event]) -> Result<(), SinkError>;
}

/// Appends one JSON event per line to a file, fsync'd per batch.
pub struct JsonlSink {
    path: PathBuf,
    out: BufWriter<File>,
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
        Ok(JsonlSink {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(1 << 20, f),
        })
    }
}

impl NotificationSink for JsonlSink {
    fn name(&self) -> &str {
        "jsonl"
    }

    fn publish(&mut self, events: &[Event]) -> Result<(), SinkError> {
        let err = |e: String| SinkError {
            sink: "jsonl".into(),
            message: format!("{}: {e}", self.path.display()),
        };
        for e in events {
            serde_json::to_writer(&mut self.out, e).map_err(|e| err(e.to_string()))?;
            self.out.write_all(b"\n").map_err(|e| err(e.to_string()))?;
        }
        self.out.flush().map_err(|e| err(e.to_string()))?;
        self.out
            .get_ref()
            .sync_data()
            .map_err(|e| err(e.to_string()))
    }
}
