//! SNS subscriptions of the `sns` webhooks: each destination's endpoint
//! must confirm (GET its `SubscribeURL`, whose token only this service
//! knows) before notifications flow, as with SNS. The state of each
//! (endpoint, topic, token, subscription ARN, confirmed) is kept in a file
//! per destination (`sns/subscriptions/CURSOR.json` in the spool), so a
//! confirmation survives restarts; a changed endpoint or topic starts a
//! new subscription. `UnsubscribeURL` returns a subscription to pending:
//! notifications stop (and wait, journaled) until it is confirmed again.
//!
//! Exposure: tokens and ARNs in requests to the HTTP listener (any value
//! gets an error, never a state change without the right token).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// One destination's subscription.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Subscription {
    pub endpoint: String,
    pub topic_arn: String,
    pub subscription_arn: String,
    pub token: String,
    pub confirmed: bool,
}

/// Why a confirmation or unsubscription was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    #[error("no pending subscription of topic {0} has this token")]
    UnknownToken(String),
    #[error("no subscription {0}")]
    UnknownSubscription(String),
    #[error("cannot store the subscription: {0}")]
    Store(String),
}

/// Every destination's subscription, by the destination's cursor name.
#[derive(Debug)]
pub struct Subscriptions {
    dir: PathBuf,
    subs: Mutex<HashMap<String, Subscription>>,
}

/// 32 random bytes as hex.
fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    // the system's randomness does not fail on Linux; zeros would still
    // be refused nowhere, so fall back to a clock-derived value
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        let t = volley_spool::now_ms().to_le_bytes();
        for (i, x) in b.iter_mut().enumerate() {
            *x = t[i % 8] ^ (i as u8);
        }
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Subscriptions {
    /// The subscriptions kept in `dir` (made when first needed).
    pub fn open(dir: &Path) -> Subscriptions {
        let mut subs = HashMap::new();
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.filter_map(|e| e.ok()) {
                let name = e.file_name().to_string_lossy().to_string();
                let Some(cursor) = name.strip_suffix(".json") else {
                    continue;
                };
                match std::fs::read(e.path())
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Subscription>(&b).ok())
                {
                    Some(s) => {
                        subs.insert(cursor.to_string(), s);
                    }
                    None => {
                        tracing::warn!(file = %e.path().display(), "unreadable SNS subscription file; the endpoint will be asked to confirm again")
                    }
                }
            }
        }
        Subscriptions {
            dir: dir.to_path_buf(),
            subs: Mutex::new(subs),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Subscription>> {
        self.subs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn store(&self, name: &str, s: &Subscription) -> Result<(), SubscriptionError> {
        let err =
            |e: std::io::Error| SubscriptionError::Store(format!("{}: {e}", self.dir.display()));
        std::fs::create_dir_all(&self.dir).map_err(err)?;
        let path = self.dir.join(format!("{name}.json"));
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let body = serde_json::to_vec_pretty(s).unwrap_or_default();
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(err)?;
            f.write_all(&body).map_err(err)?;
            f.sync_all().map_err(err)?;
        }
        std::fs::rename(&tmp, &path).map_err(err)?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(err)
    }

    /// The subscription of destination `name` to `endpoint` on `topic_arn`:
    /// the kept one, or a new pending one (stored) when there is none or
    /// the endpoint or topic changed.
    pub fn ensure(
        &self,
        name: &str,
        endpoint: &str,
        topic_arn: &str,
    ) -> Result<Subscription, SubscriptionError> {
        let mut subs = self.lock();
        if let Some(s) = subs.get(name)
            && s.endpoint == endpoint
            && s.topic_arn == topic_arn
        {
            return Ok(s.clone());
        }
        let s = Subscription {
            endpoint: endpoint.to_string(),
            topic_arn: topic_arn.to_string(),
            subscription_arn: format!("{topic_arn}:{}", uuid_like()),
            token: random_hex(32),
            confirmed: false,
        };
        self.store(name, &s)?;
        subs.insert(name.to_string(), s.clone());
        Ok(s)
    }

    /// Whether destination `name`'s subscription is confirmed.
    pub fn confirmed(&self, name: &str) -> bool {
        self.lock().get(name).is_some_and(|s| s.confirmed)
    }

    /// Confirms the subscription of `topic_arn` with `token`; its ARN.
    pub fn confirm(&self, topic_arn: &str, token: &str) -> Result<String, SubscriptionError> {
        let mut subs = self.lock();
        let found = subs
            .iter()
            .find(|(_, s)| s.topic_arn == topic_arn && !token.is_empty() && s.token == token)
            .map(|(n, s)| (n.clone(), s.clone()));
        let Some((name, mut s)) = found else {
            return Err(SubscriptionError::UnknownToken(topic_arn.to_string()));
        };
        if !s.confirmed {
            s.confirmed = true;
            self.store(&name, &s)?;
            tracing::info!(destination = %name, endpoint = %s.endpoint, "SNS subscription confirmed");
            subs.insert(name, s.clone());
        }
        Ok(s.subscription_arn)
    }

    /// Returns subscription `arn` to pending, with a new token.
    pub fn unsubscribe(&self, arn: &str) -> Result<(), SubscriptionError> {
        let mut subs = self.lock();
        let found = subs
            .iter()
            .find(|(_, s)| s.subscription_arn == arn)
            .map(|(n, s)| (n.clone(), s.clone()));
        let Some((name, mut s)) = found else {
            return Err(SubscriptionError::UnknownSubscription(arn.to_string()));
        };
        s.confirmed = false;
        s.token = random_hex(32);
        self.store(&name, &s)?;
        tracing::warn!(destination = %name, endpoint = %s.endpoint, "SNS subscription unsubscribed: its events wait until the endpoint confirms again");
        subs.insert(name, s);
        Ok(())
    }
}

