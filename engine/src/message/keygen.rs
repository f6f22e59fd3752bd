//! `volley keygen`: makes a DKIM key pair and its DNS TXT record value.
//!
//! RSA-2048 or Ed25519 from aws-lc-rs. Writes the private key as PKCS#8 PEM
//! (mode 0600) and the TXT value (`v=DKIM1; k=...; p=...`) next to it.
//! Exposure: none (local files chosen by the operator).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

/// Key algorithm to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyAlgorithm {
    Rsa,
    Ed25519,
}

/// Paths and record written by [`generate`].
#[derive(Debug)]
pub struct Generated {
    pub private_key: PathBuf,
    pub txt_file: PathBuf,
    /// DNS name of the record (`selector._domainkey.domain`).
    pub dns_name: String,
    /// The TXT record value.
    pub txt: String,
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = B64.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

/// Generates a key pair; returns the private key PEM and the TXT value.
pub fn make_key(alg: KeyAlgorithm) -> Result<(String, String), String> {
    match alg {
        KeyAlgorithm::Rsa => {
            let kp = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|e| e.to_string())?;
            let p8: Pkcs8V1Der = kp.as_der().map_err(|e| e.to_string())?;
            let spki: PublicKeyX509Der = kp.public_key().as_der().map_err(|e| e.to_string())?;
            Ok((
                pem("PRIVATE KEY", p8.as_ref()),
                format!("v=DKIM1; k=rsa; p={}", B64.encode(spki.as_ref())),
            ))
        }
        KeyAlgorithm::Ed25519 => {
            let kp = Ed25519KeyPair::generate().map_err(|e| e.to_string())?;
            let p8: Pkcs8V1Der = kp.as_der().map_err(|e| e.to_string())?;
            Ok((
                pem("PRIVATE KEY", p8.as_ref()),
                format!(
                    "v=DKIM1; k=ed25519; p={}",
                    B64.encode(kp.public_key().as_ref())
                ),
            ))
        }
    }
}

/// Writes `<selector>.<domain>.key.pem` and `<selector>.<domain>.txt` in `out`.
pub fn generate(
    alg: KeyAlgorithm,
    domain: &str,
    selector: &str,
    out: &Path,
) -> Result<Generated, String> {
    let domain = crate::address::check_domain(domain).map_err(|e| format!("--domain: {e}"))?;
    if selector.is_empty()
        || !selector
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err("--selector: use letters, digits, '-', '_' or '.'".into());
    }
    std::fs::create_dir_all(out).map_err(|e| format!("create {}: {e}", out.display()))?;
    let (key_pem, txt) = make_key(alg)?;
    let private_key = out.join(format!("{selector}.{domain}.key.pem"));
    let txt_file = out.join(format!("{selector}.{domain}.txt"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&private_key)
        .map_err(|e| format!("write {}: {e}", private_key.display()))?;
    f.write_all(key_pem.as_bytes())
        .map_err(|e| format!("write {}: {e}", private_key.display()))?;
    std::fs::write(&txt_file, format!("{txt}\n"))
        .map_err(|e| format!("write {}: {e}", txt_file.display()))?;
    Ok(Generated {
        private_key,
        txt_file,
        dns_name: format!("{selector}._domainkey.{domain}"),
        txt,
    })
}
