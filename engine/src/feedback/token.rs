//! Signed tokens that tie inbound feedback to the mail it answers: the
//! VERP return path (`MAIL FROM`), the `mailto:` unsubscribe address and
//! the one-click unsubscribe URL (RFC 8058).
//!
//! An address token is the local part `<p>-<kid>-<data>` on the bounce
//! domain: `p` is `b` (bounce return path) or `u` (unsubscribe mailbox),
//! `kid` the signing key's id, `data` base32 (lowercase, no padding) of a
//! 17-byte payload and the first 10 bytes of its HMAC-SHA256. The payload:
//! flags (bit 0: one message shared by several recipients), campaign
//! number (u32), recipient id (u64; the transaction's first for a shared
//! one), and a 32-bit hash of the recipient's address (of its domain for
//! a shared message: a transaction serves one domain). The local part is
//! at most 64 bytes (RFC 5321) and survives case folding. Whoever saw one
//! token (a recipient sees its own return path) can replay it, but the
//! hash binds it to its recipient (or domain): a report naming another
//! address does not match.
//!
//! A URL token carries the recipient's address and the list topic too
//! (an unsubscribe may come long after the recipient's record is gone):
//! `<kid>.<base64url payload>.<base64url 16-byte tag>`.
//!
//! Tags cover the spool's uid too ([`Keys::scoped`]): a token names a
//! campaign and recipient of one spool, and means nothing to another.
//! The first key signs; every key verifies (rotation: add the new key
//! first, keep the old one while its mail can still be answered). Tags are
//! compared in constant time. Pure. Exposure: `verify_*` take hostile
//! input (any bytes give `None`, never a panic).

use aws_lc_rs::{constant_time, digest, hmac};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use data_encoding::{Encoding, Specification};
use volley_spool::RecipientId;

/// Bytes of the address payload.
const PAYLOAD: usize = 17;
/// Bytes of the address tag kept.
const ADDR_TAG: usize = 10;
/// Bytes of the URL tag kept.
const URL_TAG: usize = 16;
/// Longest key id.
pub const MAX_KID: usize = 8;
/// Longest address or topic a URL token carries.
const MAX_URL_FIELD: usize = 255;

/// What an address token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The return path: bounces come back to it.
    Bounce,
    /// The `mailto:` unsubscribe address.
    Unsubscribe,
}

impl Purpose {
    fn prefix(self) -> &'static str {
        match self {
            Purpose::Bounce => "b",
            Purpose::Unsubscribe => "u",
        }
    }
}

/// What an address token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailRef {
    pub campaign: u32,
    /// The recipient (the transaction's first one when `shared`).
    pub recipient: RecipientId,
    /// One message shared by the recipients of a transaction.
    pub shared: bool,
    /// [`addr_hash`] of the recipient, or of its domain when `shared`.
    pub hash: u32,
}

impl MailRef {
    /// Whether `email` can be a recipient this token speaks for.
    pub fn matches(&self, email: &str) -> bool {
        let key = if self.shared {
            email.rsplit_once('@').map_or("", |(_, d)| d)
        } else {
            email
        };
        addr_hash(key) == self.hash
    }
}

/// What a URL (one-click unsubscribe) token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubRef {
    pub campaign: u32,
    pub recipient: RecipientId,
    pub email: String,
    /// The list topic, if the campaign names one.
    pub topic: Option<String>,
}

/// A signing key.
#[derive(Clone)]
struct Key {
    id: String,
    key: hmac::Key,
}

/// The keys tokens are signed and checked with.
#[derive(Clone)]
pub struct Keys {
    keys: Vec<Key>,
    base32: Encoding,
    /// What the tokens are valid for (the spool's uid): campaign numbers
    /// and recipient ids mean something only in their own spool.
    scope: u64,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("Keys").field("ids", &ids).finish()
    }
}

