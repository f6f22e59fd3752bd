//! `volley suppression list|get|add|remove|import|export`: the account's
//! suppression list in `<spool>/suppression`.
//!
//! With a running `volley run` (its control socket answers) the operation
//! is done by the service on the list it has open, and what it prints
//! comes back over the socket; otherwise the command takes the spool
//! directory's lock and opens the list itself. Files named (import,
//! export) are read and written by whichever process does the work, so
//! they are passed as absolute paths. Output: CSV (`email,reason,
//! last_update_time,message_id,feedback_id,topic`) on standard output;
//! counts on standard error. Exposure: the CSV file is operator input
//! (bad rows are reported with their line and skipped).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use volley_engine::config::Config;
use volley_engine::feedback::suppression::{Entry, ListFilter, Reason, SuppressionList};

use super::{CliResult, EXIT_BAD_INPUT, EXIT_OK, bad, fail, load_config};

mod args;
mod remote;

pub use args::Action;
use remote::remote;
pub use remote::serve;

/// One operation on the list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum Op {
    List {
        reason: Option<String>,
        since: Option<String>,
        until: Option<String>,
    },
    Get {
        email: String,
    },
    Add {
        emails: Vec<String>,
        reason: String,
        topic: Option<String>,
    },
    Remove {
        emails: Vec<String>,
        topic: Option<String>,
    },
    Import {
        file: PathBuf,
        reason: String,
    },
    Export {
        file: Option<PathBuf>,
    },
}

/// What an operation prints.
pub enum Out {
    /// A line for standard output.
    Stdout(String),
    /// A line for standard error.
    Stderr(String),
}

/// An operation's failure: exit code and message.
pub type Failure = (u8, String);

fn reason(s: &str) -> Result<Reason, Failure> {
    s.parse::<Reason>()
        .map_err(|e| (EXIT_BAD_INPUT, e.to_string()))
}

/// A time given as RFC 3339 or milliseconds since the epoch.
fn time_ms(s: &str) -> Result<u64, Failure> {
    if let Ok(ms) = s.trim().parse::<u64>() {
        return Ok(ms);
    }
    humantime::parse_rfc3339_weak(s.trim())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .ok_or_else(|| {
            (
                EXIT_BAD_INPUT,
                format!("{s:?} is not an RFC 3339 time or milliseconds"),
            )
        })
}

fn csv_line(e: &Entry) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let t = volley_engine::events::model::timestamp(e.at_ms);
    let _ = w.write_record([
        e.email.as_str(),
        e.reason.as_str(),
        t.as_str(),
        e.message_id.as_deref().unwrap_or(""),
        e.feedback_id.as_deref().unwrap_or(""),
        e.topic.as_deref().unwrap_or(""),
    ]);
    let bytes = w.into_inner().unwrap_or_default();
    String::from_utf8_lossy(&bytes).trim_end().to_string()
}

const HEADER: &str = "email,reason,last_update_time,message_id,feedback_id,topic";