/// A random UUID (version 4) string.
pub fn uuid_like() -> String {
    let h = random_hex(16);
    let mut b: Vec<char> = h.chars().collect();
    b[12] = '4';
    b[16] = ['8', '9', 'a', 'b'][usize::from(b[16].to_digit(16).unwrap_or(0) as u8 & 3)];
    let s: String = b.into_iter().collect();
    format!(
        "{}-{}-{}-{}-{}",
        &s[0..8],
        &s[8..12],
        &s[12..16],
        &s[16..20],
        &s[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscription_is_confirmed_by_its_token_and_kept() {
        let d = tempfile::tempdir().unwrap();
        let subs = Subscriptions::open(d.path());
        let arn = "arn:aws:sns:us-east-1:000000000000:main";
        let s = subs.ensure("dest.main.h", "http://x/h", arn).unwrap();
        assert!(!s.confirmed && !subs.confirmed("dest.main.h"));
        assert_eq!(s.token.len(), 64);
        assert!(s.subscription_arn.starts_with(&format!("{arn}:")));
        // a wrong token or topic changes nothing
        assert!(subs.confirm(arn, "nope").is_err());
        assert!(subs.confirm("arn:other", &s.token).is_err());
        assert!(subs.confirm(arn, "").is_err());
        assert!(!subs.confirmed("dest.main.h"));
        assert_eq!(subs.confirm(arn, &s.token).unwrap(), s.subscription_arn);
        assert!(subs.confirmed("dest.main.h"));
        // kept across a restart; the same endpoint keeps it
        let again = Subscriptions::open(d.path());
        assert!(again.confirmed("dest.main.h"));
        assert_eq!(again.ensure("dest.main.h", "http://x/h", arn).unwrap(), {
            let mut c = s.clone();
            c.confirmed = true;
            c
        });
        // unsubscribing returns it to pending with a new token
        again.unsubscribe(&s.subscription_arn).unwrap();
        assert!(!again.confirmed("dest.main.h"));
        assert!(
            again.confirm(arn, &s.token).is_err(),
            "the old token is void"
        );
        assert!(again.unsubscribe("arn:nope").is_err());
        // a new endpoint is a new subscription
        let moved = again.ensure("dest.main.h", "http://y/h", arn).unwrap();
        assert!(!moved.confirmed && moved.subscription_arn != s.subscription_arn);
    }
}
