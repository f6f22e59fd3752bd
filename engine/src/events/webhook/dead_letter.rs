//! A destination's dead-letter file: events its endpoint refused for good,
//! one JSON object per line with the reason, when, the event's id and the
//! SES event itself. Written and fsync'd before the events count as done,
//! so a refused event is either retried or in this file. Exposure: none
//! (output only).

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::events::id::EventKey;
use crate::metrics::DestinationMetrics;

/// An event refused for good.
pub struct Refused<'a> {
    pub key: EventKey,
    pub message_id: &'a str,
    pub reason: &'a str,
    /// The SES event JSON.
    pub event: &'a [u8],
}

/// Appends refused events to a file.
pub struct DeadLetter {
    path: PathBuf,
    destination: String,
    file: Option<File>,
}

impl DeadLetter {
    /// A dead-letter file at `path` (created when first needed).
    pub fn new(path: &Path, destination: &str) -> DeadLetter {
        DeadLetter {
            path: path.to_path_buf(),
            destination: destination.to_string(),
            file: None,
        }
    }

    fn file(&mut self) -> std::io::Result<&mut File> {
        if self.file.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir)?.sync_all()?;
            }
            self.file = Some(f);
        }
        Ok(self.file.as_mut().expect("opened above"))
    }

    /// Settles `refused`: written durably, counted in `dead_lettered`,
    /// logged once with the first reason, and marked in `done`; nothing of
    /// that when the file cannot be written (they are tried again).
    pub fn settle(
        &mut self,
        refused: &[Refused<'_>],
        counts: &DestinationMetrics,
        done: &mut HashSet<EventKey>,
    ) -> Result<(), String> {
        let Some(first) = refused.first() else {
            return Ok(());
        };
        self.write(
            refused,
            &crate::events::model::timestamp(volley_spool::now_ms()),
        )?;
        tracing::warn!(destination = %self.destination, events = refused.len(), reason = %first.reason, "events refused for good; written to the dead-letter file");
        counts.dead_lettered.inc_by(refused.len() as u64);
        done.extend(refused.iter().map(|r| r.key));
        Ok(())
    }

    /// Writes `refused` durably (one fsync).
    pub fn write(&mut self, refused: &[Refused<'_>], at: &str) -> Result<(), String> {
        if refused.is_empty() {
            return Ok(());
        }
        let mut out = Vec::new();
        for r in refused {
            out.extend_from_slice(b"{\"deadLetteredAt\":");
            let _ = serde_json::to_writer(&mut out, at);
            out.extend_from_slice(b",\"destination\":");
            let _ = serde_json::to_writer(&mut out, &self.destination);
            out.extend_from_slice(b",\"messageId\":");
            let _ = serde_json::to_writer(&mut out, r.message_id);
            out.extend_from_slice(b",\"reason\":");
            let _ = serde_json::to_writer(&mut out, r.reason);
            out.extend_from_slice(b",\"event\":");
            out.extend_from_slice(r.event);
            out.extend_from_slice(b"}\n");
        }
        let path = self.path.display().to_string();
        let written = self
            .file()
            .and_then(|f| f.write_all(&out).and_then(|()| f.sync_data()));
        written.map_err(|e| {
            // reopen next time (the file may be gone or the disk full)
            self.file = None;
            format!("dead-letter file {path}: {e}")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_events_are_lines_with_their_reason() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("dl/main.hook.jsonl");
        let mut dl = DeadLetter::new(&path, "main.hook");
        dl.write(&[], "t").unwrap();
        assert!(!path.exists(), "nothing refused, no file");
        let refused = [Refused {
            key: EventKey::default(),
            message_id: "id-1",
            reason: "HTTP 400",
            event: b"{\"eventType\":\"Bounce\"}",
        }];
        dl.write(&refused, "2026-12-01T00:00:00.000Z").unwrap();
        dl.write(&refused, "2026-12-01T00:00:01.000Z").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["reason"], "HTTP 400");
        assert_eq!(lines[0]["messageId"], "id-1");
        assert_eq!(lines[0]["destination"], "main.hook");
        assert_eq!(lines[0]["event"]["eventType"], "Bounce");
    }
}
