//! `volley keygen`: makes a DKIM key pair and its DNS TXT record value.
//!
//! RSA-2048 or Ed25519 from aws-lc-rs. Writes the private key as PKCS#8 PEM
//! (mode 0600) and the TXT value (`v=DKIM1; k=...; p=...`) next to it. An
//! existing key or TXT file is never overwritten unless asked ([`Replace`]);
//! a replaced key is written to a new 0600 file renamed over the old one,
//! so it never takes the old file's permissions. Exposure: none (local files
//! chosen by the operator).

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

/// Whether [`generate`] may replace existing files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// Refuse when the key or TXT file exists.
    Never,
    /// Replace them (`--force`).
    Existing,
}

/// Why no key was written.
#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    #[error("{0}")]
    Invalid(String),
    #[error("{path} already exists; refusing to overwrite it (use --force to replace the key)")]
    Exists { path: PathBuf },
    #[error("{op} {path}: {error}")]
    Io {
        op: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("generating the key failed: {0}")]
    Crypto(String),
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> KeygenError {
    let path = path.to_path_buf();
    move |error| KeygenError::Io { op, path, error }
}

/// Writes `bytes` to a new file `path` with `mode`; with
/// [`Replace::Existing`] through a temporary file renamed over `path`.
fn write_new(path: &Path, bytes: &[u8], mode: u32, replace: Replace) -> Result<(), KeygenError> {
    let target = match replace {
        Replace::Never => path.to_path_buf(),
        Replace::Existing => {
            let mut name = path.file_name().unwrap_or_default().to_os_string();
            name.push(format!(".tmp{}", std::process::id()));
            path.with_file_name(name)
        }
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&target)
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::AlreadyExists if replace == Replace::Never => KeygenError::Exists {
                path: path.to_path_buf(),
            },
            _ => KeygenError::Io {
                op: "create",
                path: target.clone(),
                error,
            },
        })?;
    let written = f
        .write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(io("write", &target));
    if written.is_ok() && replace == Replace::Existing {
        return std::fs::rename(&target, path).map_err(io("rename into", path));
    }
    if written.is_err() {
        let _ = std::fs::remove_file(&target);
    }
    written
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

/// `der` as a PEM block labelled `label`.
pub(crate) fn pem(label: &str, der: &[u8]) -> String {
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

/// Writes `<selector>.<domain>.key.pem` and `<selector>.<domain>.txt` in
/// `out`; refuses when either exists unless `replace` says so.
pub fn generate(
    alg: KeyAlgorithm,
    domain: &str,
    selector: &str,
    out: &Path,
    replace: Replace,
) -> Result<Generated, KeygenError> {
    let domain = crate::address::check_domain(domain)
        .map_err(|e| KeygenError::Invalid(format!("--domain: {e}")))?;
    if selector.is_empty()
        || !selector
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(KeygenError::Invalid(
            "--selector: use letters, digits, '-', '_' or '.'".into(),
        ));
    }
    std::fs::create_dir_all(out).map_err(io("create", out))?;
    let private_key = out.join(format!("{selector}.{domain}.key.pem"));
    let txt_file = out.join(format!("{selector}.{domain}.txt"));
    if replace == Replace::Never {
        for path in [&private_key, &txt_file] {
            if path.symlink_metadata().is_ok() {
                return Err(KeygenError::Exists { path: path.clone() });
            }
        }
    }
    let (key_pem, txt) = make_key(alg).map_err(KeygenError::Crypto)?;
    write_new(&private_key, key_pem.as_bytes(), 0o600, replace)?;
    write_new(&txt_file, format!("{txt}\n").as_bytes(), 0o644, replace)?;
    Ok(Generated {
        private_key,
        txt_file,
        dns_name: format!("{selector}._domainkey.{domain}"),
        txt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn an_existing_key_is_kept_unless_replacing_is_asked() {
        let dir = tempfile::tempdir().unwrap();
        let g = generate(
            KeyAlgorithm::Ed25519,
            "a.test",
            "s1",
            dir.path(),
            Replace::Never,
        )
        .unwrap();
        let first = std::fs::read(&g.private_key).unwrap();
        let err = generate(
            KeyAlgorithm::Ed25519,
            "a.test",
            "s1",
            dir.path(),
            Replace::Never,
        )
        .unwrap_err();
        assert!(
            matches!(&err, KeygenError::Exists { path } if *path == g.private_key),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("s1.a.test.key.pem") && msg.contains("--force"),
            "{msg}"
        );
        assert_eq!(
            std::fs::read(&g.private_key).unwrap(),
            first,
            "key untouched"
        );

        // a replaced key does not inherit the old file's loose mode
        std::fs::set_permissions(&g.private_key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let g2 = generate(
            KeyAlgorithm::Ed25519,
            "a.test",
            "s1",
            dir.path(),
            Replace::Existing,
        )
        .unwrap();
        assert_ne!(
            std::fs::read(&g2.private_key).unwrap(),
            first,
            "key replaced"
        );
        assert_eq!(mode(&g2.private_key), 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
    }

    #[test]
    fn a_lone_txt_file_is_not_overwritten_either() {
        let dir = tempfile::tempdir().unwrap();
        let txt = dir.path().join("s1.a.test.txt");
        std::fs::write(&txt, "keep\n").unwrap();
        let err = generate(
            KeyAlgorithm::Ed25519,
            "a.test",
            "s1",
            dir.path(),
            Replace::Never,
        )
        .unwrap_err();
        assert!(
            matches!(&err, KeygenError::Exists { path } if *path == txt),
            "{err}"
        );
        assert!(!dir.path().join("s1.a.test.key.pem").exists());
        assert_eq!(std::fs::read_to_string(&txt).unwrap(), "keep\n");
    }
}
