//! Notification sinks: where events go. A sink is a trait so that webhook or
//! broker sinks can be added; the JSONL file sink is the embedded default.
//!
//! The pump calls `publish` with a batch and advances its journal cursor
//! only after `publish` returns Ok, so a sink must make the batch durable
//! before returning (at-least-once). The JSONL sink makes a file it creates
//! (and any directory it creates for it) durable in its directory before it
//! writes to it, so a crash cannot lose the file its cursor counts on.
//! Exposure: none (output only).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use volley_spool::pagecache::{let_go, page_start, write_out};

use super::json::Lines;
use super::model::Event;

pub mod rotation;

pub use rotation::Rotation;
use rotation::State;

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
/// is the file's generation and length ([`rotation`]), so after a crash it
/// truncates lines written after the last stored cursor and every event
/// appears exactly once, across rotations too.
///
/// The file is written once and never read back here: its pages are let
/// go from the page cache ([`let_go`]) as it is written, so an event log
/// of many gigabytes does not crowd out the spool and the journal. Within
/// a batch, the writeback of each [`WRITE_BEHIND`] bytes written is
/// started at once ([`write_out`]) and they are let go one step later
/// (written out by then), so the next lines' writes reuse memory just
/// freed and still in the processor's caches (a batch of a busy second
/// is tens of megabytes); the batch as a whole is then made durable with
/// one fdatasync, as before.
pub struct JsonlSink {
    /// Its cursor's name: `jsonl` for the `[events] jsonl` file.
    name: String,
    path: PathBuf,
    out: BufWriter<File>,
    len: u64,
    lines: Lines,
    rotation: Rotation,
    /// The live file's generation (rotations so far).
    generation: u64,
    /// The live file's pages before this offset were let go.
    uncached: u64,
    /// The writeback of the live file's pages before this offset was
    /// started (this batch's write-behind).
    started: u64,
}

/// Bytes of a batch written out and let go from the page cache together.
pub const WRITE_BEHIND: u64 = 1 << 20;

