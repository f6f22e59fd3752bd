//! MTA-STS (RFC 8461) for MX delivery: a recipient domain's policy looked
//! up (the `_mta-sts` TXT record's id; the policy file fetched over
//! verified HTTPS when the id is new), cached for its `max_age` and kept in
//! `<spool>/mta-sts.json` so that a restart, or an attacker who strips the
//! TXT record, does not drop a policy before it expires (RFC 8461 §5.1:
//! without a TXT record, or when a fetch fails, the cached policy holds
//! until it expires; `mode: none` withdraws it).
//!
//! The policy in force goes with the domain's site (see `site.rs`):
//! `enforce` restricts the MX hosts to those the policy lists and requires
//! TLS verified for the host name (`open.rs`); `testing` delivers as
//! without a policy, and what would have failed is reported. Every session
//! under a policy, and every failed fetch, is counted in the day's TLS
//! reports (`sts/report.rs`, RFC 8460). Exposure: the TXT record, the
//! policy host and its answer are the recipient domain's (see
//! `sts/policy.rs`, `sts/fetch.rs`); the cache file is the service's own
//! (a damaged one is set aside, and policies are fetched again).

pub mod fetch;
pub mod policy;
pub mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::mx::Resolver;
use crate::config::mta_sts::MtaStsConfig;
use policy::{Mode, Policy};
use report::{Failure, Reports};

/// The cache file's name in the spool directory.
pub const FILE: &str = "mta-sts.json";
/// How long after a failed fetch the same policy id is fetched again.
pub const FETCH_RETRY: std::time::Duration = std::time::Duration::from_secs(300);

/// A policy in force for a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub domain: String,
    pub policy: Arc<Policy>,
}

impl Applied {
    pub fn enforced(&self) -> bool {
        self.policy.mode == Mode::Enforce
    }
}

/// A cached policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Cached {
    id: String,
    policy: Policy,
    /// When it was fetched (seconds since the epoch).
    fetched: u64,
}

impl Cached {
    fn live(&self, now: u64) -> bool {
        now < self.fetched.saturating_add(self.policy.max_age)
    }

    /// Whether it is time to fetch it again: half its `max_age`, at most a
    /// day, after it was fetched.
    fn due(&self, now: u64) -> bool {
        now.saturating_sub(self.fetched) >= (self.policy.max_age / 2).min(86_400)
    }
}

