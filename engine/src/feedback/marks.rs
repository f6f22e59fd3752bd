//! What production puts on a message so feedback can find its way back:
//! the VERP return path (`MAIL FROM` = a signed token on the bounce
//! domain) and, when configured, the `List-Unsubscribe` URL and `mailto:`
//! address (RFC 8058), all signed with the first key ([`token`]).
//!
//! Each message has one recipient while feedback is on (transactions are
//! not shared), and its token is bound to that recipient's address: a
//! token seen by its recipient speaks for nobody else. The null sender
//! stays null. Pure.

use volley_spool::RecipientId;

use super::token::{Keys, MailRef, Purpose, UnsubRef, addr_hash};
use crate::config::FeedbackConfig;

/// Return path and unsubscribe marks, from `[feedback]`.
#[derive(Debug, Clone)]
pub struct Marks {
    pub keys: Keys,
    pub bounce_domain: String,
    unsubscribe_base: Option<String>,
    mailto: bool,
}

/// The unsubscribe targets of one recipient's message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unsubscribe {
    /// `https://…/unsubscribe/<token>` (one-click).
    pub url: Option<String>,
    /// `mailto:u-…@<bounce domain>`.
    pub mailto: Option<String>,
}

impl Marks {
    /// The marks `[feedback]` asks for, for the spool `scope` (its uid;
    /// `None`: no bounce domain).
    pub fn from_config(c: &FeedbackConfig, scope: u64) -> Result<Option<Marks>, String> {
        let Some(domain) = &c.bounce_domain else {
            return Ok(None);
        };
        let secrets = c.key_secrets().map_err(|(k, r)| format!("{k}: {r}"))?;
        Ok(Some(Marks {
            keys: Keys::new(&secrets)?.scoped(scope),
            bounce_domain: domain.to_ascii_lowercase(),
            unsubscribe_base: c
                .unsubscribe
                .base_url
                .as_ref()
                .map(|u| u.trim_end_matches('/').to_string()),
            mailto: c.unsubscribe.mailto,
        }))
    }

    /// The reference a token carries for a transaction of `campaign` to
    /// `rcpts` (`first` the first one's id): bound to the first
    /// recipient's address. With feedback on, transactions are not shared
    /// (see `delivery::shard`), so that is the transaction's recipient.
    pub fn mail_ref(campaign: u32, first: RecipientId, rcpts: &[String]) -> MailRef {
        MailRef {
            campaign,
            recipient: first,
            shared: false,
            hash: addr_hash(rcpts.first().map_or("", String::as_str)),
        }
    }

    /// The return path of a transaction (`sender` empty: the null sender,
    /// kept).
    pub fn return_path(&self, sender: &str, r: &MailRef) -> String {
        if sender.is_empty() {
            return String::new();
        }
        format!(
            "{}@{}",
            self.keys.local_part(Purpose::Bounce, r),
            self.bounce_domain
        )
    }

    /// Whether Volley builds unsubscribe links.
    pub fn unsubscribes(&self) -> bool {
        self.unsubscribe_base.is_some() || self.mailto
    }

    /// The unsubscribe targets of `email`'s message.
    pub fn unsubscribe(
        &self,
        campaign: u32,
        id: RecipientId,
        email: &str,
        topic: Option<&str>,
    ) -> Unsubscribe {
        let url = self.unsubscribe_base.as_ref().map(|base| {
            let t = self.keys.url_token(&UnsubRef {
                campaign,
                recipient: id,
                email: email.to_string(),
                topic: topic.map(str::to_string),
            });
            format!("{base}/unsubscribe/{t}")
        });
        let mailto = self.mailto.then(|| {
            let r = MailRef {
                campaign,
                recipient: id,
                shared: false,
                hash: addr_hash(email),
            };
            format!(
                "mailto:{}@{}",
                self.keys.local_part(Purpose::Unsubscribe, &r),
                self.bounce_domain
            )
        });
        Unsubscribe { url, mailto }
    }
}
