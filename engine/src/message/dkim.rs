//! DKIM signing with the From domain's key(s), via mail-auth (aws-lc-rs).
//!
//! Keys come from `[[dkim]]` config entries (PEM, PKCS#1 or PKCS#8); a domain
//! with two entries gets two signatures (e.g. RSA and Ed25519). The signed
//! header list covers what receivers and RFC 8058 require, including
//! `List-Unsubscribe` and `List-Unsubscribe-Post`. Canonicalization is
//! `relaxed/simple`, as Amazon SES signs: headers relaxed (receivers and
//! relays refold them), the body simple (it leaves the engine already in
//! its final form: 7bit or quoted-printable, CRLF line ends, no line over
//! 998 octets, so relays have no reason to touch it; and the relaxed body
//! pass was the largest single item of the signing work outside the
//! signature itself). Signing is pure CPU work
//! done on the message production pool. Exposure: key files are operator
//! input; errors name the file, and a key file readable by group or others
//! gets a warning naming it and its mode.

use std::collections::HashMap;
use std::path::PathBuf;

use mail_auth::common::crypto::{DkimKey, Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

use crate::config::{DkimAlgorithm, DkimConfig};

/// Headers covered by every signature (those present in the message).
pub const SIGNED_HEADERS: [&str; 11] = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// A key that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("DKIM key {path} (domain {domain}, selector {selector}): {reason}")]
pub struct KeyError {
    pub path: PathBuf,
    pub domain: String,
    pub selector: String,
    pub reason: String,
}

/// The permission bits of the file at `path` when group or others may
/// read or write it (a private key should be 0600 or 0400).
pub fn loose_mode(path: &std::path::Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o7777;
    (mode & 0o077 != 0).then_some(mode)
}

/// Signers per From domain.
#[derive(Default)]
pub struct Signers {
    by_domain: HashMap<String, Vec<DkimSigner<DkimKey, Done>>>,
}

impl Signers {
    /// Loads every configured key, warning (with the file and its mode)
    /// about a key file that group or others can read.
    pub fn load(keys: &[DkimConfig]) -> Result<Signers, KeyError> {
        let mut s = Signers::default();
        for k in keys {
            let err = |reason: String| KeyError {
                path: k.key.clone(),
                domain: k.domain.clone(),
                selector: k.selector.clone(),
                reason,
            };
            let pem = std::fs::read(&k.key).map_err(|e| err(e.to_string()))?;
            if let Some(mode) = loose_mode(&k.key) {
                tracing::warn!(
                    "DKIM key file {} is readable by group or others (mode {mode:04o}): anyone who can read it can sign as {}; chmod 600 it",
                    k.key.display(),
                    k.domain
                );
            }
            let der = PrivateKeyDer::from_pem_slice(&pem)
                .map_err(|e| err(format!("not a PEM private key: {e}")))?;
            let key: DkimKey = match k.algorithm {
                DkimAlgorithm::RsaSha256 => RsaKey::<Sha256>::from_key_der(der)
                    .map_err(|e| err(format!("not an RSA key: {e}")))?
                    .into(),
                DkimAlgorithm::Ed25519Sha256 => {
                    let PrivateKeyDer::Pkcs8(p8) = der else {
                        return Err(err("Ed25519 keys must be PKCS#8 (BEGIN PRIVATE KEY)".into()));
                    };
                    Ed25519Key::from_pkcs8_maybe_unchecked_der(p8.secret_pkcs8_der())
                        .map_err(|e| err(format!("not an Ed25519 key: {e}")))?
                        .into()
                }
            };
            let signer = DkimSigner::from_key(key)
                .domain(k.domain.clone())
                .selector(k.selector.clone())
                .headers(SIGNED_HEADERS)
                .header_canonicalization(Canonicalization::Relaxed)
                .body_canonicalization(Canonicalization::Simple);
            s.by_domain
                .entry(k.domain.clone())
                .or_default()
                .push(signer);
        }
        Ok(s)
    }

    /// Returns the `DKIM-Signature` header lines (CRLF-terminated) for a
    /// message from `domain`; empty when the domain has no key.
    pub fn sign(&self, domain: &str, message: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        if let Some(signers) = self.by_domain.get(domain) {
            for s in signers {
                let sig = s
                    .sign(message)
                    .map_err(|e| format!("DKIM signing failed: {e}"))?;
                out.extend_from_slice(sig.to_header().as_bytes());
            }
        }
        Ok(out)
    }
}
