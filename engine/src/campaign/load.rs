//! Loading a campaign file: the TOML as the user wrote it, checked key by
//! key (sender, reply-to, tags, list management, `to` against
//! `personalized`), its template files read and compiled once, into a
//! [`LoadedCampaign`]. Exposure: campaign files and templates are operator
//! input; every problem is a [`CampaignError`] naming the file, the key
//! and the line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{CampaignDef, CampaignError, ListManagement, LoadedCampaign};
use crate::address;

/// The campaign file as written by the user.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CampaignFile {
    id: String,
    from: String,
    subject: String,
    html: Option<PathBuf>,
    text: Option<PathBuf>,
    recipients: PathBuf,
    reply_to: Option<String>,
    list_unsubscribe: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    personalized: Option<bool>,
    to: Option<String>,
    configuration_set: Option<String>,
    pool: Option<String>,
    list_management: Option<ListManagement>,
}

/// Reads a campaign file and everything it names; checks templates compile.
pub fn load(path: &Path) -> Result<LoadedCampaign, CampaignError> {
    let read = |what: &'static str, p: &Path| {
        std::fs::read_to_string(p).map_err(|error| CampaignError::Read {
            what,
            path: p.to_path_buf(),
            error,
        })
    };
    let text = read("campaign file", path)?;
    let f: CampaignFile = toml::from_str(&text).map_err(|e| CampaignError::Parse {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let invalid = |key: &'static str, reason: String| CampaignError::Invalid {
        path: path.to_path_buf(),
        key,
        reason,
    };
    if f.id.is_empty()
        || f.id.len() > 128
        || !f
            .id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(invalid(
            "id",
            "use 1-128 letters, digits, '-', '_' or '.'".into(),
        ));
    }
    let from = address::parse_mailbox(&f.from).map_err(|r| invalid("from", r))?;
    if let Some(r) = &f.reply_to {
        address::parse_mailbox(r).map_err(|e| invalid("reply_to", e))?;
    }
    if f.html.is_none() && f.text.is_none() {
        return Err(invalid("html", "set `html`, `text` or both".into()));
    }
    for (name, value) in &f.tags {
        let ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 256
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b))
        };
        if !ok(name) || !ok(value) {
            return Err(invalid(
                "tags",
                format!(
                    "{name:?} = {value:?}: names and values use letters, digits, '_' and '-' (at most 256)"
                ),
            ));
        }
    }
    let html = f
        .html
        .as_ref()
        .map(|p| read("html template", &base.join(p)))
        .transpose()?;
    let text_body = f
        .text
        .as_ref()
        .map(|p| read("text template", &base.join(p)))
        .transpose()?;
    if let Some(l) = &f.list_management {
        let ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        };
        if !ok(&l.contact_list) || !l.topic.as_deref().is_none_or(ok) {
            return Err(invalid(
                "list_management",
                "contact_list and topic use letters, digits, '_', '-' and '.' (at most 64)".into(),
            ));
        }
    }
    let personalized = f.personalized.unwrap_or(true);
    match (&f.to, personalized) {
        (Some(_), true) => {
            return Err(invalid(
                "to",
                "only for `personalized = false` (a personalized message is addressed to its recipient)".into(),
            ));
        }
        (Some(t), false) => {
            address::parse_mailbox(t).map_err(|e| invalid("to", e))?;
        }
        (None, _) => {}
    }
    let def = CampaignDef {
        id: f.id,
        from: f.from.trim().to_string(),
        from_name: from.name,
        from_addr: from.address.email,
        reply_to: f.reply_to,
        subject: f.subject,
        html,
        text: text_body,
        list_unsubscribe: f.list_unsubscribe,
        tags: f.tags,
        columns: Vec::new(),
        personalized,
        to: f.to.map(|t| t.trim().to_string()),
        configuration_set: f.configuration_set,
        message: None,
        list_management: f.list_management,
        pool: f.pool,
    };
    let templates = crate::template::Templates::compile(def.template_sources()).map_err(|e| {
        let file = match e.part {
            "html" => f.html.clone(),
            "text" => f.text.clone(),
            _ => None,
        };
        match file {
            Some(file) => CampaignError::Template {
                path: path.to_path_buf(),
                key: e.part,
                file,
                reason: e.message,
            },
            None => invalid(e.part, e.message),
        }
    })?;
    if !personalized {
        // one message for everyone: it must render without recipient data
        templates
            .render(serde_json::Value::Object(serde_json::Map::new()))
            .map_err(|e| {
                invalid(
                    "personalized",
                    format!(
                        "`personalized = false` but the templates use recipient data: {}",
                        e.message
                    ),
                )
            })?;
    }
    Ok(LoadedCampaign {
        def,
        recipients: base.join(f.recipients),
        path: path.to_path_buf(),
    })
}
