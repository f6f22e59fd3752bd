//! `volley queue`: operators' actions on the running service's queue, over
//! its control socket, each logged (who, what, when, what it did) in the
//! spool's action log ([`volley_engine::admin_log`]) before it is
//! answered.
//!
//! - `volley queue retry --domain D | --site S | --all`: the deferred
//!   recipients named are tried now instead of at their retry time; a
//!   named site that is down is probed now.
//! - `volley queue log`: the action log (also without a running service).
//!
//! Exposure: the control socket's clients are local and of the service's
//! own user (checked by the socket); requests are bounded JSON lines.

use std::path::Path;

use serde::{Deserialize, Serialize};
use volley_engine::admin_log::{self, Action};
use volley_engine::delivery::scheduler::Deferred;
use volley_engine::engine::Handle;

use super::{CliError, CliResult, EXIT_FAILURE, EXIT_OK, fail, load_config};

/// The `volley queue` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum QueueAction {
    /// Try deferred recipients now instead of at their retry time (a
    /// named site that is down is probed now).
    #[command(group(clap::ArgGroup::new("which").required(true)))]
    Retry {
        /// The deferred recipients of this domain.
        #[arg(long, group = "which")]
        domain: Option<String>,
        /// Those whose domain goes to this site (its `site` label in the
        /// metrics: `host:port` of a route, `mx:<hosts>` of an MX site).
        #[arg(long, group = "which")]
        site: Option<String>,
        /// Every deferred recipient.
        #[arg(long, group = "which")]
        all: bool,
    },
    /// Print the operators' action log (JSON lines: at, uid, pid, action,
    /// target, result), oldest first.
    Log,
}

/// A queue action asked over the control socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum Op {
    Retry { which: Deferred },
}

/// The service's answer: one JSON line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Reply {
    Done { text: String },
    Error { code: u8, message: String },
}

/// Who asked (the socket's peer credentials).
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub uid: u32,
    pub pid: Option<i32>,
}

/// `volley queue ...`.
pub async fn command(config_path: &Path, action: QueueAction) -> CliResult {
    let config = load_config(config_path)?;
    let op = match action {
        QueueAction::Log => {
            let actions = admin_log::read(&config.spool.dir).map_err(fail)?;
            for a in actions {
                println!("{}", serde_json::to_string(&a).map_err(fail)?);
            }
            return Ok(EXIT_OK);
        }
        QueueAction::Retry { domain, site, all } => Op::Retry {
            which: match (domain, site, all) {
                (Some(d), _, _) => Deferred::Domain(d),
                (_, Some(s), _) => Deferred::Site(s),
                _ => Deferred::All,
            },
        },
    };
    let Some(stream) = super::control::connect(&config).await else {
        return Err(fail(anyhow::anyhow!(
            "no running service answers on {} (queue actions act on a running `volley run`)",
            super::control::socket_path(&config).display()
        )));
    };
    remote(stream, &op).await
}

async fn remote(stream: tokio::net::UnixStream, op: &Op) -> CliResult {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let (rd, mut wr) = stream.into_split();
    let mut line =
        serde_json::to_vec(&serde_json::json!({"op": "queue", "what": op})).map_err(fail)?;
    line.push(b'\n');
    wr.write_all(&line).await.map_err(fail)?;
    let mut replies = BufReader::new(rd).lines();
    let Ok(Some(l)) = replies.next_line().await else {
        return Err(fail(anyhow::anyhow!(
            "the running service closed the control connection"
        )));
    };
    match serde_json::from_str::<Reply>(&l) {
        Ok(Reply::Done { text }) => {
            println!("{text}");
            Ok(EXIT_OK)
        }
        Ok(Reply::Error { code, message }) => Err(CliError {
            code,
            error: anyhow::anyhow!(message),
        }),
        Err(_) => {
            let v: serde_json::Value = serde_json::from_str(&l).unwrap_or_default();
            let message = v["message"].as_str().unwrap_or("unexpected reply");
            Err(fail(anyhow::anyhow!(message.to_string())))
        }
    }
}

/// Does `op` for a control socket client, logs it, and answers.
pub async fn serve(
    handle: &Handle,
    spool_dir: &Path,
    peer: Peer,
    op: Op,
    mut wr: tokio::net::unix::OwnedWriteHalf,
) {
    use tokio::io::AsyncWriteExt;
    let reply = match act(handle, spool_dir, peer, op).await {
        Ok(text) => Reply::Done { text },
        Err(message) => Reply::Error {
            code: EXIT_FAILURE,
            message,
        },
    };
    let mut line = serde_json::to_vec(&reply).unwrap_or_default();
    line.push(b'\n');
    let _ = wr.write_all(&line).await;
}

async fn act(handle: &Handle, spool_dir: &Path, peer: Peer, op: Op) -> Result<String, String> {
    let Op::Retry { which } = op;
    let made = handle
        .retry_now(which.clone())
        .await
        .ok_or("the service is shutting down")?;
    let target = match &which {
        Deferred::All => serde_json::json!("all"),
        Deferred::Domain(d) => serde_json::json!({ "domain": d }),
        Deferred::Site(s) => serde_json::json!({ "site": s }),
    };
    let entry = Action {
        at: volley_engine::events::model::timestamp(volley_spool::now_ms()),
        uid: peer.uid,
        pid: peer.pid,
        action: "retry".into(),
        target,
        result: serde_json::json!({ "recipients": made }),
    };
    let dir = spool_dir.to_path_buf();
    let logged = tokio::task::spawn_blocking(move || admin_log::append(&dir, &entry)).await;
    match logged {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(format!("the action was taken but not logged: {e}")),
        Err(e) => return Err(format!("the action was taken but not logged: {e}")),
    }
    let what = match &which {
        Deferred::All => "every deferred recipient".to_string(),
        Deferred::Domain(d) => format!("deferred recipients of {d}"),
        Deferred::Site(s) => format!("deferred recipients of site {s}"),
    };
    Ok(format!("{made} recipients tried now ({what})"))
}
