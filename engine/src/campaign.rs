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
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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
    /// The egress pool its mail leaves from (`[egress]`; else its
    /// configuration set's, else the default pool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
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
            pool: None,
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
        if let Some(p) = &self.def.pool
            && !config.egress.has_pool(p)
        {
            return Err(CampaignError::Invalid {
                path: self.path.clone(),
                key: "pool",
                reason: format!(
                    "no egress pool {p:?} in the config ([[egress.pools]], or \"default\" with [[egress.sources]])"
                ),
            });
        }
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

mod load;

pub use load::load;

#[cfg(test)]
mod tests;