/// Policies and reports of a running engine.
pub struct Sts {
    dir: PathBuf,
    cache: Mutex<BTreeMap<String, Cached>>,
    /// One writer of the cache file at a time, and the snapshot it wrote
    /// last (an older one is not written over it).
    writer: Mutex<u64>,
    generation: AtomicU64,
    /// Fetches that failed lately (domain → the TXT id and when): not
    /// tried again for [`FETCH_RETRY`], so an unreachable policy host does
    /// not hold each renewal of the domain's mapping for a fetch timeout.
    failed: Mutex<BTreeMap<String, (String, std::time::Instant)>>,
    pub reports: Reports,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Sts {
    /// The cache of the spool in `dir`; reports under `config`'s
    /// `reports_dir` (default `<dir>/tls-reports`), by `organization`.
    pub fn open(dir: &Path, config: &MtaStsConfig, helo: &str) -> Sts {
        let path = dir.join(FILE);
        let cache = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "MTA-STS cache unreadable; set aside as .damaged, policies are fetched again");
                let _ = std::fs::rename(&path, path.with_extension("json.damaged"));
                BTreeMap::new()
            }),
            Err(_) => BTreeMap::new(),
        };
        let org = config
            .organization
            .clone()
            .unwrap_or_else(|| helo.to_string());
        let contact = config
            .contact
            .clone()
            .unwrap_or_else(|| format!("postmaster@{org}"));
        let reports_dir = config
            .reports_dir
            .clone()
            .unwrap_or_else(|| dir.join("tls-reports"));
        Sts {
            dir: dir.to_path_buf(),
            cache: Mutex::new(cache),
            writer: Mutex::new(0),
            generation: AtomicU64::new(0),
            failed: Mutex::new(BTreeMap::new()),
            reports: Reports::open(&reports_dir, &org, &contact),
        }
    }

    fn cached(&self, domain: &str) -> Option<Cached> {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(domain)
            .cloned()
    }

    /// Caches `entry` for `domain` (and forgets expired ones), and writes
    /// the cache file (on a blocking thread; the newest snapshot wins).
    async fn store(self: &Arc<Self>, domain: &str, entry: Cached) {
        let (snapshot, generation) = {
            let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            let now = now_secs();
            cache.retain(|_, c| c.live(now));
            cache.insert(domain.to_string(), entry);
            let g = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
            (cache.clone(), g)
        };
        let me = Arc::clone(self);
        let _ = tokio::task::spawn_blocking(move || {
            let mut written = me.writer.lock().unwrap_or_else(PoisonError::into_inner);
            if *written > generation {
                return;
            }
            match super::holds::store(&me.dir, FILE, &snapshot) {
                Ok(()) => *written = generation,
                Err(e) => {
                    tracing::warn!(error = %e, "MTA-STS cache not written (policies held in memory)");
                }
            }
        })
        .await;
    }

    /// The policy in force for `domain` (`None`: none, or `mode: none`).
    /// Looks the TXT record up; fetches the policy when its id is not the
    /// cached one, or when the cached policy is due for a refresh (RFC 8461
    /// §3.3: half its `max_age`, at most a day, after it was fetched; also
    /// without a TXT record, under the cached id).
    pub async fn lookup(
        self: &Arc<Self>,
        domain: &str,
        config: &MtaStsConfig,
        resolver: &Resolver,
        tls: Option<&tokio_rustls::TlsConnector>,
    ) -> Option<Applied> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let now = now_secs();
        let cached = self.cached(&domain).filter(|c| c.live(now));
        let txt_id = match resolver.txt(&format!("_mta-sts.{domain}")).await {
            Ok(records) => policy::txt_id(&records).ok(),
            Err(e) => {
                tracing::debug!(%domain, error = %e, "MTA-STS TXT lookup failed; the cached policy (if any) holds");
                None
            }
        };
        let applied = |c: &Cached| {
            (c.policy.mode != Mode::None).then(|| Applied {
                domain: domain.clone(),
                policy: Arc::new(c.policy.clone()),
            })
        };
        let fetch_id = match (txt_id, &cached) {
            (Some(id), Some(c)) if id == c.id => c.due(now).then_some(id),
            (Some(id), _) => Some(id),
            (None, Some(c)) => c.due(now).then(|| c.id.clone()),
            (None, None) => None,
        };
        let Some(id) = fetch_id else {
            return cached.as_ref().and_then(applied);
        };
        let failed_lately = {
            let mut failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
            failed.retain(|_, (_, at)| at.elapsed() < FETCH_RETRY);
            failed.get(&domain).is_some_and(|(i, _)| *i == id)
        };
        if failed_lately {
            return cached.as_ref().and_then(applied);
        }
        let got = fetch::fetch(
            &domain,
            config.https_port,
            resolver,
            tls,
            config.fetch_timeout,
        )
        .await
        .and_then(|text| policy::parse(&text).map_err(fetch::FetchError::Invalid));
        match got {
            Ok(p) => {
                tracing::info!(%domain, %id, mode = p.mode.name(), mx = ?p.mx, max_age = p.max_age, "MTA-STS policy fetched");
                let entry = Cached {
                    id,
                    policy: p,
                    fetched: now,
                };
                let a = applied(&entry);
                self.store(&domain, entry).await;
                a
            }
            Err(e) => {
                tracing::warn!(%domain, error = %e, "MTA-STS policy fetch failed; the cached policy (if any) holds");
                self.failed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(domain.clone(), (id, std::time::Instant::now()));
                // under the cached policy when one holds (RFC 8460 §4.3)
                self.reports.record(
                    &domain,
                    cached.as_ref().map(|c| &c.policy),
                    Some(Failure {
                        result_type: e.result_type(),
                        reason: Some(e.to_string()),
                        ..Default::default()
                    }),
                );
                cached.as_ref().and_then(applied)
            }
        }
    }
}

/// A fixed code for why a TLS session failed (the `failure-reason-code`
/// of reports: never the server's own text).
pub fn reason_code(e: &crate::smtp::SessionError) -> &'static str {
    use crate::smtp::SessionError;
    match e {
        SessionError::TlsRequired(m) if m.contains("does not offer") => "starttls-not-offered",
        SessionError::TlsRequired(m) if m.contains("verifier") => "no-local-verifier",
        SessionError::TlsRequired(_) => "starttls-refused",
        SessionError::Tls(_) => match result_type(e) {
            "validation-failure" => "handshake-failed",
            other => other,
        },
        _ => "session-failed",
    }
}

/// The RFC 8460 result type of a failed TLS session: from what the
/// handshake or the server said.
pub fn result_type(e: &crate::smtp::SessionError) -> &'static str {
    use crate::smtp::SessionError;
    match e {
        SessionError::TlsRequired(m) if m.contains("STARTTLS") => "starttls-not-supported",
        SessionError::Tls(m) => {
            let m = m.to_ascii_lowercase().replace([' ', '_'], "");
            if m.contains("notvalidforname") {
                "certificate-host-mismatch"
            } else if m.contains("expired") {
                "certificate-expired"
            } else if m.contains("unknownissuer")
                || m.contains("badsignature")
                || m.contains("selfsigned")
            {
                "certificate-not-trusted"
            } else {
                "validation-failure"
            }
        }
        _ => "validation-failure",
    }
}
