//! JSON-lines recipient lists: `{"email": ..., "vars": {...}}` per line;
//! lines over [`MAX_LINE`] are rejected without being held in memory.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use volley_spool::Vars;

use super::{Item, ListError, MAX_LINE, Rejection, Start, make_row, read_err};

/// An open JSON-lines list.
pub(super) struct JsonlSource {
    reader: BufReader<File>,
    line: u64,
    /// Bytes read so far.
    offset: u64,
    buf: Vec<u8>,
}

impl JsonlSource {
    pub(super) fn new(file: File) -> JsonlSource {
        JsonlSource {
            reader: BufReader::with_capacity(1 << 20, file),
            line: 0,
            offset: 0,
            buf: Vec::new(),
        }
    }

    /// The next item; `row` counts data rows.
    pub(super) fn next(&mut self, row: &mut u32, path: &Path) -> Result<Option<Item>, ListError> {
        loop {
            self.buf.clear();
            let n = (&mut self.reader)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| read_err(path, e))?;
            if n == 0 {
                return Ok(None);
            }
            let start = Start {
                byte: self.offset,
                line: self.line + 1,
            };
            self.offset += n as u64;
            self.line += 1;
            if self.buf.len() > MAX_LINE {
                // never hold more than a line's worth: skip the rest
                self.offset += skip_line(&mut self.reader).map_err(|e| read_err(path, e))?;
                *row += 1;
                return Ok(Some(Item::Rejected(Rejection {
                    line: self.line,
                    row: *row,
                    reason: format!("line is longer than {MAX_LINE} bytes"),
                })));
            }
            let Ok(text) = std::str::from_utf8(&self.buf) else {
                *row += 1;
                return Ok(Some(Item::Rejected(Rejection {
                    line: self.line,
                    row: *row,
                    reason: "invalid UTF-8".into(),
                })));
            };
            if text.trim().is_empty() {
                continue;
            }
            *row += 1;
            return Ok(Some(json_row(start, *row, text.trim_end())));
        }
    }
}

/// Consumes input up to and including the next newline (or the end);
/// returns how many bytes.
fn skip_line(reader: &mut BufReader<File>) -> std::io::Result<u64> {
    let mut skipped = 0u64;
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok(skipped);
        }
        match chunk.iter().position(|&b| b == b'\n') {
            Some(p) => {
                reader.consume(p + 1);
                return Ok(skipped + p as u64 + 1);
            }
            None => {
                let n = chunk.len();
                reader.consume(n);
                skipped += n as u64;
            }
        }
    }
}

fn json_row(start: Start, row: u32, text: &str) -> Item {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct JsonRow {
        email: String,
        #[serde(default)]
        vars: Option<serde_json::Map<String, serde_json::Value>>,
    }
    match serde_json::from_str::<JsonRow>(text) {
        Ok(r) => {
            let json =
                serde_json::to_string(&r.vars.unwrap_or_default()).unwrap_or_else(|_| "{}".into());
            let mut vars = Vec::with_capacity(json.len() + 1);
            Vars::encode_json(&json, &mut vars);
            make_row(start, row, &r.email, vars)
        }
        Err(e) => Item::Rejected(Rejection {
            line: start.line,
            row,
            reason: format!("not a recipient object {{\"email\": ..., \"vars\": {{...}}}}: {e}"),
        }),
    }
}
