//! CSV import and export of the list.
//!
//! Columns: `email,reason,last_update_time,message_id,feedback_id,topic`;
//! only the email is required. The header row is optional (recognised by a
//! first field named `email`; its columns may then come in any order and
//! unknown ones are ignored); without one, columns are in this order.
//! Reasons are case-insensitive (empty: the import's default); times are
//! RFC 3339 (`Z` only), milliseconds since the epoch, or empty (now).
//! Export writes the header and every entry, times in RFC 3339 with
//! milliseconds (a time past year 9999 is written in milliseconds).
//!
//! Exposure: imports are hostile files. Rows are streamed and stored in
//! batches (memory stays bounded for millions of rows); a bad row is
//! reported with its line number and why, and skipped; only an I/O error
//! stops an import.

use std::io::{Read, Write};
use std::time::{Duration, UNIX_EPOCH};

use super::SuppressionList;
use super::entry::{Entry, ListFilter, Reason};
use super::error::SuppressionError;
use super::record::PUT;

/// Rows stored per durable write.
const BATCH: usize = 8192;
/// Rejected rows listed in a report (all are counted).
pub const REJECTED_LISTED: usize = 1000;
/// Largest time written as RFC 3339 (the last millisecond of 9999).
const MAX_RFC3339_MS: u64 = 253_402_300_800_000 - 1;
const COLUMNS: [&str; 6] = [
    "email",
    "reason",
    "last_update_time",
    "message_id",
    "feedback_id",
    "topic",
];

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Entries that were not on the list.
    pub added: u64,
    /// Entries that replaced one on the list.
    pub updated: u64,
    /// The first [`REJECTED_LISTED`] rejected rows: (line, why).
    pub rejected: Vec<(u64, String)>,
    /// All rejected rows.
    pub rejected_count: u64,
}

impl ImportReport {
    fn reject(&mut self, line: u64, why: String) {
        self.rejected_count += 1;
        if self.rejected.len() < REJECTED_LISTED {
            self.rejected.push((line, why));
        }
    }
}

/// Where each column is in a row.
struct Layout([Option<usize>; 6]);

impl Layout {
    fn default_order() -> Layout {
        Layout([Some(0), Some(1), Some(2), Some(3), Some(4), Some(5)])
    }

    /// From a header row, when the row is one.
    fn from_header(row: &csv::ByteRecord) -> Option<Layout> {
        let name = |f: &[u8]| {
            String::from_utf8_lossy(f)
                .to_ascii_lowercase()
                .replace(['_', '-', ' '], "")
        };
        if row
            .get(0)
            .map(name)
            .is_none_or(|n| n != "email" && n != "emailaddress")
        {
            return None;
        }
        let mut cols = [None; 6];
        for (i, f) in row.iter().enumerate() {
            let n = name(f);
            let n = match n.as_str() {
                "emailaddress" => "email",
                "lastupdatetime" | "time" => "lastupdatetime",
                other => other,
            };
            if let Some(c) = COLUMNS.iter().position(|c| c.replace('_', "") == n) {
                cols[c].get_or_insert(i);
            }
        }
        Some(Layout(cols))
    }

    fn field<'r>(&self, row: &'r csv::ByteRecord, col: usize) -> Result<Option<&'r str>, String> {
        let Some(f) = self.0[col].and_then(|i| row.get(i)) else {
            return Ok(None);
        };
        let s = std::str::from_utf8(f).map_err(|_| format!("{} is not UTF-8", COLUMNS[col]))?;
        Ok(Some(s.trim()).filter(|s| !s.is_empty()))
    }

    /// The entry a row describes, or why it is rejected.
    fn entry(&self, row: &csv::ByteRecord, default: Reason, now: u64) -> Result<Entry, String> {
        let email = self.field(row, 0)?.ok_or("no email address")?;
        let reason = match self.field(row, 1)? {
            Some(r) => r.parse::<Reason>().map_err(|e| e.to_string())?,
            None => default,
        };
        let at_ms = match self.field(row, 2)? {
            None => now,
            Some(t) => parse_time(t)?,
        };
        let text = |col| self.field(row, col).map(|v| v.map(str::to_string));
        let e = Entry {
            email: email.to_string(),
            reason,
            at_ms,
            message_id: text(3)?,
            feedback_id: text(4)?,
            topic: text(5)?,
        };
        e.normalized().map_err(|e| e.to_string())
    }
}

/// Milliseconds since the epoch, or an RFC 3339 time.
fn parse_time(t: &str) -> Result<u64, String> {
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().map_err(|_| format!("time {t:?} is out of range"));
    }
    let at = humantime::parse_rfc3339_weak(t).map_err(|e| {
        format!(
            "time {:?} is neither RFC 3339 nor milliseconds: {e}",
            super::error::quote(t)
        )
    })?;
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .map_err(|_| format!("time {t:?} is before 1970"))
}

fn format_time(ms: u64) -> String {
    if ms > MAX_RFC3339_MS {
        return ms.to_string();
    }
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

impl SuppressionList {
    /// Imports entries from CSV (see the module header); rows with no
    /// reason get `default_reason`. Stored durably in batches as it reads.
    pub fn import_csv(
        &self,
        input: impl Read,
        default_reason: Reason,
    ) -> Result<ImportReport, SuppressionError> {
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(input);
        let mut report = ImportReport::default();
        let mut layout = Layout::default_order();
        let mut row = csv::ByteRecord::new();
        let mut batch = Vec::with_capacity(BATCH);
        let now = (self.opts.clock)();
        let mut first = true;
        loop {
            match rdr.read_byte_record(&mut row) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    return Err(SuppressionError::Csv { line, source: e });
                }
            }
            let line = row.position().map_or(0, |p| p.line());
            if std::mem::take(&mut first)
                && let Some(h) = Layout::from_header(&row)
            {
                layout = h;
                continue;
            }
            match layout.entry(&row, default_reason, now) {
                Ok(e) => batch.push(e),
                Err(why) => report.reject(line, why),
            }
            if batch.len() >= BATCH {
                self.store_batch(&mut batch, &mut report)?;
            }
        }
        self.store_batch(&mut batch, &mut report)?;
        Ok(report)
    }

    fn store_batch(
        &self,
        batch: &mut Vec<Entry>,
        report: &mut ImportReport,
    ) -> Result<(), SuppressionError> {
        let mut w = self.writer();
        let added = self.append(&mut w, PUT, batch)?;
        report.added += added as u64;
        report.updated += (batch.len() - added) as u64;
        batch.clear();
        Ok(())
    }

    /// Writes every entry as CSV with a header row; returns the entries
    /// written.
    pub fn export_csv(&self, output: impl Write) -> Result<u64, SuppressionError> {
        let mut wtr = csv::Writer::from_writer(output);
        wtr.write_record(COLUMNS)
            .map_err(SuppressionError::CsvOut)?;
        let mut failed = None;
        let n = self.list(&ListFilter::default(), |e| {
            if failed.is_some() {
                return;
            }
            let r = wtr.write_record([
                e.email.as_str(),
                e.reason.as_str(),
                &format_time(e.at_ms),
                e.message_id.as_deref().unwrap_or(""),
                e.feedback_id.as_deref().unwrap_or(""),
                e.topic.as_deref().unwrap_or(""),
            ]);
            if let Err(err) = r {
                failed = Some(err);
            }
        })?;
        if let Some(e) = failed {
            return Err(SuppressionError::CsvOut(e));
        }
        wtr.flush()
            .map_err(|e| SuppressionError::CsvOut(e.into()))?;
        Ok(n)
    }
}
