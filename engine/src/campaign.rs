//! Campaign files (TOML) and the campaign definition stored in the spool.
//!
//! A campaign file names the sender, the Handlebars templates (inline subject,
//! file paths for HTML/text bodies), the recipient list and optional tags and
//! unsubscribe URL template. Loading reads the template files, compiles every
//! template once (so syntax errors, and templates that could never render,
//! are reported before anything is spooled) and produces a [`CampaignDef`],
//! which is what the spool stores once per campaign. Exposure: campaign
//! files and templates are operator input; every problem is a
//! [`CampaignError`] naming the file (a template file as the campaign file
//! names it), the key and the line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::address;

/// Errors loading a campaign.
#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    #[error("cannot read {what} {path}: {error}")]
    Read {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("campaign {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("campaign {path}: `{key}`: {reason}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        reason: String,
    },
    /// A template file (`html`, `text`) that does not compile or can never
    /// render; `file` is the path as the campaign file gives it.
    #[error("template {file} (`{key}` of campaign {path}): {reason}")]
    Template {
        path: PathBuf,
        key: &'static str,
        file: PathBuf,
        reason: String,
    },
}

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
    list_management: Option<ListManagement>,
}

/// The list a campaign's mail belongs to (SES `ListManagementOptions`):
/// an unsubscribe is recorded for its topic, or for the whole list.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ListManagement {
    pub contact_list: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

/// What the spool stores for a campaign (serialized as JSON, once).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CampaignDef {
    pub id: String,
    /// The `From` header as given ("Name <addr>").
    pub from: String,
    pub from_name: Option<String>,
    /// The sender address (also the envelope sender).
    pub from_addr: String,
    pub reply_to: Option<String>,
    pub subject: String,
    pub html: Option<String>,
    pub text: Option<String>,
    pub list_unsubscribe: Option<String>,
    pub tags: BTreeMap<String, String>,
    /// Names of the recipient list's variable columns, in record order.
    #[serde(default)]
    pub columns: Vec<String>,
    /// `false`: one message for everyone (templates use no recipient
    /// variables); recipients at one destination share transactions.
    #[serde(default = "personalized_default")]
    pub personalized: bool,
    /// The `To` header of a non-personalized campaign's message.
    #[serde(default)]
    pub to: Option<String>,
    /// Its configuration set (the campaign's, else the config's default;
    /// see [`LoadedCampaign::with_configuration_set`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration_set: Option<String>,
    /// A ready-made message (SMTP submission, drop directory, sendmail)
    /// rather than templates: how it came in. Its bytes follow the
    /// definition in the stored body ([`CampaignDef::to_bytes_with_message`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<MessageMeta>,
    /// Its list and topic, for unsubscribes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_management: Option<ListManagement>,
}

/// How a ready-made message came in.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MessageMeta {
    /// The envelope sender (MAIL FROM; empty for the null sender).
    pub mail_from: String,
    /// `smtp`, `pickup` or `sendmail`.
    pub source: String,
    /// The authenticated user, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The message has no `Message-ID`: production adds one (the same on
    /// every attempt).
    #[serde(default)]
    pub add_message_id: bool,
}

/// Leads a stored campaign body that carries a ready-made message: the
/// magic, the definition's length (u32 LE), the definition (JSON), then the
/// message bytes.
const MESSAGE_MAGIC: &[u8; 8] = b"VLYMSG1\n";

fn personalized_default() -> bool {
    true
}

/// The `To` header of a non-personalized message without a `to` key.
pub const UNDISCLOSED: &str = "undisclosed-recipients:;";

impl CampaignDef {
    /// Its templates, to compile ([`crate::template::Templates::compile`]).
    pub fn template_sources(&self) -> crate::template::Sources<'_> {
        crate::template::Sources {
            subject: &self.subject,
            html: self.html.as_deref(),
            text: self.text.as_deref(),
            list_unsubscribe: self.list_unsubscribe.as_deref(),
        }
    }

    /// A definition standing in for one no longer in the spool (a
    /// ready-made message reclaimed before feedback about it came back):
    /// its number and what the report says of the message.
    pub fn stand_in(no: u32, from: &str, subject: &str) -> CampaignDef {
        let from_addr = crate::address::parse_mailbox(from)
            .map(|m| m.address.email)
            .unwrap_or_default();
        CampaignDef {
            id: format!("#{no}"),
            from: from.to_string(),
            from_name: None,
            from_addr,
            reply_to: None,
            subject: subject.to_string(),
            html: None,
            text: None,
            list_unsubscribe: None,
            tags: BTreeMap::new(),
            columns: Vec::new(),
            personalized: false,
            to: None,
            configuration_set: None,
            message: None,
            list_management: None,
        }
    }

    /// Domain of the sender address (selects DKIM keys).
    pub fn from_domain(&self) -> &str {
        volley_spool::domain_of(&self.from_addr)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The stored body of a ready-made message: this definition and the
    /// message bytes, kept together.
    pub fn to_bytes_with_message(&self, message: &[u8]) -> Vec<u8> {
        let json = self.to_bytes();
        let mut out = Vec::with_capacity(12 + json.len() + message.len());
        out.extend_from_slice(MESSAGE_MAGIC);
        out.extend_from_slice(&(json.len() as u32).to_le_bytes());
        out.extend_from_slice(&json);
        out.extend_from_slice(message);
        out
    }

    /// Splits a stored body into its definition's bytes and the message
    /// bytes (`None` for a template campaign).
    fn split(b: &[u8]) -> Result<(&[u8], Option<&[u8]>), String> {
        let Some(rest) = b.strip_prefix(MESSAGE_MAGIC.as_slice()) else {
            return Ok((b, None));
        };
        let (len, rest) = rest
            .split_first_chunk::<4>()
            .ok_or("stored message cut short")?;
        let len = u32::from_le_bytes(*len) as usize;
        if len > rest.len() {
            return Err("stored message cut short".into());
        }
        let (json, message) = rest.split_at(len);
        Ok((json, Some(message)))
    }

    pub fn from_bytes(b: &[u8]) -> Result<CampaignDef, String> {
        let (json, _) = Self::split(b)?;
        serde_json::from_slice(json).map_err(|e| e.to_string())
    }

    /// The message bytes of a stored ready-made message.
    pub fn message_bytes(b: &[u8]) -> Option<&[u8]> {
        Self::split(b).ok().and_then(|(_, m)| m)
    }
}

