//! Who may submit: users with hashed passwords (the users file, managed by
//! `volley user`), SES-style SMTP credentials (user = access key id,
//! password derived from the secret key as SES derives SMTP passwords), the
//! identities each may send as, and the slowing and refusal of addresses
//! that keep failing to log in.
//!
//! Passwords are stored as PBKDF2-HMAC-SHA256 (`$pbkdf2-sha256$ITER$SALT$HASH`,
//! base64), checked in constant time. Exposure: user names and passwords
//! come from the network; the users file is operator input.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::config::submission::SesCredential;

/// PBKDF2 iterations of new password hashes.
pub const ITERATIONS: u32 = 100_000;

/// An authenticated sender and what it may do.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub name: String,
    /// Addresses (`a@b.example`) and domains (`b.example`), lower case.
    pub identities: Vec<String>,
    /// Recipients per second (0: no limit).
    pub max_send_rate: f64,
    /// Recipients per rolling 24 hours (0: no limit).
    pub max_24_hour_send: u64,
}

impl Principal {
    /// Whether it may send as `address` (an identity equal to the address,
    /// or to its domain).
    pub fn may_send_as(&self, address: &str) -> bool {
        let a = address.to_ascii_lowercase();
        let domain = volley_spool::domain_of(&a);
        self.identities.iter().any(|i| *i == a || *i == domain)
    }
}

/// One user in the users file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    pub password: String,
    pub identities: Vec<String>,
    #[serde(default)]
    pub max_send_rate: f64,
    #[serde(default)]
    pub max_24_hour_send: u64,
}

/// The users file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersFile {
    #[serde(default)]
    pub users: std::collections::BTreeMap<String, UserEntry>,
}

impl UsersFile {
    /// Reads the file (a missing file has no users).
    pub fn load(path: &Path) -> Result<UsersFile, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(UsersFile::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Writes the file atomically (mode 0600).
    pub fn save(&self, path: &Path) -> Result<(), String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let text = toml::to_string(self).map_err(|e| e.to_string())?;
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}

/// A PBKDF2 hash of `password` with a fresh salt.
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 16];
    let _ = aws_lc_rs::rand::fill(&mut salt);
    let mut out = [0u8; 32];
    aws_lc_rs::pbkdf2::derive(
        aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA256,
        NonZeroU32::new(ITERATIONS).unwrap_or(NonZeroU32::MIN),
        &salt,
        password.as_bytes(),
        &mut out,
    );
    format!(
        "$pbkdf2-sha256${ITERATIONS}${}${}",
        B64.encode(salt),
        B64.encode(out)
    )
}

/// Checks `password` against a stored hash (constant time).
pub fn check_password(stored: &str, password: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some(""), Some("pbkdf2-sha256"), Some(iter), Some(salt), Some(hash), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let (Some(iter), Ok(salt), Ok(hash)) = (
        iter.parse::<u32>().ok().and_then(NonZeroU32::new),
        B64.decode(salt),
        B64.decode(hash),
    ) else {
        return false;
    };
    aws_lc_rs::pbkdf2::verify(
        aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA256,
        iter,
        &salt,
        password.as_bytes(),
        &hash,
    )
    .is_ok()
}

/// The SMTP password SES derives from a secret access key for `region`
/// (version 4: HMAC-SHA256 chain over "11111111", the region, "ses",
/// "aws4_request", "SendRawEmail"; base64 of 0x04 and the result).
pub fn ses_smtp_password(secret: &str, region: &str) -> String {
    use aws_lc_rs::hmac;
    let sign = |key: &[u8], msg: &str| {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), msg.as_bytes())
            .as_ref()
            .to_vec()
    };
    let mut sig = sign(format!("AWS4{secret}").as_bytes(), "11111111");
    for part in [region, "ses", "aws4_request", "SendRawEmail"] {
        sig = sign(&sig, part);
    }
    let mut out = vec![0x04u8];
    out.extend_from_slice(&sig);
    B64.encode(out)
}

fn lower(ids: &[String]) -> Vec<String> {
    ids.iter().map(|i| i.trim().to_ascii_lowercase()).collect()
}

/// Everyone who may log in.
#[derive(Debug)]
pub struct Credentials {
    users: HashMap<String, (String, Arc<Principal>)>,
    ses: HashMap<String, (String, Arc<Principal>)>,
    /// Checked for unknown users, so that they take as long as known ones.
    dummy: String,
}

impl Credentials {
    pub fn new(users: &UsersFile, ses: &[SesCredential]) -> Credentials {
        let users = users
            .users
            .iter()
            .map(|(name, u)| {
                let p = Principal {
                    name: name.clone(),
                    identities: lower(&u.identities),
                    max_send_rate: u.max_send_rate,
                    max_24_hour_send: u.max_24_hour_send,
                };
                (name.clone(), (u.password.clone(), Arc::new(p)))
            })
            .collect();
        let ses = ses
            .iter()
            .map(|c| {
                let p = Principal {
                    name: c.access_key_id.clone(),
                    identities: lower(&c.identities),
                    max_send_rate: c.max_send_rate,
                    max_24_hour_send: c.max_24_hour_send,
                };
                let pass = ses_smtp_password(&c.secret_access_key, &c.region);
                (c.access_key_id.clone(), (pass, Arc::new(p)))
            })
            .collect();
        Credentials {
            users,
            ses,
            dummy: hash_password("-"),
        }
    }

