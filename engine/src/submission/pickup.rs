//! The spool drop directory (`pickup/`), Maildir-style: writers create a
//! file in `pickup/tmp/` and rename it into `pickup/new/` (a campaign
//! bundle: a directory renamed into `new/` whole). The service notices new
//! entries at once (`watch`: inotify, polling as the fallback), ingests
//! them and removes each only after durable acceptance.
//!
//! - A file is a message (`.eml`, any name): its envelope from
//!   `envelope`, then [`super::message::prepare`] and the acceptor, in
//!   groups (many files share each sync).
//! - A directory is a campaign bundle (`bundle`): its campaign file with
//!   templates and list, spooled as `volley enqueue` would.
//! - Anything wrong moves the entry to `pickup/rejected/` with a
//!   `NAME.reason` file saying what: too large, no recipients, header
//!   bombs, bad addresses, symlinks, devices, a bundle without a campaign.
//!
//! Crash safety: a file is removed only after its message is durable; its
//! spool id is derived from its content and identity (SHA-256, inode,
//! mtime), so a file found again after a crash between acceptance and
//! removal is recognised and removed, not stored twice; one whose records
//! were written but not yet acknowledged (recovery adopts them) gets its
//! missing recipients added to the same message and is sealed. Exposure: every
//! entry in `new/` is hostile input; none can crash or stall the loop.

pub mod bundle;
pub mod envelope;
pub mod watch;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use volley_spool::Spool;

use super::accept::{Acceptor, Ticket};
use super::message::{self, Limits};
use crate::campaign::MessageMeta;
use crate::config::Config;
use crate::engine::Handle;

/// Entries taken per round (their messages are accepted as one group).
const ROUND: usize = 256;
/// How long the loop waits when nothing happens (a safety net with
/// inotify; the polling period without it).
const IDLE_WAIT: Duration = Duration::from_millis(500);

/// What the drop directory did.
#[derive(Debug, Default)]
pub struct PickupStats {
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub bundles: AtomicU64,
}

/// What the pickup loop needs.
pub struct PickupCtx {
    pub dir: PathBuf,
    pub spool: Arc<Spool>,
    pub acceptor: Acceptor,
    pub config: Arc<Config>,
    pub engine: Option<Handle>,
    pub stop: Arc<AtomicBool>,
    pub stats: Arc<PickupStats>,
}

/// Creates `tmp/`, `new/` and `rejected/` under `dir`.
pub fn prepare_dirs(dir: &Path) -> std::io::Result<()> {
    for sub in ["tmp", "new", "rejected"] {
        fs::create_dir_all(dir.join(sub))?;
    }
    Ok(())
}

/// Starts the pickup thread.
pub fn start(ctx: PickupCtx) -> std::io::Result<std::thread::JoinHandle<()>> {
    prepare_dirs(&ctx.dir)?;
    std::thread::Builder::new()
        .name("pickup".into())
        .spawn(move || run(&ctx))
}

fn run(ctx: &PickupCtx) {
    let new = ctx.dir.join("new");
    let watch = watch::Watch::new(&new);
    tracing::info!(dir = %ctx.dir.display(), inotify = watch.is_inotify(), "drop directory watched");
    while !ctx.stop.load(Ordering::Acquire) {
        let names = match list(&new) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(dir = %new.display(), error = %e, "cannot list the drop directory");
                watch.wait(IDLE_WAIT);
                continue;
            }
        };
        if names.is_empty() {
            watch.wait(IDLE_WAIT);
            continue;
        }
        for chunk in names.chunks(ROUND) {
            if ctx.stop.load(Ordering::Acquire) {
                break;
            }
            if !round(ctx, chunk) {
                // the spool refused: wait before trying again
                watch.wait(Duration::from_secs(1));
                break;
            }
        }
    }
}

/// Names in `new/`, oldest first (by name: Maildir names start with the
/// time).
fn list(new: &Path) -> std::io::Result<Vec<std::ffi::OsString>> {
    let mut names: Vec<_> = fs::read_dir(new)?
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .filter(|n| !n.as_encoded_bytes().starts_with(b"."))
        .collect();
    names.sort();
    Ok(names)
}

