//! Carrying out `volley queue` actions on the running service (asked over
//! the control socket or the admin HTTP API) and logging each in the
//! spool's action log before it is answered. Exposure: the requests come
//! from the control socket's local clients or authenticated HTTP callers;
//! their values are checked by the engine's operator methods.

use std::path::Path;

use volley_engine::admin_log::{self, Action};
use volley_engine::delivery::endings::End;
use volley_engine::delivery::holds::Hold;
use volley_engine::delivery::scheduler::Deferred;
use volley_engine::engine::Handle;

use super::{DrainReq, Op, Peer};

/// Carries out an action and logs it; the text to print.
pub async fn act(
    handle: &Handle,
    spool_dir: &Path,
    drain: Option<&tokio::sync::mpsc::UnboundedSender<DrainReq>>,
    peer: Peer,
    op: Op,
) -> Result<String, String> {
    let (action, target, result, text) = match op {
        Op::Drain { on, wait_secs } => {
            let drain = drain.ok_or("only a running `volley run` drains")?;
            let (reply, answer) = tokio::sync::oneshot::channel();
            let wait = std::time::Duration::from_secs(wait_secs.clamp(1, 24 * 3600));
            drain
                .send(DrainReq { on, wait, reply })
                .map_err(|_| "the service is shutting down")?;
            let text = answer.await.map_err(|_| "the service is shutting down")??;
            let action = if on { "drain" } else { "resume" };
            (
                action,
                serde_json::json!("service"),
                serde_json::json!({ "report": text }),
                text,
            )
        }
        Op::Inspect { .. } | Op::Deferred { .. } => return Err("not an action".into()),
        Op::Retry { which } => retry(handle, which).await?,
        Op::Warmup { source, act } => {
            handle.warmup(source.clone(), act).await?;
            let what = serde_json::to_value(act).unwrap_or_default();
            let text = format!(
                "source {source}: warm-up {}",
                match act {
                    volley_engine::delivery::warmup::Action::Pause => "paused",
                    volley_engine::delivery::warmup::Action::Resume => "resumed",
                    volley_engine::delivery::warmup::Action::Reset => "reset to day 1",
                    volley_engine::delivery::warmup::Action::Complete => "complete (established)",
                }
            );
            (
                "warmup",
                serde_json::json!({ "source": source }),
                serde_json::json!({ "action": what }),
                text,
            )
        }
        Op::End { end, reason } => {
            let changed = handle
                .end(end.clone(), reason.clone())
                .await
                .map_err(|e| format!("the ending could not be stored: {e}"))?;
            let (action, target, text) = match (&end, changed) {
                (End::Campaign(c), true) => (
                    "cancel",
                    serde_json::json!({ "campaign": c }),
                    format!(
                        "campaign {c} cancelled: its unsent recipients end with a Reject event"
                    ),
                ),
                (End::Campaign(c), false) => (
                    "cancel",
                    serde_json::json!({ "campaign": c }),
                    format!("campaign {c} was already cancelled"),
                ),
                (End::Domain(d), _) => (
                    "bounce",
                    serde_json::json!({ "domain": d }),
                    format!("{d}: every recipient queued now ends with a Bounce event"),
                ),
            };
            let result = serde_json::json!({ "changed": changed, "reason": reason });
            (action, target, result, text)
        }
        Op::Reroute { domain, to } => {
            let changed = handle.reroute(&domain, to.clone()).await?;
            let text = match (&to, changed) {
                (Some(t), true) => format!("{domain} rerouted to {t}"),
                (Some(t), false) => format!("{domain} was already rerouted to {t}"),
                (None, true) => format!("{domain}: reroute cleared"),
                (None, false) => format!("{domain} was not rerouted"),
            };
            let target = serde_json::json!({ "domain": domain });
            let result = serde_json::json!({ "to": to, "changed": changed });
            ("reroute", target, result, text)
        }
        Op::Hold { hold, on } => {
            let changed = handle
                .hold(hold.clone(), on)
                .await
                .map_err(|e| format!("the holds could not be stored: {e}"))?;
            let target = serde_json::to_value(&hold).unwrap_or_default();
            let (kind, name) = match &hold {
                Hold::Domain(d) => ("domain", d),
                Hold::Site(s) => ("site", s),
                Hold::Campaign(c) => ("campaign", c),
            };
            let text = match (on, changed) {
                (true, true) => format!("{kind} {name} held"),
                (true, false) => format!("{kind} {name} was already held"),
                (false, true) => format!("{kind} {name} released"),
                (false, false) => format!("{kind} {name} was not held"),
            };
            let action = if on { "hold" } else { "release" };
            (
                action,
                target,
                serde_json::json!({ "changed": changed }),
                text,
            )
        }
    };
    let entry = Action {
        at: volley_engine::events::model::timestamp(volley_spool::now_ms()),
        uid: None,
        pid: None,
        principal: None,
        remote: None,
        action: action.into(),
        target,
        result,
    };
    let entry = match peer {
        Peer::Local { uid, pid } => Action {
            uid: Some(uid),
            pid,
            ..entry
        },
        Peer::Http { name, remote } => Action {
            principal: Some(name),
            remote: Some(remote),
            ..entry
        },
    };
    let dir = spool_dir.to_path_buf();
    let logged = tokio::task::spawn_blocking(move || admin_log::append(&dir, &entry)).await;
    match logged {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(format!("the action was taken but not logged: {e}")),
        Err(e) => return Err(format!("the action was taken but not logged: {e}")),
    }
    Ok(text)
}

type Done = (&'static str, serde_json::Value, serde_json::Value, String);

async fn retry(handle: &Handle, which: Deferred) -> Result<Done, String> {
    let made = handle
        .retry_now(which.clone())
        .await
        .ok_or("the service is shutting down")?;
    let (target, what) = match &which {
        Deferred::All => (
            serde_json::json!("all"),
            "every deferred recipient".to_string(),
        ),
        Deferred::Domain(d) => (
            serde_json::json!({ "domain": d }),
            format!("deferred recipients of {d}"),
        ),
        Deferred::Site(s) => (
            serde_json::json!({ "site": s }),
            format!("deferred recipients of site {s}"),
        ),
    };
    let text = format!("{made} recipients tried now ({what})");
    Ok((
        "retry",
        target,
        serde_json::json!({ "recipients": made }),
        text,
    ))
}