    /// Whether anyone can log in.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.ses.is_empty()
    }

    /// The principal these credentials prove, if they do. Runs PBKDF2 for
    /// users: call it off the I/O threads.
    pub fn check(&self, user: &str, password: &str) -> Option<Arc<Principal>> {
        if let Some((derived, p)) = self.ses.get(user) {
            let ok = aws_lc_rs::constant_time::verify_slices_are_equal(
                derived.as_bytes(),
                password.as_bytes(),
            )
            .is_ok();
            return ok.then(|| Arc::clone(p));
        }
        match self.users.get(user) {
            Some((hash, p)) => check_password(hash, password).then(|| Arc::clone(p)),
            None => {
                // as slow as a real check, so names cannot be probed
                let _ = check_password(&self.dummy, password);
                None
            }
        }
    }
}

/// What to do with a client address, given its recent login failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Ok,
    /// Answer after this delay.
    Slow(Duration),
    /// Refuse until the window passes.
    Refused,
}

/// Login failures per client address within a window (in memory).
pub struct Failures {
    slow_after: u32,
    refuse_after: u32,
    window: Duration,
    by_ip: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Failures {
    pub fn new(slow_after: u32, refuse_after: u32, window: Duration) -> Failures {
        Failures {
            slow_after,
            refuse_after,
            window,
            by_ip: Mutex::new(HashMap::new()),
        }
    }

    /// The standing of `ip` at `now`.
    pub fn standing(&self, ip: IpAddr, now: Instant) -> Standing {
        let map = self.by_ip.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(&ip) {
            Some(&(n, since)) if now.duration_since(since) < self.window => {
                if n >= self.refuse_after {
                    Standing::Refused
                } else if n >= self.slow_after {
                    Standing::Slow(Duration::from_secs(u64::from(n - self.slow_after + 1)))
                } else {
                    Standing::Ok
                }
            }
            _ => Standing::Ok,
        }
    }

    /// Counts a failed login of `ip`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let mut map = self.by_ip.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            let window = self.window;
            map.retain(|_, (_, since)| now.duration_since(*since) < window);
        }
        let e = map.entry(ip).or_insert((0, now));
        if now.duration_since(e.1) >= self.window {
            *e = (0, now);
        }
        e.0 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ses_password_matches_the_documented_derivation() {
        // (the integration tests check the value with an independent
        // implementation of AWS's documented derivation)
        let p = ses_smtp_password("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "us-east-1");
        assert_eq!(p.len(), 44);
        assert!(p.starts_with("B"), "version byte 0x04 encodes as B...: {p}");
        assert_ne!(
            p,
            ses_smtp_password("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "eu-west-1")
        );
    }

    #[test]
    fn passwords_and_identities() {
        let h = hash_password("s3cret");
        assert!(check_password(&h, "s3cret"));
        assert!(!check_password(&h, "s3cret "));
        assert!(!check_password("garbage", "s3cret"));
        assert!(!check_password("$pbkdf2-sha256$0$$", ""));
        let mut file = UsersFile::default();
        file.users.insert(
            "app".into(),
            UserEntry {
                password: h,
                identities: vec!["Example.com".into(), "ops@other.org".into()],
                max_send_rate: 0.0,
                max_24_hour_send: 0,
            },
        );
        let ses = SesCredential {
            access_key_id: "AKIAEXAMPLE".into(),
            secret_access_key: "secret".into(),
            region: "us-east-1".into(),
            identities: vec!["ses.example".into()],
            max_send_rate: 1.0,
            max_24_hour_send: 10,
        };
        let c = Credentials::new(&file, &[ses]);
        let p = c.check("app", "s3cret").unwrap();
        assert!(p.may_send_as("news@EXAMPLE.com"));
        assert!(p.may_send_as("Ops@other.org"));
        assert!(!p.may_send_as("x@other.org"));
        assert!(!p.may_send_as("x@sub.example.com"));
        assert!(c.check("app", "wrong").is_none());
        assert!(c.check("nobody", "s3cret").is_none());
        let pass = ses_smtp_password("secret", "us-east-1");
        assert_eq!(c.check("AKIAEXAMPLE", &pass).unwrap().name, "AKIAEXAMPLE");
        assert!(c.check("AKIAEXAMPLE", "secret").is_none());
    }

    #[test]
    fn failures_slow_then_refuse_within_the_window() {
        let f = Failures::new(2, 4, Duration::from_secs(60));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        assert_eq!(f.standing(ip, t0), Standing::Ok);
        f.failed(ip, t0);
        f.failed(ip, t0);
        assert_eq!(f.standing(ip, t0), Standing::Slow(Duration::from_secs(1)));
        f.failed(ip, t0);
        assert_eq!(f.standing(ip, t0), Standing::Slow(Duration::from_secs(2)));
        f.failed(ip, t0);
        assert_eq!(f.standing(ip, t0), Standing::Refused);
        assert_eq!(f.standing("192.0.2.2".parse().unwrap(), t0), Standing::Ok);
        assert_eq!(f.standing(ip, t0 + Duration::from_secs(61)), Standing::Ok);
    }
}