/// A message on its way: its file and the acceptor's answer to come.
struct InFlight {
    path: PathBuf,
    ticket: Ticket,
}

/// Handles one round of entries; `false` when the spool refused messages.
fn round(ctx: &PickupCtx, names: &[std::ffi::OsString]) -> bool {
    let new = ctx.dir.join("new");
    let mut waiting = Vec::new();
    for name in names {
        let path = new.join(name);
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(_) => continue, // gone meanwhile
        };
        let ft = meta.file_type();
        if ft.is_dir() {
            match bundle::ingest(ctx, &path) {
                Ok(()) => {
                    ctx.stats.bundles.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = fs::remove_dir_all(&path) {
                        tracing::error!(path = %path.display(), error = %e, "cannot remove an ingested bundle");
                    }
                }
                Err(bundle::BundleError::Bad(why)) => reject(ctx, &path, &why),
                Err(bundle::BundleError::Spool(why)) => {
                    tracing::error!(path = %path.display(), error = %why, "bundle not spooled; retrying later");
                    return false;
                }
            }
            continue;
        }
        if !ft.is_file() {
            reject(
                ctx,
                &path,
                "not a regular file or directory (a symlink, device, FIFO or socket)",
            );
            continue;
        }
        match message_of(ctx, &path, &meta) {
            Ok(Taken::Submitted(ticket)) => waiting.push(InFlight { path, ticket }),
            Ok(Taken::Stored) => {
                // stored before a crash cut the removal short
                let _ = fs::remove_file(&path);
            }
            Ok(Taken::Later(why)) => {
                tracing::error!(path = %path.display(), error = %why, "message not accepted; retrying later");
                return false;
            }
            Err(why) => reject(ctx, &path, &why),
        }
    }
    let mut ok = true;
    for w in waiting {
        match w.ticket.wait() {
            Ok(_) => {
                ctx.stats.accepted.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = fs::remove_file(&w.path) {
                    tracing::error!(path = %w.path.display(), error = %e, "cannot remove an accepted file");
                }
            }
            Err(e) => {
                tracing::error!(path = %w.path.display(), error = %e, "message not accepted; retrying later");
                ok = false;
            }
        }
    }
    ok
}

/// What became of a message file (an `Err` rejects it).
enum Taken {
    /// Given to the acceptor.
    Submitted(Ticket),
    /// The spool already holds it whole.
    Stored,
    /// The spool refused: try again later.
    Later(String),
}

/// Reads and checks one message file.
fn message_of(ctx: &PickupCtx, path: &Path, meta: &fs::Metadata) -> Result<Taken, String> {
    let s = &ctx.config.submission;
    let max = usize::try_from(s.max_message_size).unwrap_or(usize::MAX);
    if meta.len() > max as u64 {
        return Err(format!(
            "message is {} bytes; the limit is {max}",
            meta.len()
        ));
    }
    let raw = read_nofollow(path, max).map_err(|e| format!("cannot read it: {e}"))?;
    let id = spool_id(&raw, meta);
    if ctx.spool.campaign_by_id(&id).is_some_and(|c| c.is_sealed()) {
        return Ok(Taken::Stored);
    }
    let env = envelope::of(&raw)?;
    let meta = MessageMeta {
        mail_from: if env.mail_from.is_empty() {
            String::new()
        } else {
            crate::address::parse(&env.mail_from)
                .map_err(|e| format!("sender <{}>: {e}", env.mail_from))?
                .email
        },
        source: "pickup".into(),
        user: None,
        add_message_id: false,
    };
    let limits = Limits {
        max_size: max,
        max_recipients: s.max_recipients as usize,
    };
    let stored = ctx.spool.campaign_by_id(&id);
    // a message stored without recipients (a crash came between its
    // campaign and their append) is stored again under a fresh id
    let fresh = stored.is_some();
    let sid = if fresh {
        super::smtp::session::unique_id("pickup")
    } else {
        id
    };
    let now = (volley_spool::now_ms() / 1000) as i64;
    let prepared = message::prepare(
        &raw,
        meta,
        &env.rcpts,
        &limits,
        ctx.config.as_ref(),
        sid,
        now,
    )
    .map_err(|e| e.to_string())?;
    if let Some(c) = stored {
        match complete_adopted(ctx, c.no, &prepared.rcpts) {
            Ok(true) => return Ok(Taken::Stored),
            Ok(false) => {}
            Err(why) => return Ok(Taken::Later(why)),
        }
    }
    Ok(Taken::Submitted(ctx.acceptor.submit(prepared)))
}

