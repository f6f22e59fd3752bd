//! The operators' action log: every queue action taken on the running
//! service (who, what, when, and what it did), one JSON line each in
//! `<spool>/admin.jsonl`. A line is written and fsync'd before the action
//! is answered, and the file is kept across restarts (never truncated).
//! A line torn by a crash is left as it is: the next entry starts on a
//! line of its own, and [`read`] skips what does not parse.
//! Exposure: the entries' values come from the control socket (a local
//! client of the service's own user, its uid and pid from the kernel).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The log's file name in the spool directory.
pub const FILE: &str = "admin.jsonl";

/// One action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// When it was taken (RFC 3339, UTC, milliseconds).
    pub at: String,
    /// A control socket client's user id and process id (from the
    /// socket's peer credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// An admin HTTP API caller: its token's name, and its address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// What: `retry`, ...
    pub action: String,
    /// What it applied to (`{"domain": "..."}`, `{"site": "..."}`, `"all"`).
    pub target: serde_json::Value,
    /// What it did (`{"recipients": N}`).
    pub result: serde_json::Value,
}

fn path(spool_dir: &Path) -> PathBuf {
    spool_dir.join(FILE)
}

/// Appends `a` to the log of `spool_dir` and syncs it.
pub fn append(spool_dir: &Path, a: &Action) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path(spool_dir))?;
    let mut line = Vec::with_capacity(256);
    // a line torn by a crash ends here; the entry starts its own
    let len = f.metadata()?.len();
    if len > 0 {
        let mut last = [0u8];
        f.seek(SeekFrom::Start(len - 1))?;
        f.read_exact(&mut last)?;
        if last[0] != b'\n' {
            line.push(b'\n');
        }
    }
    serde_json::to_writer(&mut line, a)?;
    line.push(b'\n');
    f.write_all(&line)?;
    f.sync_data()
}

/// The actions logged in `spool_dir`, oldest first (none when there is
/// no log; lines that do not parse are skipped).
pub fn read(spool_dir: &Path) -> std::io::Result<Vec<Action>> {
    let text = match std::fs::read(path(spool_dir)) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(text
        .split(|&b| b == b'\n')
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(n: u64) -> Action {
        Action {
            at: "2026-12-01T00:00:00.000Z".into(),
            uid: Some(1000),
            pid: Some(42),
            principal: None,
            remote: None,
            action: "retry".into(),
            target: serde_json::json!({"domain": "a.test"}),
            result: serde_json::json!({"recipients": n}),
        }
    }

    #[test]
    fn actions_are_kept_in_order_and_a_torn_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path()).unwrap().is_empty());
        append(dir.path(), &action(1)).unwrap();
        // a crash in the middle of the next line
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(FILE))
            .unwrap();
        f.write_all(b"{\"at\":\"2026-12-01T00:0").unwrap();
        drop(f);
        append(dir.path(), &action(2)).unwrap();
        assert_eq!(read(dir.path()).unwrap(), vec![action(1), action(2)]);
    }
}