/// Makes a directory's entries durable (fsync of the directory).
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory holding `path` (`.` for a bare file name).
fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Creates `dir` and its missing ancestors, each made durable in its
/// parent with `sync`.
fn create_dirs(dir: &Path, sync: &dyn Fn(&Path) -> io::Result<()>) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(up) = dir.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_dirs(up, sync)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => sync(parent(dir)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

impl JsonlSink {
    pub fn open(path: &Path) -> Result<JsonlSink, SinkError> {
        JsonlSink::open_syncing(path, &sync_dir)
    }

    /// [`JsonlSink::open`] for a sink whose cursor is `name`, rotating
    /// the file as `rotation` says.
    pub fn open_rotating(
        path: &Path,
        name: &str,
        rotation: Rotation,
    ) -> Result<JsonlSink, SinkError> {
        let mut sink = JsonlSink::open(path)?;
        sink.name = name.to_string();
        sink.rotation = rotation;
        Ok(sink)
    }

    /// [`JsonlSink::open`], making new directory entries durable with
    /// `sync` (the tests watch it).
    fn open_syncing(
        path: &Path,
        sync: &dyn Fn(&Path) -> io::Result<()>,
    ) -> Result<JsonlSink, SinkError> {
        let err = |e: std::io::Error| SinkError {
            sink: "jsonl".into(),
            message: format!("{}: {e}", path.display()),
        };
        create_dirs(parent(path), sync).map_err(err)?;
        let f = match OpenOptions::new().create_new(true).append(true).open(path) {
            // a new file: durable in its directory before any event is in it
            Ok(f) => {
                sync(parent(path)).map_err(err)?;
                f
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                OpenOptions::new().append(true).open(path).map_err(err)?
            }
            Err(e) => return Err(err(e)),
        };
        let len = f.metadata().map_err(err)?.len();
        Ok(JsonlSink {
            name: "jsonl".into(),
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(1 << 20, f),
            len,
            lines: Lines::default(),
            rotation: Rotation::OFF,
            generation: rotation::live_generation(path),
            uncached: 0,
            started: 0,
        })
    }

    /// Renames the full file to its rotated name and starts a new one,
    /// each step durable in the directory; drops rotated files beyond
    /// `keep`.
    fn rotate(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(|e| self.err(e))?;
        let dir = parent(&self.path).to_path_buf();
        let old = rotation::rotated(&self.path, self.generation);
        std::fs::rename(&self.path, &old).map_err(|e| self.err(e))?;
        sync_dir(&dir).map_err(|e| self.err(e))?;
        let f = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| self.err(e))?;
        sync_dir(&dir).map_err(|e| self.err(e))?;
        self.out = BufWriter::with_capacity(1 << 20, f);
        self.generation += 1;
        self.len = 0;
        self.uncached = 0;
        self.started = 0;
        rotation::prune(&self.path, self.rotation.keep);
        tracing::info!(file = %old.display(), "rotated the event file");
        Ok(())
    }

    fn write_batch(&mut self, events: &[Event]) -> Result<(), SinkError> {
        let mut line = Vec::with_capacity(2048);
        for e in events {
            line.clear();
            self.lines.write(e, &mut line).map_err(|e| self.err(e))?;
            self.out.write_all(&line).map_err(|e| self.err(e))?;
            self.len += line.len() as u64;
            if self.len - self.started.max(self.uncached) >= WRITE_BEHIND {
                self.write_behind().map_err(|e| self.err(e))?;
            }
        }
        self.out.flush().map_err(|e| self.err(e))?;
        self.out.get_ref().sync_data().map_err(|e| self.err(e))?;
        self.uncached = let_go(self.out.get_ref(), self.uncached, self.len);
        Ok(())
    }

    /// Lets go of the pages whose writeback the last call started (waiting
    /// for it to end, if it has not), and starts the writeback of those
    /// written since.
    fn write_behind(&mut self) -> io::Result<()> {
        self.out.flush()?;
        let file = self.out.get_ref();
        if self.started > self.uncached && write_out(file, self.uncached, self.started, true) {
            self.uncached = let_go(file, self.uncached, self.started);
        }
        let to = page_start(self.len);
        let from = self.started.max(self.uncached);
        if to > from && write_out(file, from, to, false) {
            self.started = to;
        }
        Ok(())
    }

    /// After the file was cut back to `len`: the pages from the one holding
    /// its end on are cached and written again.
    fn cut_back(&mut self) {
        let end = page_start(self.len);
        self.uncached = self.uncached.min(end);
        self.started = self.started.min(end);
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
        self.cut_back();
    }

    fn err(&self, e: impl std::fmt::Display) -> SinkError {
        SinkError {
            sink: self.name.clone(),
            message: format!("{}: {e}", self.path.display()),
        }
    }
}

impl NotificationSink for JsonlSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn publish(&mut self, events: &[Event]) -> Result<(), SinkError> {
        let r = self.rotation.rotate_bytes;
        if r > 0 && self.len >= r {
            self.rotate()?;
        }
        let start = self.len;
        let written = self.write_batch(events);
        if written.is_err() {
            // nothing of a failed batch may stay: it is published again
            self.rollback(start);
        }
        written
    }

    fn state(&self) -> u64 {
        State {
            generation: self.generation,
            len: self.len,
        }
        .encode()
    }

    fn resume(&mut self, state: u64) -> Result<(), SinkError> {
        self.out.flush().map_err(|e| self.err(e))?;
        let len = self
            .out
            .get_ref()
            .metadata()
            .map_err(|e| self.err(e))?
            .len();
        let stored = State::decode(state);
        match rotation::resume_len(stored, self.generation, len) {
            Some(cut) if cut < len => {
                // lines published after the stored cursor: they come again
                self.out.get_ref().set_len(cut).map_err(|e| self.err(e))?;
                self.out.get_ref().sync_data().map_err(|e| self.err(e))?;
                tracing::info!(
                    path = %self.path.display(),
                    removed_bytes = len - cut,
                    "removed events published after the last cursor; publishing them again"
                );
                self.len = cut;
            }
            Some(_) if len < stored.len && stored.generation == self.generation => {
                tracing::warn!(path = %self.path.display(), "event file is shorter than when last published to; appending");
                self.len = len;
            }
            Some(_) => self.len = len,
            None => {
                tracing::warn!(
                    path = %self.path.display(),
                    stored = stored.generation,
                    live = self.generation,
                    "the event file's rotations do not match its cursor (files moved or removed?); appending"
                );
                self.len = len;
            }
        }
        self.cut_back();
        Ok(())
    }
}

#[cfg(test)]
mod tests;
