//! Campaign bundles in the drop directory: a directory holding a campaign
//! file (`campaign.toml`, or its only `.toml`) with the templates and the
//! recipient list it names (relative to it), renamed into `pickup/new/`
//! whole. Spooled as `volley enqueue` spools a campaign (the same checks,
//! the same resumption by campaign id after a crash) and handed to
//! delivery. Rows of the list that are rejected are logged with the
//! count; the bundle is removed once its campaign is sealed.
//! Exposure: the bundle is hostile input (campaign file, templates, list).

use std::path::{Path, PathBuf};

use super::PickupCtx;
use crate::ingest::{self, Domains, IngestError};

/// Why a bundle was not spooled.
#[derive(Debug)]
pub enum BundleError {
    /// Its content is wrong: it goes to `rejected/`.
    Bad(String),
    /// The spool refused: try again later.
    Spool(String),
}

/// The campaign file of a bundle.
fn campaign_file(dir: &Path) -> Result<PathBuf, String> {
    let named = dir.join("campaign.toml");
    if named.is_file() {
        return Ok(named);
    }
    let tomls: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot list the bundle: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    match tomls.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err("a bundle needs a campaign file (campaign.toml)".into()),
        _ => Err("several .toml files and no campaign.toml: which is the campaign?".into()),
    }
}

/// Checks that the files the campaign names (templates, list) are inside
/// the bundle: a bundle must not make the service read (and send) other
/// files of this machine.
fn files_inside(dir: &Path, file: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("campaign file: {e}"))?;
    let value: toml::Table = text.parse().map_err(|e| format!("campaign file: {e}"))?;
    let root = dir.canonicalize().map_err(|e| e.to_string())?;
    for key in ["html", "text", "recipients"] {
        let Some(name) = value.get(key).and_then(|v| v.as_str()) else {
            continue;
        };
        let inside = dir
            .join(name)
            .canonicalize()
            .is_ok_and(|p| p.starts_with(&root));
        if !inside {
            return Err(format!(
                "`{key}` = {name:?} is not a file inside the bundle"
            ));
        }
    }
    Ok(())
}

/// Spools the bundle's campaign and hands its recipients to delivery.
pub fn ingest(ctx: &PickupCtx, dir: &Path) -> Result<(), BundleError> {
    let file = campaign_file(dir).map_err(BundleError::Bad)?;
    // symlinks inside the bundle could point anywhere on this machine
    if std::fs::symlink_metadata(&file).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(BundleError::Bad("the campaign file is a symlink".into()));
    }
    files_inside(dir, &file).map_err(BundleError::Bad)?;
    let loaded = crate::campaign::load(&file)
        .and_then(|l| l.with_configuration_set(&ctx.config))
        .map_err(|e| BundleError::Bad(e.to_string()))?;
    let mut domains = Domains::default();
    let mut rejected = 0u64;
    let engine = ctx.engine.clone();
    let summary = ingest::run(
        &ctx.spool,
        &loaded,
        ingest::Options {
            stop: Some(&ctx.stop),
            ..Default::default()
        },
        |ids, recs| {
            if let Some(h) = &engine {
                h.enqueue_records(&mut domains, ids, recs, None);
            }
        },
        |_| rejected += 1,
    )
    .map_err(|e| match e {
        IngestError::List(l) => BundleError::Bad(l.to_string()),
        other => BundleError::Spool(other.to_string()),
    })?;
    if summary.interrupted {
        return Err(BundleError::Spool(
            "stopped before the end of the list".into(),
        ));
    }
    tracing::info!(
        bundle = %dir.display(),
        campaign = %summary.def.id,
        spooled = summary.accepted + summary.earlier,
        rejected,
        "campaign bundle spooled"
    );
    Ok(())
}