/// A loaded campaign file: the definition plus where its recipients are.
#[derive(Debug)]
pub struct LoadedCampaign {
    pub def: CampaignDef,
    pub recipients: PathBuf,
    pub path: PathBuf,
}

impl LoadedCampaign {
    /// Settles the campaign's configuration set against the config: the
    /// one it names (which must be there), else the config's default.
    pub fn with_configuration_set(
        mut self,
        config: &crate::config::Config,
    ) -> Result<LoadedCampaign, CampaignError> {
        let named = self.def.configuration_set.as_deref();
        self.def.configuration_set =
            config
                .configuration_set(named)
                .map_err(|reason| CampaignError::Invalid {
                    path: self.path.clone(),
                    key: "configuration_set",
                    reason,
                })?;
        // Volley's own unsubscribe links differ per recipient: such a
        // campaign's message cannot be shared
        let u = &config.feedback.unsubscribe;
        if config.feedback.enabled()
            && (u.base_url.is_some() || u.mailto)
            && self.def.list_unsubscribe.is_none()
            && self.def.message.is_none()
        {
            self.def.personalized = true;
        }
        Ok(self)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_errors_name_the_file_as_written_and_count_lines_from_1() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("templates")).unwrap();
        std::fs::write(
            d.path().join("templates/news.html"),
            "<p>\n{{#each}}x{{/each}}\n",
        )
        .unwrap();
        std::fs::write(d.path().join("list.csv"), "email\n").unwrap();
        let campaign = d.path().join("c.toml");
        let write = |subject: &str| {
            std::fs::write(
                &campaign,
                format!(
                    "id = \"c\"\nfrom = \"a@b.test\"\nsubject = {subject:?}\nhtml = \"templates/news.html\"\nrecipients = \"list.csv\"\n"
                ),
            )
            .unwrap()
        };
        write("Hi");
        let e = load(&campaign).unwrap_err().to_string();
        assert!(
            e.starts_with("template templates/news.html (`html` of campaign ")
                && e.contains(": line 2, column 1: `{{#each}}` needs 1 parameter"),
            "{e}"
        );
        write("Hi {{> sig}}");
        let e = load(&campaign).unwrap_err().to_string();
        assert!(
            e.contains("`subject`: line 1, column 4: partial `sig` is not defined"),
            "{e}"
        );
    }

    #[test]
    fn the_configuration_set_is_the_campaigns_else_the_default_and_must_exist() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("t.txt"), "hi\n").unwrap();
        std::fs::write(d.path().join("list.csv"), "email\n").unwrap();
        let campaign = d.path().join("c.toml");
        let write = |extra: &str| {
            let text = format!(
                "id = \"c\"\nfrom = \"a@b.test\"\nsubject = \"s\"\ntext = \"t.txt\"\nrecipients = \"list.csv\"\n{extra}"
            );
            std::fs::write(&campaign, text).unwrap()
        };
        let config = |text: &str| {
            crate::config::Config::parse(text, Path::new("v.toml"), Path::new(".")).unwrap()
        };
        let sets = config(
            "[events]\ndefault_configuration_set = \"main\"\n[configuration_sets.main]\n[configuration_sets.promo]\n",
        );
        let set = |c: &crate::config::Config| {
            load(&campaign)
                .and_then(|l| l.with_configuration_set(c))
                .map(|l| l.def.configuration_set)
        };
        write("");
        assert_eq!(set(&sets).unwrap().as_deref(), Some("main"));
        assert_eq!(set(&config("")).unwrap(), None);
        write("configuration_set = \"promo\"\n");
        assert_eq!(set(&sets).unwrap().as_deref(), Some("promo"));
        write("configuration_set = \"gone\"\n");
        let e = set(&sets).unwrap_err().to_string();
        assert!(
            e.contains("`configuration_set`")
                && e.contains("\"gone\"")
                && e.contains("main, promo"),
            "{e}"
        );
        // stored without the key when there is none (definitions spooled
        // before sets existed read back the same)
        let mut def = load(&campaign).unwrap().def;
        def.configuration_set = None;
        assert!(
            !String::from_utf8(def.to_bytes())
                .unwrap()
                .contains("configuration_set")
        );
    }

    #[test]
    fn the_example_campaign_loads() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/campaign.toml");
        load(&p).unwrap();
    }
}
