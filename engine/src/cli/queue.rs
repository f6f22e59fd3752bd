//! `volley queue`: operators' actions on the running service's queue, over
//! its control socket, each logged (who, what, when, what it did) in the
//! spool's action log ([`volley_engine::admin_log`]) before it is
//! answered.
//!
//! - `volley queue retry --domain D | --site S | --all`: the deferred
//!   recipients named are tried now instead of at their retry time; a
//!   named site that is down is probed now.
//! - `volley queue hold --domain D | --site S | --campaign ID` and
//!   `volley queue release ...`: recipients of a held domain, site or
//!   campaign are not attempted until released; they stay spooled
//!   ([`volley_engine::delivery::holds`]).
//! - `volley queue holds`: the holds in force; `volley queue log`: the
//!   action log (both also without a running service).
//! - `volley queue reroute --domain D --to HOST:PORT | --clear`, `volley
//!   queue reroutes`: a domain sent to another next hop
//!   ([`volley_engine::delivery::reroutes`]).
//! - `volley queue inspect EMAIL`, `volley queue deferred`: where an
//!   address's recipients are, and the oldest deferred recipients
//!   ([`volley_engine::inspect`]; through the service, or from the spool
//!   when none runs); `volley queue top`: the sites with the most waiting
//!   and those deferring most (from the service's `/metrics`).
//!
//! Exposure: the control socket's clients are local and of the service's
//! own user (checked by the socket); requests are bounded JSON lines.

use std::path::Path;

use serde::{Deserialize, Serialize};
use volley_engine::admin_log;
use volley_engine::delivery::endings::{End, Endings};
use volley_engine::delivery::holds::{Hold, Holds};
use volley_engine::delivery::scheduler::Deferred;
use volley_engine::engine::Handle;

use super::{CliError, CliResult, EXIT_FAILURE, EXIT_OK, fail, load_config};

mod act;
pub use act::act;

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
    /// Hold a domain, a site or a campaign: its recipients are not
    /// attempted until released (they stay spooled).
    Hold(Target),
    /// Release a hold.
    Release(Target),
    /// List the holds in force.
    Holds,
    /// Send a domain's mail to another next hop (`host:port`) than its
    /// `[routes]` entry or MX hosts, until cleared; its recipients queued
    /// at the old site go the new way.
    #[command(group(clap::ArgGroup::new("where").required(true)))]
    Reroute {
        #[arg(long)]
        domain: String,
        /// The next hop, `host:port` (IPv6 as `[::1]:25`).
        #[arg(long, group = "where")]
        to: Option<String>,
        /// Clear the domain's reroute.
        #[arg(long, group = "where")]
        clear: bool,
    },
    /// List the reroutes in force (`domain host:port`).
    Reroutes,
    /// Cancel a campaign: each of its recipients not yet sent ends with a
    /// `Reject` event (also those spooled later under its id).
    Cancel {
        #[arg(long)]
        campaign: String,
        /// Words for the events and the action log.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Bounce everything queued for a domain now: each recipient spooled
    /// before this ends with a `Bounce` event (Transient, General); mail
    /// spooled later is delivered as usual.
    Bounce {
        #[arg(long)]
        domain: String,
        /// Words for the events and the action log.
        #[arg(long)]
        reason: Option<String>,
    },
    /// List the cancelled campaigns and bounced domains (JSON lines).
    Endings,
    /// Drain the service: it stops taking new work (SMTP submission, the
    /// API, the drop directory, campaign jobs) and starts no attempt;
    /// answers once every attempt in flight has its outcome, with what
    /// remains in the spool. `volley queue resume` ends it.
    Drain {
        /// Longest wait for the attempts in flight (seconds).
        #[arg(long, default_value_t = 120)]
        wait: u64,
    },
    /// End a drain: take new work and deliver again.
    Resume,
    /// Pause, resume, reset (day 1 again) or complete (established) an
    /// egress source's warm-up.
    #[command(group(clap::ArgGroup::new("act").required(true)))]
    Warmup {
        #[arg(long)]
        source: String,
        #[arg(long, group = "act")]
        pause: bool,
        #[arg(long, group = "act")]
        resume: bool,
        #[arg(long, group = "act")]
        reset: bool,
        #[arg(long, group = "act")]
        complete: bool,
    },
    /// The warming sources: plan day, today's allowance per site, paused
    /// (JSON lines; also without a running service).
    Warmups,
    /// Where an address's recipients are (JSON lines: email, campaign,
    /// state, attempts, next_attempt, accepted, last outcome and reply).
    Inspect { email: String },
    /// The oldest deferred recipients, oldest first (JSON lines, as
    /// `inspect`).
    Deferred {
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// The sites with the most recipients waiting, and those deferring the
    /// largest share of their attempts since the service started.
    Top {
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
    /// Print the operators' action log (JSON lines: at, uid, pid, action,
    /// target, result), oldest first.
    Log,
}

/// What a hold applies to: exactly one.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// A recipient domain (ASCII case ignored).
    #[arg(long)]
    domain: Option<String>,
    /// A site (its `site` label in the metrics).
    #[arg(long)]
    site: Option<String>,
    /// A campaign, by its id (held also when spooled later).
    #[arg(long)]
    campaign: Option<String>,
}

impl From<Target> for Hold {
    fn from(t: Target) -> Hold {
        match (t.domain, t.site, t.campaign) {
            (Some(d), _, _) => Hold::Domain(d),
            (_, Some(s), _) => Hold::Site(s),
            (_, _, c) => Hold::Campaign(c.unwrap_or_default()),
        }
    }
}

/// A queue action asked over the control socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum Op {
    Retry {
        which: Deferred,
    },
    Hold {
        hold: Hold,
        on: bool,
    },
    Inspect {
        email: String,
    },
    Deferred {
        limit: usize,
    },
    Reroute {
        domain: String,
        to: Option<String>,
    },
    End {
        end: End,
        reason: Option<String>,
    },
    Drain {
        on: bool,
        wait_secs: u64,
    },
    Warmup {
        source: String,
        act: volley_engine::delivery::warmup::Action,
    },
}