/// Performs `op` on `list`, printing through `out`.
pub fn perform(list: &SuppressionList, op: &Op, out: &mut dyn FnMut(Out)) -> Result<(), Failure> {
    let io = |e: volley_engine::feedback::suppression::SuppressionError| {
        (super::EXIT_FAILURE, e.to_string())
    };
    match op {
        Op::List {
            reason: r,
            since,
            until,
        } => {
            let filter = ListFilter {
                reason: r.as_deref().map(reason).transpose()?,
                since_ms: since.as_deref().map(time_ms).transpose()?,
                until_ms: until.as_deref().map(time_ms).transpose()?,
            };
            out(Out::Stdout(HEADER.into()));
            let n = list
                .list(&filter, |e| out(Out::Stdout(csv_line(e))))
                .map_err(io)?;
            out(Out::Stderr(format!("{n} entries")));
        }
        Op::Get { email } => match list.get(email).map_err(io)? {
            Some(e) => {
                out(Out::Stdout(HEADER.into()));
                out(Out::Stdout(csv_line(&e)));
            }
            None => {
                return Err((
                    super::EXIT_FAILURE,
                    format!("{email} is not on the suppression list"),
                ));
            }
        },
        Op::Add {
            emails,
            reason: r,
            topic,
        } => {
            let r = reason(r)?;
            let now = volley_spool::now_ms();
            let entries = emails
                .iter()
                .map(|e| {
                    let mut entry = Entry::new(e.clone(), r, now);
                    entry.topic = topic.clone();
                    entry
                })
                .collect();
            let added = list
                .add(entries)
                .map_err(|e| (EXIT_BAD_INPUT, e.to_string()))?;
            out(Out::Stderr(format!(
                "{added} added, {} updated ({} entries on the list)",
                emails.len() - added,
                list.len()
            )));
        }
        Op::Remove { emails, topic } => {
            let keys: Vec<(&str, Option<&str>)> = emails
                .iter()
                .map(|e| (e.as_str(), topic.as_deref()))
                .collect();
            let n = list.remove_scoped(&keys).map_err(io)?;
            out(Out::Stderr(format!(
                "{n} removed ({} entries on the list)",
                list.len()
            )));
        }
        Op::Import { file, reason: r } => {
            let r = reason(r)?;
            let f = std::fs::File::open(file)
                .map_err(|e| (EXIT_BAD_INPUT, format!("{}: {e}", file.display())))?;
            let report = list
                .import_csv(std::io::BufReader::with_capacity(1 << 20, f), r)
                .map_err(io)?;
            for (line, why) in &report.rejected {
                out(Out::Stderr(format!("{}:{line}: {why}", file.display())));
            }
            out(Out::Stderr(format!(
                "{} added, {} updated, {} rows rejected ({} entries on the list)",
                report.added,
                report.updated,
                report.rejected_count,
                list.len()
            )));
            if report.rejected_count > 0 {
                return Err((
                    super::EXIT_REJECTED,
                    format!("{} rows rejected", report.rejected_count),
                ));
            }
        }
        Op::Export { file: Some(path) } => {
            let f = std::fs::File::create(path)
                .map_err(|e| (super::EXIT_FAILURE, format!("{}: {e}", path.display())))?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
            let n = list.export_csv(&mut w).map_err(io)?;
            w.flush()
                .map_err(|e| (super::EXIT_FAILURE, format!("{}: {e}", path.display())))?;
            out(Out::Stderr(format!(
                "{n} entries written to {}",
                path.display()
            )));
        }
        Op::Export { file: None } => {
            let mut lines = LineSink {
                out,
                buf: Vec::new(),
            };
            let n = list.export_csv(&mut lines).map_err(io)?;
            lines.finish();
            out(Out::Stderr(format!("{n} entries")));
        }
    }
    Ok(())
}

/// Turns written CSV bytes into stdout lines.
struct LineSink<'a> {
    out: &'a mut dyn FnMut(Out),
    buf: Vec<u8>,
}

impl LineSink<'_> {
    fn finish(&mut self) {
        if !self.buf.is_empty() {
            let l = String::from_utf8_lossy(&self.buf).trim_end().to_string();
            (self.out)(Out::Stdout(l));
            self.buf.clear();
        }
    }
}

impl Write for LineSink<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        while let Some(i) = memchr::memchr(b'\n', &self.buf) {
            let line: Vec<u8> = self.buf.drain(..=i).collect();
            let l = String::from_utf8_lossy(&line).trim_end().to_string();
            (self.out)(Out::Stdout(l));
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Makes the files an operation names absolute (the service resolves
/// them, not the caller's directory).
fn absolute(op: Op) -> Result<Op, super::CliError> {
    let abs = |p: PathBuf| std::path::absolute(&p).map_err(bad);
    Ok(match op {
        Op::Import { file, reason } => Op::Import {
            file: abs(file)?,
            reason,
        },
        Op::Export { file: Some(f) } => Op::Export {
            file: Some(abs(f)?),
        },
        other => other,
    })
}

/// `volley suppression …`.
pub async fn command(config_path: &Path, op: Op) -> CliResult {
    let config = load_config(config_path)?;
    let op = absolute(op)?;
    if let Some(stream) = super::control::connect(&config).await {
        return remote(stream, &op).await;
    }
    local(&config, &op)
}

fn local(config: &Config, op: &Op) -> CliResult {
    let _lock = volley_spool::lock_dir(&config.spool.dir).map_err(|e| match e {
        volley_spool::Error::Locked(_) => fail(anyhow::anyhow!(
            "the spool {} is in use and its service does not answer on the control socket",
            config.spool.dir.display()
        )),
        e => fail(e),
    })?;
    let list = SuppressionList::open(&config.spool.dir.join("suppression")).map_err(fail)?;
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    let mut print = |o: Out| match o {
        Out::Stdout(l) => {
            let _ = writeln!(lock, "{l}");
        }
        Out::Stderr(l) => eprintln!("{l}"),
    };
    match perform(&list, op, &mut print) {
        Ok(()) => Ok(EXIT_OK),
        Err((code, message)) => Err(super::CliError {
            code,
            error: anyhow::anyhow!(message),
        }),
    }
}