/// A message whose acceptance a crash cut short after its recipients'
/// records were written (recovery adopted them, unsealed): its missing
/// recipients are added to the same campaign and it is sealed, so nothing
/// is stored twice. `false` when none of its recipients is in the spool.
fn complete_adopted(ctx: &PickupCtx, no: u32, rcpts: &[String]) -> Result<bool, String> {
    let mut present = std::collections::HashSet::new();
    ctx.spool.for_each(|_, _, _, r| {
        if r.campaign.to_native() == no {
            present.insert(r.email.to_string());
        }
    });
    if present.is_empty() {
        return Ok(false);
    }
    let recs: Vec<volley_spool::Recipient> = rcpts
        .iter()
        .enumerate()
        .filter(|(_, r)| !present.contains(*r))
        .map(|(i, r)| volley_spool::Recipient {
            campaign: no,
            row: i as u32 + 1,
            email: r.clone(),
            vars: Vec::new(),
        })
        .collect();
    let ids = ctx
        .spool
        .append_and_seal(&recs, &[no])
        .map_err(|e| format!("the spool refused it: {e}"))?;
    if let Some(h) = &ctx.engine {
        h.enqueue_records(&mut crate::ingest::Domains::default(), &ids, &recs, None);
    }
    tracing::info!(
        campaign = no,
        added = recs.len(),
        "a message cut short by a crash completed"
    );
    Ok(true)
}

/// Reads a regular file without following a symlink, at most `max` bytes
/// (more is an error).
fn read_nofollow(path: &Path, max: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let mut out = Vec::new();
    f.take(max as u64 + 1).read_to_end(&mut out)?;
    if out.len() > max {
        return Err(std::io::Error::other(format!("larger than {max} bytes")));
    }
    Ok(out)
}

/// The spool id of a dropped file: its content's SHA-256 with its inode
/// and modification time (the same file found again has the same id).
fn spool_id(raw: &[u8], meta: &fs::Metadata) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, raw);
    let hex: String = digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "pickup:{hex}-{}-{}.{}",
        meta.ino(),
        meta.mtime(),
        meta.mtime_nsec()
    )
}

/// Moves an entry to `rejected/` with a `.reason` file.
pub(crate) fn reject(ctx: &PickupCtx, path: &Path, why: &str) {
    ctx.stats.rejected.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    let rejected = ctx.dir.join("rejected");
    let mut target = rejected.join(&name);
    let mut n = 1;
    while fs::symlink_metadata(&target).is_ok()
        || fs::symlink_metadata(reason_path(&target)).is_ok()
    {
        let mut alt = name.clone();
        alt.push(format!(".{n}"));
        target = rejected.join(alt);
        n += 1;
    }
    tracing::warn!(entry = %path.display(), reason = why, "drop directory entry rejected");
    if let Err(e) = fs::rename(path, &target) {
        tracing::error!(entry = %path.display(), error = %e, "cannot move a rejected entry; removing it");
        let _ = fs::remove_file(path).or_else(|_| fs::remove_dir_all(path));
        return;
    }
    let text = format!(
        "{}: {why}\n",
        String::from_utf8_lossy(name.as_encoded_bytes())
    );
    if let Err(e) = fs::write(reason_path(&target), text) {
        tracing::error!(entry = %target.display(), error = %e, "cannot write the reason file");
    }
}

fn reason_path(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_os_string();
    s.push(".reason");
    PathBuf::from(s)
}