/// A drain asked of the service's main loop (which owns the listeners):
/// on or off, how long to wait for what is in flight, and the answer.
pub struct DrainReq {
    pub on: bool,
    pub wait: std::time::Duration,
    pub reply: tokio::sync::oneshot::Sender<Result<String, String>>,
}

/// The service's answer: one JSON line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Reply {
    Done { text: String },
    Error { code: u8, message: String },
}

/// Who asked: a control socket client (its peer credentials) or an admin
/// HTTP API caller (its token's name and address).
#[derive(Debug, Clone)]
pub enum Peer {
    Local { uid: u32, pid: Option<i32> },
    Http { name: String, remote: String },
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
        QueueAction::Holds => {
            let holds = Holds::open(&config.spool.dir).map_err(fail)?;
            for (kind, name) in holds.get().iter() {
                println!("{kind} {name}");
            }
            return Ok(EXIT_OK);
        }
        QueueAction::Reroutes => {
            let reroutes = volley_engine::delivery::reroutes::Reroutes::open(&config.spool.dir)
                .map_err(fail)?;
            for (domain, to) in reroutes.get().iter() {
                println!("{domain} {to}");
            }
            return Ok(EXIT_OK);
        }
        QueueAction::Endings => {
            let endings = Endings::open(&config.spool.dir).map_err(fail)?;
            for (kind, name, mark) in endings.get().iter() {
                let line = serde_json::json!({
                    "kind": kind,
                    "name": name,
                    "at": volley_engine::events::model::timestamp(mark.at_ms),
                    "reason": mark.reason,
                });
                println!("{line}");
            }
            return Ok(EXIT_OK);
        }
        QueueAction::Warmups => {
            let plans = volley_engine::delivery::egress::plans(&config.egress);
            let w = volley_engine::delivery::warmup::Warmup::open(&config.spool.dir, plans)
                .map_err(fail)?;
            let today = volley_engine::delivery::warmup::day_of(volley_spool::now_ms());
            for s in w.standings(today) {
                println!("{}", serde_json::to_string(&s).map_err(fail)?);
            }
            return Ok(EXIT_OK);
        }
        QueueAction::Warmup {
            source,
            pause,
            resume,
            reset,
            ..
        } => {
            use volley_engine::delivery::warmup::Action;
            let act = match (pause, resume, reset) {
                (true, _, _) => Action::Pause,
                (_, true, _) => Action::Resume,
                (_, _, true) => Action::Reset,
                _ => Action::Complete,
            };
            Op::Warmup { source, act }
        }
        QueueAction::Drain { wait } => Op::Drain {
            on: true,
            wait_secs: wait,
        },
        QueueAction::Resume => Op::Drain {
            on: false,
            wait_secs: 0,
        },
        QueueAction::Cancel { campaign, reason } => Op::End {
            end: End::Campaign(campaign),
            reason,
        },
        QueueAction::Bounce { domain, reason } => Op::End {
            end: End::Domain(domain),
            reason,
        },
        QueueAction::Reroute { domain, to, .. } => Op::Reroute { domain, to },
        QueueAction::Inspect { email } => Op::Inspect { email },
        QueueAction::Deferred { limit } => Op::Deferred { limit },
        QueueAction::Top { limit } => return super::queue_top::command(&config, limit),
        QueueAction::Hold(t) => Op::Hold {
            hold: t.into(),
            on: true,
        },
        QueueAction::Release(t) => Op::Hold {
            hold: t.into(),
            on: false,
        },
        QueueAction::Retry { domain, site, all } => Op::Retry {
            which: match (domain, site, all) {
                (Some(d), _, _) => Deferred::Domain(d),
                (_, Some(s), _) => Deferred::Site(s),
                _ => Deferred::All,
            },
        },
    };
    let Some(stream) = super::control::connect(&config).await else {
        if let Op::Inspect { .. } | Op::Deferred { .. } = op {
            return local(&config, &op);
        }
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
            if !text.is_empty() {
                println!("{text}");
            }
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

/// An inspection without a running service: from the spool itself.
fn local(config: &volley_engine::config::Config, op: &Op) -> CliResult {
    let (spool, _) = volley_spool::Spool::open(&config.spool.dir).map_err(|e| {
        fail(anyhow::anyhow!(
            "cannot open the spool {}: {e}",
            config.spool.dir.display()
        ))
    })?;
    let text = look(&spool, op).unwrap_or_default();
    if !text.is_empty() {
        println!("{text}");
    }
    Ok(EXIT_OK)
}

/// An inspection's answer: one JSON line per recipient found.
fn look(spool: &volley_spool::Spool, op: &Op) -> Option<String> {
    if !matches!(op, Op::Inspect { .. } | Op::Deferred { .. }) {
        return None;
    }
    let lines: Vec<String> = found(spool, op).iter().map(|v| v.to_string()).collect();
    Some(lines.join("\n"))
}

/// The recipients an inspection finds, as JSON (none for an action).
pub fn found(spool: &volley_spool::Spool, op: &Op) -> Vec<serde_json::Value> {
    let found = match op {
        Op::Inspect { email } => volley_engine::inspect::address(spool, email),
        Op::Deferred { limit } => volley_engine::inspect::oldest_deferred(spool, *limit),
        _ => return Vec::new(),
    };
    found
        .iter()
        .filter_map(|f| serde_json::to_value(f).ok())
        .collect()
}

/// Does `op` for a control socket client, logs it (actions, not
/// inspections), and answers.
pub async fn serve(
    handle: &Handle,
    spool: &std::sync::Arc<volley_spool::Spool>,
    drain: Option<&tokio::sync::mpsc::UnboundedSender<DrainReq>>,
    peer: Peer,
    op: Op,
    mut wr: tokio::net::unix::OwnedWriteHalf,
) {
    use tokio::io::AsyncWriteExt;
    let answer = if let Op::Inspect { .. } | Op::Deferred { .. } = op {
        let spool = std::sync::Arc::clone(spool);
        tokio::task::spawn_blocking(move || look(&spool, &op).unwrap_or_default())
            .await
            .map_err(|e| e.to_string())
    } else {
        act(handle, spool.dir(), drain, peer, op).await
    };
    let reply = match answer {
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
