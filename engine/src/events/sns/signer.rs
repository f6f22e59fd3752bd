//! The key that signs SNS messages and the certificate endpoints verify
//! them with: PEM files named in `[sns]`, or a pair made once and kept in
//! the spool directory (`sns/signing-key.pem`, mode 0600, and
//! `sns/signing-cert.pem`, a self-signed RSA-2048 certificate valid ten
//! years). Exposure: the key and certificate files (operator input).

use std::path::Path;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{self, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::message::keygen::pem;

/// Signs SNS messages (SHA256withRSA, PKCS #1 v1.5).
pub struct Signer {
    key: RsaKeyPair,
    /// The certificate, PEM (served at `SigningCertURL`).
    pub cert_pem: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").finish_non_exhaustive()
    }
}

/// The DER inside the first PEM block labelled `label`.
fn pem_der(text: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    let b64: String = text[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    B64.decode(b64).ok()
}

impl Signer {
    /// From PEM texts: a PKCS #8 RSA key (`PRIVATE KEY`) and its
    /// certificate.
    pub fn from_pem(key_pem: &str, cert_pem: &str) -> Result<Signer, String> {
        let der = pem_der(key_pem, "PRIVATE KEY")
            .ok_or("the key is not a PEM \"PRIVATE KEY\" (PKCS #8)")?;
        let key = RsaKeyPair::from_pkcs8(&der).map_err(|e| format!("not an RSA key: {e}"))?;
        if pem_der(cert_pem, "CERTIFICATE").is_none() {
            return Err("the certificate is not a PEM \"CERTIFICATE\"".into());
        }
        Ok(Signer {
            key,
            cert_pem: cert_pem.to_string(),
        })
    }

    /// A new RSA-2048 key and a self-signed certificate for it.
    pub fn generate() -> Result<Signer, String> {
        let (key_pem, cert_pem) = self_signed_pair("sns.volley.invalid")?;
        Signer::from_pem(&key_pem, &cert_pem)
    }

    /// The files named in the config, else the pair kept in `dir` (made
    /// there the first time).
    pub fn load(files: Option<(&Path, &Path)>, dir: &Path) -> Result<Signer, String> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
        };
        if let Some((key, cert)) = files {
            return Signer::from_pem(&read(key)?, &read(cert)?)
                .map_err(|e| format!("{}: {e}", key.display()));
        }
        let (key, cert) = (dir.join("signing-key.pem"), dir.join("signing-cert.pem"));
        if !key.exists() || !cert.exists() {
            let (key_pem, cert_pem) = self_signed_pair("sns.volley.invalid")?;
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            write_durably(&key, &key_pem, 0o600)?;
            write_durably(&cert, &cert_pem, 0o644)?;
            tracing::info!(cert = %cert.display(), "made the key and certificate that sign SNS messages");
        }
        Signer::from_pem(&read(&key)?, &read(&cert)?).map_err(|e| format!("{}: {e}", key.display()))
    }

    /// The base64 SHA256withRSA signature of `text`.
    pub fn sign(&self, text: &str) -> String {
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        // signing with a valid key into a buffer of the modulus' size
        // cannot fail
        let _ = self.key.sign(
            &signature::RSA_PKCS1_SHA256,
            &rng,
            text.as_bytes(),
            &mut sig,
        );
        B64.encode(sig)
    }

    /// Whether `sig` (base64) is this key's signature of `text`.
    pub fn verify(&self, text: &str, sig: &str) -> bool {
        use aws_lc_rs::signature::KeyPair;
        let Ok(sig) = B64.decode(sig) else {
            return false;
        };
        UnparsedPublicKey::new(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            self.key.public_key().as_ref(),
        )
        .verify(text.as_bytes(), &sig)
        .is_ok()
    }
}

/// A new RSA-2048 key (PKCS #8 PEM) and its self-signed certificate (PEM)
/// for `name` (a DNS name, or an IP address).
pub fn self_signed_pair(name: &str) -> Result<(String, String), String> {
    let kp = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|e| e.to_string())?;
    let p8 = kp.as_der().map_err(|e| e.to_string())?;
    let der = rustls_pki_types::PrivatePkcs8KeyDer::from(p8.as_ref().to_vec());
    let key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_RSA_SHA256)
        .map_err(|e| e.to_string())?;
    let mut params =
        rcgen::CertificateParams::new(vec![name.to_string()]).map_err(|e| e.to_string())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let now = std::time::SystemTime::now();
    params.not_before = (now - std::time::Duration::from_secs(86_400)).into();
    params.not_after = (now + std::time::Duration::from_secs(10 * 365 * 86_400)).into();
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    Ok((pem("PRIVATE KEY", p8.as_ref()), cert.pem()))
}

/// Writes a new file with `mode`, synced with its directory.
pub fn write_durably(path: &Path, text: &str, mode: u32) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)?;
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_pair_is_made_once_and_reused() {
        let d = tempfile::tempdir().unwrap();
        let a = Signer::load(None, d.path()).unwrap();
        let b = Signer::load(None, d.path()).unwrap();
        assert_eq!(a.cert_pem, b.cert_pem);
        let sig = a.sign("text\n");
        assert!(b.verify("text\n", &sig));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.path().join("signing-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // bad files are refused with their name
        let bad = d.path().join("bad.pem");
        std::fs::write(&bad, "nope").unwrap();
        let cert = d.path().join("signing-cert.pem");
        let e = Signer::load(Some((&bad, &cert)), d.path()).unwrap_err();
        assert!(e.contains("bad.pem") && e.contains("PRIVATE KEY"), "{e}");
    }
}