/// The 32-bit hash of an address or domain (lowercased) a token binds.
pub fn addr_hash(s: &str) -> u32 {
    let lower = s.trim().to_ascii_lowercase();
    let d = digest::digest(&digest::SHA256, lower.as_bytes());
    let b = d.as_ref();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl Keys {
    /// Keys from `(id, secret)` pairs, the signing one first. Ids are 1 to
    /// [`MAX_KID`] lowercase letters or digits; secrets at least 16 bytes.
    pub fn new(keys: &[(String, Vec<u8>)]) -> Result<Keys, String> {
        if keys.is_empty() {
            return Err("no key".into());
        }
        let mut out = Vec::with_capacity(keys.len());
        for (id, secret) in keys {
            if id.is_empty()
                || id.len() > MAX_KID
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            {
                return Err(format!(
                    "key id {id:?}: 1 to {MAX_KID} lowercase letters or digits"
                ));
            }
            if secret.len() < 16 {
                return Err(format!("key {id:?}: the secret has fewer than 16 bytes"));
            }
            if out.iter().any(|k: &Key| &k.id == id) {
                return Err(format!("key id {id:?} is given twice"));
            }
            out.push(Key {
                id: id.clone(),
                key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            });
        }
        let mut spec = Specification::new();
        spec.symbols.push_str("abcdefghijklmnopqrstuvwxyz234567");
        spec.translate.from.push_str("ABCDEFGHIJKLMNOPQRSTUVWXYZ");
        spec.translate.to.push_str("abcdefghijklmnopqrstuvwxyz");
        let base32 = spec.encoding().map_err(|e| e.to_string())?;
        Ok(Keys {
            keys: out,
            base32,
            scope: 0,
        })
    }

    /// These keys for tokens valid only in `scope` (a spool's uid): a
    /// token made for another spool does not verify.
    pub fn scoped(mut self, scope: u64) -> Keys {
        self.scope = scope;
        self
    }

    fn tag(&self, key: &Key, domain: &[u8], payload: &[u8]) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&key.key);
        ctx.update(&self.scope.to_be_bytes());
        // length-prefixed: no purpose's bytes run into the key id's
        ctx.update(&[domain.len() as u8]);
        ctx.update(domain);
        ctx.update(key.id.as_bytes());
        ctx.update(b"\0");
        ctx.update(payload);
        ctx.sign()
    }

    /// The local part of an address token.
    pub fn local_part(&self, purpose: Purpose, r: &MailRef) -> String {
        let key = &self.keys[0];
        let mut p = [0u8; PAYLOAD + ADDR_TAG];
        p[0] = u8::from(r.shared);
        p[1..5].copy_from_slice(&r.campaign.to_be_bytes());
        p[5..13].copy_from_slice(&r.recipient.0.to_be_bytes());
        p[13..17].copy_from_slice(&r.hash.to_be_bytes());
        let tag = self.tag(key, purpose.prefix().as_bytes(), &p[..PAYLOAD]);
        p[PAYLOAD..].copy_from_slice(&tag.as_ref()[..ADDR_TAG]);
        format!("{}-{}-{}", purpose.prefix(), key.id, self.base32.encode(&p))
    }

    /// What the local part of an address token says, if it is one of ours
    /// for `purpose` and its tag checks out with one of the keys.
    pub fn verify_local_part(&self, purpose: Purpose, local: &str) -> Option<MailRef> {
        if local.len() > 64 {
            return None;
        }
        let local = local.to_ascii_lowercase();
        let rest = local.strip_prefix(purpose.prefix())?.strip_prefix('-')?;
        let (kid, data) = rest.split_once('-')?;
        let key = self.keys.iter().find(|k| k.id == kid)?;
        let p = self.base32.decode(data.as_bytes()).ok()?;
        if p.len() != PAYLOAD + ADDR_TAG || p[0] > 1 {
            return None;
        }
        let tag = self.tag(key, purpose.prefix().as_bytes(), &p[..PAYLOAD]);
        constant_time::verify_slices_are_equal(&tag.as_ref()[..ADDR_TAG], &p[PAYLOAD..]).ok()?;
        let u32_at = |i: usize| u32::from_be_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
        let mut id = [0u8; 8];
        id.copy_from_slice(&p[5..13]);
        Some(MailRef {
            shared: p[0] == 1,
            campaign: u32_at(1),
            recipient: RecipientId(u64::from_be_bytes(id)),
            hash: u32_at(13),
        })
    }

    /// A one-click unsubscribe token (see the module header).
    pub fn url_token(&self, r: &UnsubRef) -> String {
        let key = &self.keys[0];
        let email = &r.email.as_bytes()[..r.email.len().min(MAX_URL_FIELD)];
        let topic = r.topic.as_deref().unwrap_or("").as_bytes();
        let topic = &topic[..topic.len().min(MAX_URL_FIELD)];
        let mut p = Vec::with_capacity(16 + email.len() + topic.len());
        p.push(1u8);
        p.extend_from_slice(&r.campaign.to_be_bytes());
        p.extend_from_slice(&r.recipient.0.to_be_bytes());
        p.push(email.len() as u8);
        p.extend_from_slice(email);
        p.push(topic.len() as u8);
        p.extend_from_slice(topic);
        let tag = self.tag(key, b"url", &p);
        format!(
            "{}.{}.{}",
            key.id,
            B64URL.encode(&p),
            B64URL.encode(&tag.as_ref()[..URL_TAG])
        )
    }

    /// What a URL token says, if its tag checks out.
    pub fn verify_url_token(&self, token: &str) -> Option<UnsubRef> {
        if token.len() > 1024 {
            return None;
        }
        let mut parts = token.split('.');
        let (Some(kid), Some(p), Some(t), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let key = self.keys.iter().find(|k| k.id == kid)?;
        let p = B64URL.decode(p).ok()?;
        let t = B64URL.decode(t).ok()?;
        let tag = self.tag(key, b"url", &p);
        constant_time::verify_slices_are_equal(&tag.as_ref()[..URL_TAG], &t).ok()?;
        // signed by us: the layout is ours, but stay total anyway
        let (&ver, rest) = p.split_first()?;
        if ver != 1 || rest.len() < 13 {
            return None;
        }
        let campaign = u32::from_be_bytes(rest[0..4].try_into().ok()?);
        let recipient = RecipientId(u64::from_be_bytes(rest[4..12].try_into().ok()?));
        let (email, rest) = field(&rest[12..])?;
        let (topic, rest) = field(rest)?;
        if !rest.is_empty() || email.is_empty() {
            return None;
        }
        Some(UnsubRef {
            campaign,
            recipient,
            email,
            topic: (!topic.is_empty()).then_some(topic),
        })
    }
}

/// A length-prefixed UTF-8 field and the bytes after it.
fn field(b: &[u8]) -> Option<(String, &[u8])> {
    let (&n, rest) = b.split_first()?;
    let n = usize::from(n);
    if rest.len() < n {
        return None;
    }
    let s = std::str::from_utf8(&rest[..n]).ok()?.to_string();
    Some((s, &rest[n..]))
}

#[cfg(test)]
mod tests;
