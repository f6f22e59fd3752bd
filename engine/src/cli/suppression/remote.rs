//! `volley suppression` through a running service: the request over the
//! control socket, the service's side that does the operation and writes
//! its output as the client reads it, and the client's side that prints
//! it. Exposure: local clients of the service's own user (checked by the
//! control socket).

use std::io::Write;

use serde::{Deserialize, Serialize};
use volley_engine::feedback::suppression::SuppressionList;

use super::{Op, Out, perform};
use crate::cli::{CliResult, EXIT_OK, fail};

/// What the service answers over the control socket, one JSON line each.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Reply {
    /// A line for standard output.
    Out {
        text: String,
    },
    /// A line for standard error.
    Line {
        text: String,
    },
    Finished,
    Error {
        code: u8,
        message: String,
    },
}

/// Does `op` for a client of the control socket, writing its output to
/// `wr` as the client reads it (a bounded channel between the work and
/// the socket: an export of millions of entries holds little memory).
pub async fn serve(
    list: std::sync::Arc<SuppressionList>,
    op: Op,
    mut wr: tokio::net::unix::OwnedWriteHalf,
) {
    use tokio::io::AsyncWriteExt;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Reply>(256);
    let work = tokio::task::spawn_blocking(move || {
        let done = perform(&list, &op, &mut |o| {
            let _ = tx.blocking_send(match o {
                Out::Stdout(text) => Reply::Out { text },
                Out::Stderr(text) => Reply::Line { text },
            });
        });
        let _ = tx.blocking_send(match done {
            Ok(()) => Reply::Finished,
            Err((code, message)) => Reply::Error { code, message },
        });
    });
    while let Some(r) = rx.recv().await {
        let mut line = serde_json::to_vec(&r).unwrap_or_default();
        line.push(b'\n');
        if wr.write_all(&line).await.is_err() {
            break;
        }
    }
    drop(rx);
    let _ = work.await;
}

/// Runs `op` through the running service.
pub(super) async fn remote(stream: tokio::net::UnixStream, op: &Op) -> CliResult {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let (rd, mut wr) = stream.into_split();
    let mut line =
        serde_json::to_vec(&serde_json::json!({"op": "suppression", "what": op})).map_err(fail)?;
    line.push(b'\n');
    wr.write_all(&line).await.map_err(fail)?;
    let mut replies = BufReader::new(rd).lines();
    let stdout = std::io::stdout();
    loop {
        let Ok(Some(l)) = replies.next_line().await else {
            return Err(fail(anyhow::anyhow!(
                "the running service closed the control connection"
            )));
        };
        match serde_json::from_str::<Reply>(&l) {
            Ok(Reply::Out { text }) => {
                let _ = writeln!(stdout.lock(), "{text}");
            }
            Ok(Reply::Line { text }) => eprintln!("{text}"),
            Ok(Reply::Finished) => return Ok(EXIT_OK),
            Ok(Reply::Error { code, message }) => {
                return Err(crate::cli::CliError {
                    code,
                    error: anyhow::anyhow!(message),
                });
            }
            Err(_) => {
                // the service's own errors (permission, bad request)
                let v: serde_json::Value = serde_json::from_str(&l).unwrap_or_default();
                let message = v["message"]
                    .as_str()
                    .unwrap_or("unexpected reply")
                    .to_string();
                return Err(fail(anyhow::anyhow!(message)));
            }
        }
    }
}
