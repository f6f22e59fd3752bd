//! The control socket: campaign jobs (`volley enqueue`, `volley send`) hand
//! their campaign to a running `volley run` instead of opening the spool
//! it holds.
//!
//! `volley run` listens on `control.sock` in the spool directory (mode
//! 0600; a client must also run as the service's user, or root: checked
//! with the peer's credentials). A job sends one JSON line naming its
//! campaign file; the service loads it, spools the list in durable batches
//! (handing each to delivery at once) and answers with JSON lines: rows not
//! spooled, progress, then the summary. `send` also waits until every
//! recipient of the campaign is final or deferred and its events are in
//! the events file. A job stopped by SIGINT/SIGTERM sends `stop`: the list
//! is read no further, the service keeps delivering what was spooled, and
//! the job prints its summary and exits as a job stopped by the signal
//! does. Several jobs may run at once. A `volley send` job working alone
//! serves the socket too (and stays until the jobs it serves are done), so
//! two campaign jobs started without a service both work. Exposure: local clients only, of the
//! service's own user; requests are bounded JSON lines.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use volley_engine::campaign;
use volley_engine::config::Config;
use volley_engine::engine::Handle;
use volley_engine::ingest::{self, IngestError};
use volley_spool::Spool;

use super::summary::{Others, SkipReport};
use super::{EXIT_BAD_INPUT, EXIT_FAILURE};

/// The socket's name in the spool directory.
pub const SOCKET: &str = "control.sock";
/// Longest request line.
const MAX_LINE: usize = 64 * 1024;
/// How often a `send` job is told its progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Request {
    Enqueue { campaign: PathBuf },
    Send { campaign: PathBuf },
    Stop { signal: String },
    Suppression { what: super::suppression::Op },
    Queue { what: super::queue::Op },
}

/// Counts of a campaign's recipients by state.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
struct Counts {
    queued: u64,
    deferred: u64,
    delivered: u64,
    bounced: u64,
    failed: u64,
    lost: u64,
}

impl From<volley_spool::Counts> for Counts {
    fn from(c: volley_spool::Counts) -> Counts {
        Counts {
            queued: c.queued,
            deferred: c.deferred,
            delivered: c.delivered,
            bounced: c.bounced,
            failed: c.failed,
            lost: c.lost,
        }
    }
}

