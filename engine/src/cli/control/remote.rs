//! The job's side of the control socket: a `volley send` or `enqueue`
//! handing its campaign to the running service, showing the progress and
//! summary the service reports, and passing on SIGINT/SIGTERM as `stop`.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::{Reply, Request};
use crate::cli::progress::{Progress, Shown};
use crate::cli::run::Stop;
use crate::cli::summary::{Job, Others, not_spooled, print_summary};
use crate::cli::{CliError, CliResult, job_exit_code};

fn signal_name(s: &str) -> &'static str {
    if s == "SIGINT" { "SIGINT" } else { "SIGTERM" }
}

/// Runs a job through the service: `send` or `enqueue` of `campaign`.
pub(in crate::cli) async fn remote(
    stream: UnixStream,
    campaign: &Path,
    send: bool,
    stop: &mut Stop,
) -> CliResult {
    let campaign = std::path::absolute(campaign).map_err(crate::cli::fail)?;
    let (rd, mut wr) = stream.into_split();
    let req = if send {
        Request::Send {
            campaign: campaign.clone(),
        }
    } else {
        Request::Enqueue {
            campaign: campaign.clone(),
        }
    };
    let mut line = serde_json::to_vec(&req).map_err(crate::cli::fail)?;
    line.push(b'\n');
    wr.write_all(&line).await.map_err(crate::cli::fail)?;
    eprintln!(
        "the spool is held by a running `volley run`: handing {} to it",
        campaign.display()
    );
    let mut replies = BufReader::new(rd).lines();
    let mut progress = send.then(Progress::new);
    let mut signalled: Option<&'static str> = None;
    loop {
        let reply = tokio::select! {
            l = replies.next_line() => l,
            sig = stop.wait(), if signalled.is_none() => {
                signalled = Some(sig);
                let mut line = serde_json::to_vec(&Request::Stop { signal: sig.to_string() }).map_err(crate::cli::fail)?;
                line.push(b'\n');
                let _ = wr.write_all(&line).await;
                continue;
            }
        };
        let Ok(Some(l)) = reply else {
            return Err(crate::cli::fail(anyhow::anyhow!(
                "the running service closed the control connection"
            )));
        };
        let Ok(r) = serde_json::from_str::<Reply>(&l) else {
            continue;
        };
        match r {
            Reply::Error { code, message } => {
                if let Some(p) = &progress {
                    p.finish();
                }
                return Err(CliError {
                    code,
                    error: anyhow::anyhow!(message),
                });
            }
            Reply::Line { text } => eprintln!("{text}"),
            Reply::Progress {
                total,
                counts,
                finals,
            } => {
                if let Some(p) = progress.as_mut() {
                    let done = counts.delivered + counts.bounced + counts.failed + counts.deferred;
                    p.show(
                        total,
                        done,
                        Shown {
                            delivered: counts.delivered,
                            bounced: counts.bounced,
                            failed: counts.failed,
                            deferred: counts.deferred,
                            finals,
                        },
                    );
                }
            }
            Reply::Enqueued {
                id,
                spooled,
                rejected,
                duplicates,
                already_complete,
                interrupted,
            } => {
                let skipped = not_spooled(rejected, duplicates);
                if already_complete {
                    println!("campaign {id} was already spooled: {spooled} recipients");
                } else if interrupted {
                    println!(
                        "campaign {id} (stopped by {}): {spooled} recipients spooled{skipped}; the list was spooled only in part",
                        signalled.unwrap_or("a signal")
                    );
                    eprintln!(
                        "`volley enqueue {}` (or `send`) again resumes after the last spooled row",
                        campaign.display()
                    );
                } else {
                    println!(
                        "campaign {id}: {spooled} recipients spooled{skipped}; the running service delivers it"
                    );
                }
                let interrupted = signalled.filter(|_| interrupted);
                return Ok(job_exit_code(interrupted, 0, rejected));
            }
            Reply::Done {
                campaign: id,
                counts,
                finals,
                rejected,
                duplicates,
                others,
                elapsed_ms,
                interrupted,
                list_unfinished,
                failure,
            } => {
                if let Some(p) = &progress {
                    p.finish();
                }
                let interrupted = interrupted.as_deref().map(signal_name);
                let job = Job {
                    campaign: id.clone(),
                    counts: counts.into(),
                    finals,
                    rejected,
                    duplicates,
                    others: Others {
                        delivered: others[0],
                        bounced: others[1],
                        failed: others[2],
                        deferred: others[3],
                        queued: others[4],
                    },
                    elapsed: Duration::from_millis(elapsed_ms),
                    interrupted,
                    list_unfinished,
                    failure: None,
                };
                print_summary(&job);
                if let Some(f) = failure {
                    return Err(crate::cli::fail(anyhow::anyhow!(f)));
                }
                let pending = counts.queued + counts.deferred;
                if let Some(sig) = interrupted {
                    let list = if list_unfinished {
                        "; the list was spooled only in part"
                    } else {
                        ""
                    };
                    eprintln!(
                        "stopped by {sig}: {pending} recipients of campaign {id} are not final; the running service goes on delivering them{list}; \
                         `volley send {}` again resumes the list",
                        campaign.display()
                    );
                } else if counts.deferred > 0 {
                    eprintln!(
                        "{} recipients are deferred; the running service retries them",
                        counts.deferred
                    );
                }
                return Ok(job_exit_code(interrupted, counts.deferred, rejected));
            }
        }
    }
}