impl From<Counts> for volley_spool::Counts {
    fn from(c: Counts) -> volley_spool::Counts {
        volley_spool::Counts {
            queued: c.queued,
            deferred: c.deferred,
            delivered: c.delivered,
            bounced: c.bounced,
            failed: c.failed,
            lost: c.lost,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Reply {
    Error {
        code: u8,
        message: String,
    },
    /// A line for the job's stderr.
    Line {
        text: String,
    },
    Progress {
        total: u64,
        counts: Counts,
        finals: u64,
    },
    Enqueued {
        id: String,
        spooled: u64,
        rejected: u64,
        duplicates: u64,
        already_complete: bool,
        interrupted: bool,
    },
    Done {
        campaign: String,
        counts: Counts,
        finals: u64,
        rejected: u64,
        duplicates: u64,
        others: [u64; 5],
        elapsed_ms: u64,
        interrupted: Option<String>,
        list_unfinished: bool,
        failure: Option<String>,
    },
}

/// What the service's side needs.
pub struct ControlCtx {
    pub config: Arc<Config>,
    pub spool: Arc<Spool>,
    pub handle: Handle,
    /// How far the events file has published.
    pub events_file: Option<Arc<AtomicU64>>,
    /// Jobs connected now.
    pub clients: Arc<std::sync::atomic::AtomicUsize>,
    /// The account's suppression list (`volley suppression`).
    pub suppression: Arc<volley_engine::feedback::suppression::SuppressionList>,
    /// The service's main loop, for `volley queue drain` (`None`: not a
    /// `volley run`).
    pub drain: Option<mpsc::UnboundedSender<super::queue::DrainReq>>,
    /// Set while the service drains: campaign jobs are refused.
    pub draining: Arc<AtomicBool>,
}

/// Decrements the count of connected jobs when dropped.
struct Connected(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The socket of a spool directory.
pub fn socket_path(config: &Config) -> PathBuf {
    config.spool.dir.join(SOCKET)
}

/// Listens on the control socket until `stop` turns true (the service
/// holds the spool lock, so a socket file left there is stale).
pub fn serve(ctx: Arc<ControlCtx>, mut stop: watch::Receiver<bool>) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = socket_path(&ctx.config);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    tokio::spawn(async move {
        loop {
            let conn = tokio::select! {
                c = listener.accept() => c,
                _ = stop.changed() => break,
            };
            match conn {
                Ok((stream, _)) => {
                    let ctx = Arc::clone(&ctx);
                    tokio::spawn(async move { client(ctx, stream).await });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        let _ = std::fs::remove_file(socket_path(&ctx.config));
    });
    Ok(())
}

/// The peer may use the socket: the service's own user, or root.
fn permitted(stream: &UnixStream) -> bool {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    stream
        .peer_cred()
        .is_ok_and(|c| c.uid() == me || c.uid() == 0)
}

async fn client(ctx: Arc<ControlCtx>, stream: UnixStream) {
    ctx.clients.fetch_add(1, Ordering::AcqRel);
    let _connected = Connected(Arc::clone(&ctx.clients));
    let permitted = permitted(&stream);
    let peer = stream.peer_cred().ok().map(|c| super::queue::Peer::Local {
        uid: c.uid(),
        pid: c.pid(),
    });
    let (rd, mut wr) = stream.into_split();
    let mut lines = BufReader::new(rd.take(MAX_LINE as u64 * 16)).lines();
    let first = match permitted {
        true => lines.next_line().await.ok().flatten(),
        false => None,
    };
    let request = first.as_deref().map(serde_json::from_str::<Request>);
    if let Some(Ok(Request::Suppression { what })) = request {
        // it writes its own replies, as fast as the client reads them
        super::suppression::serve(Arc::clone(&ctx.suppression), what, wr).await;
        return;
    }
    if let (Some(Ok(Request::Queue { what })), Some(peer)) = (&request, peer) {
        let drain = ctx.drain.as_ref();
        super::queue::serve(&ctx.handle, &ctx.spool, drain, peer, what.clone(), wr).await;
        return;
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<Reply>();
    let writer = tokio::spawn(async move {
        while let Some(r) = rx.recv().await {
            let mut line = serde_json::to_vec(&r).unwrap_or_default();
            line.push(b'\n');
            if wr.write_all(&line).await.is_err() {
                break;
            }
        }
    });
    match request {
        _ if !permitted => {
            let _ = tx.send(Reply::Error {
                code: EXIT_FAILURE,
                message: "permission denied: the control socket serves the service's own user"
                    .into(),
            });
        }
        Some(Ok(Request::Enqueue { .. } | Request::Send { .. }))
            if ctx.draining.load(Ordering::Acquire) =>
        {
            let _ = tx.send(Reply::Error {
                code: EXIT_FAILURE,
                message: "the service is draining and takes no new work (`volley queue resume` ends the drain)".into(),
            });
        }
        Some(Ok(Request::Enqueue { campaign })) => job(&ctx, &campaign, false, &tx, lines).await,
        Some(Ok(Request::Send { campaign })) => job(&ctx, &campaign, true, &tx, lines).await,
        None => {}
        _ => {
            let _ = tx.send(Reply::Error {
                code: EXIT_FAILURE,
                message: "bad request".into(),
            });
        }
    }
    drop(tx);
    let _ = writer.await;
}

type Lines = tokio::io::Lines<BufReader<tokio::io::Take<tokio::net::unix::OwnedReadHalf>>>;

/// One campaign job run for a client.
async fn job(
    ctx: &ControlCtx,
    path: &Path,
    send: bool,
    tx: &mpsc::UnboundedSender<Reply>,
    mut lines: Lines,
) {
    let start = Instant::now();
    let loaded = match campaign::load(path).and_then(|l| l.with_configuration_set(&ctx.config)) {
        Ok(l) => l,
        Err(e) => {
            let _ = tx.send(Reply::Error {
                code: EXIT_BAD_INPUT,
                message: e.to_string(),
            });
            return;
        }
    };
    let id = loaded.def.id.clone();
    let before = ctx.spool.summary();
    let halt = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicU64::new(0));
    let mut ingest = {
        let (spool, handle, halt, total) = (
            Arc::clone(&ctx.spool),
            ctx.handle.clone(),
            Arc::clone(&halt),
            Arc::clone(&total),
        );
        let out = tx.clone();
        tokio::task::spawn_blocking(move || {
            let mut report = SkipReport::to(
                &loaded.recipients,
                Box::new(move |text| {
                    let _ = out.send(Reply::Line { text });
                }),
            );
            let topic = loaded
                .def
                .list_management
                .as_ref()
                .and_then(|l| l.topic.clone());
            let mut domains = ingest::Domains::default();
            let opts = ingest::Options {
                stop: Some(&halt),
                ..Default::default()
            };
            ingest::run(
                &spool,
                &loaded,
                opts,
                |ids, recs| {
                    total.fetch_add(ids.len() as u64, Ordering::Relaxed);
                    handle.enqueue_records(&mut domains, ids, recs, topic.as_deref());
                },
                |s| report.report(s),
            )
        })
    };
    let mut summary = None;
    let mut failure = None;
    let mut interrupted: Option<String> = None;
    let mut client_gone = false;
    // the ingest, and a stop (or the client leaving) meanwhile
    loop {
        tokio::select! {
            r = &mut ingest => {
                match r {
                    Ok(Ok(s)) => summary = Some(s),
                    Ok(Err(e @ IngestError::Append { .. })) => failure = Some(e.to_string()),
                    Ok(Err(e)) => {
                        let code = match e {
                            IngestError::List(_) | IngestError::StoredCampaign { .. } => EXIT_BAD_INPUT,
                            _ => EXIT_FAILURE,
                        };
                        let _ = tx.send(Reply::Error { code, message: e.to_string() });
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Reply::Error { code: EXIT_FAILURE, message: format!("ingest task failed: {e}") });
                        return;
                    }
                }
                break;
            }
            l = lines.next_line(), if !client_gone => match l {
                Ok(Some(l)) => {
                    if let Ok(Request::Stop { signal }) = serde_json::from_str(&l) {
                        halt.store(true, Ordering::Release);
                        interrupted = Some(signal);
                    }
                }
                _ => {
                    // the job went away: read no more of its list
                    halt.store(true, Ordering::Release);
                    client_gone = true;
                }
            },
        }
    }
    if client_gone {
        return;
    }
    let no = ctx.spool.campaign_by_id(&id).map(|c| c.no);
    let (rejected, duplicates, unfinished) = summary
        .as_ref()
        .map_or((0, 0, true), |s| (s.rejected, s.duplicates, s.interrupted));
    if let Some(s) = &summary
        && s.already_complete
    {
        let _ = tx.send(Reply::Line {
            text: format!(
                "campaign {} is already spooled ({} recipients){}",
                id,
                s.earlier,
                if send {
                    "; delivering what remains"
                } else {
                    ""
                }
            ),
        });
    }
    if !send {
        let s = summary.as_ref();
        let _ = tx.send(Reply::Enqueued {
            id,
            spooled: s.map_or(0, |s| s.accepted + s.earlier),
            rejected,
            duplicates,
            already_complete: s.is_some_and(|s| s.already_complete),
            interrupted: unfinished,
        });
        return;
    }
    let counts_of = |s: &volley_spool::Summary| {
        no.and_then(|n| s.campaigns.get(&n))
            .map(|c| c.counts)
            .unwrap_or_default()
    };
    let finals = |c: &volley_spool::Counts| c.delivered + c.bounced + c.failed;
    let c_before = counts_of(&before);
    // until every recipient is final or deferred, and their events are in
    // the events file (a stop ends the wait: the service goes on)
    let mut settled_at: Option<u64> = None;
    while interrupted.is_none() && failure.is_none() {
        let now = counts_of(&ctx.spool.summary());
        let _ = tx.send(Reply::Progress {
            total: now.total(),
            counts: now.into(),
            finals: finals(&now).saturating_sub(finals(&c_before)),
        });
        if now.queued == 0 {
            let pos = *settled_at.get_or_insert_with(|| ctx.spool.journal_end());
            let published = ctx
                .events_file
                .as_ref()
                .is_none_or(|p| p.load(Ordering::Acquire) >= pos);
            if published {
                break;
            }
        }
        tokio::select! {
            l = lines.next_line() => match l {
                Ok(Some(l)) => {
                    if let Ok(Request::Stop { signal }) = serde_json::from_str(&l) {
                        interrupted = Some(signal);
                    }
                }
                _ => return,
            },
            _ = tokio::time::sleep(PROGRESS_EVERY) => {}
        }
    }
    let after = ctx.spool.summary();
    let counts = counts_of(&after);
    let o = Others::between(&before, &after, no.unwrap_or(u32::MAX));
    let _ = tx.send(Reply::Done {
        campaign: id,
        counts: counts.into(),
        finals: finals(&counts).saturating_sub(finals(&c_before)),
        rejected,
        duplicates,
        others: [o.delivered, o.bounced, o.failed, o.deferred, o.queued],
        elapsed_ms: start.elapsed().as_millis() as u64,
        interrupted,
        list_unfinished: unfinished,
        failure,
    });
}

/// Connects to a running service's control socket (`None`: no service).
pub async fn connect(config: &Config) -> Option<UnixStream> {
    UnixStream::connect(socket_path(config)).await.ok()
}

mod remote;

pub(super) use remote::remote;
