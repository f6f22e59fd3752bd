//! TLS reporting (RFC 8460): the results of sessions to domains with an
//! MTA-STS policy (and of failed policy fetches), aggregated per UTC day
//! and policy domain, written as the RFC's JSON reports:
//! `<reports_dir>/<YYYY-MM-DD>/<domain>.json`, one per domain and day,
//! rewritten whole (temporary file, renamed) by [`Reports::flush`]. At
//! start the day's reports are read back, so counts survive restarts.
//! Reports are written, not sent: whoever ships them takes the address
//! from the domain's `_smtp._tls` TXT record. Exposure: the domain names
//! in file names are DNS names (letters, digits, `-`, `.`); any other is
//! not reported.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::policy::Policy;

/// One report (RFC 8460 §4.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Report {
    pub organization_name: String,
    pub date_range: DateRange,
    pub contact_info: String,
    pub report_id: String,
    pub policies: Vec<PolicyResults>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DateRange {
    pub start_datetime: String,
    pub end_datetime: String,
}

/// The sessions under one policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PolicyResults {
    pub policy: PolicyDesc,
    pub summary: Summary,
    #[serde(default)]
    pub failure_details: Vec<FailureDetail>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PolicyDesc {
    /// `sts`, or `no-policy-found`.
    pub policy_type: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_string: Vec<String>,
    pub policy_domain: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mx_host: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Summary {
    pub total_successful_session_count: u64,
    pub total_failure_session_count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct FailureDetail {
    pub result_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sending_mta_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiving_mx_hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiving_ip: Option<String>,
    pub failed_session_count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason_code: Option<String>,
}

/// A failed session (or policy fetch), as reported.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Failure {
    pub result_type: &'static str,
    pub sending_ip: Option<String>,
    pub mx_host: Option<String>,
    pub receiving_ip: Option<String>,
    pub reason: Option<String>,
}

/// The day's reports of a running engine.
pub struct Reports {
    dir: PathBuf,
    organization: String,
    contact: String,
    /// (day, domain) → report; whether it changed since written.
    open: Mutex<BTreeMap<(String, String), (Report, bool)>>,
}

const DAY: u64 = 86_400;
/// Most failure details per policy of one report: further failures of
/// other kinds are counted in its summary only (a hostile server cannot
/// grow a report without bound).
pub const MAX_DETAILS: usize = 100;
/// Longest `failure-reason-code` kept.
const MAX_REASON: usize = 100;

fn day_of(t: SystemTime) -> (String, u64) {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let start = secs - secs % DAY;
    let stamp = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(start));
    (stamp.to_string()[..10].to_string(), start)
}

fn reportable(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= 253
        && !domain.starts_with('.')
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

impl Reports {
    /// Reports written under `dir` by `organization` (`contact`: how to
    /// reach it); today's already there are read back (a damaged one is
    /// set aside as `.damaged` and started afresh).
    pub fn open(dir: &Path, organization: &str, contact: &str) -> Reports {
        let r = Reports {
            dir: dir.to_path_buf(),
            organization: organization.to_string(),
            contact: contact.to_string(),
            open: Mutex::new(BTreeMap::new()),
        };
        let (day, _) = day_of(SystemTime::now());
        if let Ok(entries) = std::fs::read_dir(dir.join(&day)) {
            let mut open = r.open.lock().unwrap_or_else(PoisonError::into_inner);
            for e in entries.flatten() {
                let path = e.path();
                let Some(domain) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".json"))
                    .filter(|d| reportable(d))
                else {
                    continue;
                };
                match std::fs::read(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|b| serde_json::from_slice::<Report>(&b).map_err(|e| e.to_string()))
                {
                    Ok(rep) => {
                        open.insert((day.clone(), domain.to_string()), (rep, false));
                    }
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "TLS report unreadable; set aside as .damaged, the day's counts start afresh");
                        let _ = std::fs::rename(&path, path.with_extension("json.damaged"));
                    }
                }
            }
        }
        r
    }

    /// Counts one session to `domain` under `policy` (`None`: no policy
    /// found, e.g. its fetch failed): a success, or `failure`.
    pub fn record(&self, domain: &str, policy: Option<&Policy>, failure: Option<Failure>) {
        self.record_at(SystemTime::now(), domain, policy, failure);
    }

    fn record_at(
        &self,
        now: SystemTime,
        domain: &str,
        policy: Option<&Policy>,
        failure: Option<Failure>,
    ) {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        if !reportable(&domain) {
            return;
        }
        let (day, start) = day_of(now);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let (report, dirty) = open
            .entry((day.clone(), domain.clone()))
            .or_insert_with(|| {
                let at = |s: u64| {
                    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(s))
                        .to_string()
                };
                (
                    Report {
                        organization_name: self.organization.clone(),
                        date_range: DateRange {
                            start_datetime: at(start),
                            end_datetime: at(start + DAY - 1),
                        },
                        contact_info: self.contact.clone(),
                        report_id: format!("{day}.{domain}@{}", self.organization),
                        policies: Vec::new(),
                    },
                    false,
                )
            });
        *dirty = true;
        let desc = PolicyDesc {
            policy_type: if policy.is_some() {
                "sts"
            } else {
                "no-policy-found"
            }
            .into(),
            policy_string: policy.map(Policy::lines).unwrap_or_default(),
            policy_domain: domain,
            mx_host: policy.map(|p| p.mx.clone()).unwrap_or_default(),
        };
        let i = match report.policies.iter().position(|p| p.policy == desc) {
            Some(i) => i,
            None => {
                report.policies.push(PolicyResults {
                    policy: desc,
                    summary: Summary {
                        total_successful_session_count: 0,
                        total_failure_session_count: 0,
                    },
                    failure_details: Vec::new(),
                });
                report.policies.len() - 1
            }
        };
        let entry = &mut report.policies[i];
        let Some(f) = failure else {
            entry.summary.total_successful_session_count += 1;
            return;
        };
        entry.summary.total_failure_session_count += 1;
        let f = Failure {
            reason: f.reason.map(|r| r.chars().take(MAX_REASON).collect()),
            ..f
        };
        let same = |d: &FailureDetail| {
            d.result_type == f.result_type
                && d.sending_mta_ip == f.sending_ip
                && d.receiving_mx_hostname == f.mx_host
                && d.receiving_ip == f.receiving_ip
                && d.failure_reason_code == f.reason
        };
        let full = entry.failure_details.len() >= MAX_DETAILS;
        match entry.failure_details.iter_mut().find(|d| same(d)) {
            Some(d) => d.failed_session_count += 1,
            None if full => {}
            None => entry.failure_details.push(FailureDetail {
                result_type: f.result_type.into(),
                sending_mta_ip: f.sending_ip,
                receiving_mx_hostname: f.mx_host,
                receiving_ip: f.receiving_ip,
                failed_session_count: 1,
                failure_reason_code: f.reason,
            }),
        }
    }

    /// Writes every report changed since the last flush, and forgets those
    /// of days gone (their files are final).
    pub fn flush(&self) {
        let (today, _) = day_of(SystemTime::now());
        let changed: Vec<((String, String), Report)> = {
            let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
            let changed = open
                .iter_mut()
                .filter(|(_, (_, dirty))| *dirty)
                .map(|(k, (r, dirty))| {
                    *dirty = false;
                    (k.clone(), r.clone())
                })
                .collect();
            open.retain(|(day, _), _| *day >= today);
            changed
        };
        for ((day, domain), report) in changed {
            if let Err(e) = self.write(&day, &domain, &report) {
                tracing::warn!(%day, %domain, error = %e, "TLS report not written");
            }
        }
    }

    fn write(&self, day: &str, domain: &str, report: &Report) -> std::io::Result<()> {
        let dir = self.dir.join(day);
        std::fs::create_dir_all(&dir)?;
        let tmp = dir.join(format!("{domain}.json.tmp"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(report)?)?;
        std::fs::rename(&tmp, dir.join(format!("{domain}.json")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::sts::policy;

    #[test]
    fn sessions_aggregate_per_day_and_domain_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let p = policy::parse("version: STSv1\nmode: testing\nmx: *.mx.test\nmax_age: 86400\n")
            .unwrap();
        let r = Reports::open(dir.path(), "volley.test", "postmaster@volley.test");
        let fail = || Failure {
            result_type: "certificate-host-mismatch",
            mx_host: Some("a.mx.test".into()),
            receiving_ip: Some("192.0.2.1".into()),
            ..Default::default()
        };
        r.record("Example.test", Some(&p), None);
        r.record("example.test", Some(&p), None);
        r.record("example.test", Some(&p), Some(fail()));
        r.record("example.test", Some(&p), Some(fail()));
        r.record(
            "example.test",
            None,
            Some(Failure {
                result_type: "sts-policy-fetch-error",
                ..Default::default()
            }),
        );
        r.record("../evil", Some(&p), None);
        r.flush();
        let (day, _) = day_of(SystemTime::now());
        let path = dir.path().join(&day).join("example.test.json");
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["organization-name"], "volley.test");
        assert!(
            v["date-range"]["start-datetime"]
                .as_str()
                .unwrap()
                .ends_with("T00:00:00Z")
        );
        assert!(
            v["date-range"]["end-datetime"]
                .as_str()
                .unwrap()
                .ends_with("T23:59:59Z")
        );
        let sts = &v["policies"][0];
        assert_eq!(sts["policy"]["policy-type"], "sts");
        assert_eq!(sts["policy"]["policy-string"][1], "mode: testing");
        assert_eq!(sts["policy"]["mx-host"][0], "*.mx.test");
        assert_eq!(sts["summary"]["total-successful-session-count"], 2);
        assert_eq!(sts["summary"]["total-failure-session-count"], 2);
        assert_eq!(sts["failure-details"][0]["failed-session-count"], 2);
        assert_eq!(
            sts["failure-details"][0]["result-type"],
            "certificate-host-mismatch"
        );
        assert_eq!(v["policies"][1]["policy"]["policy-type"], "no-policy-found");
        assert_eq!(std::fs::read_dir(dir.path().join(&day)).unwrap().count(), 1);
        // counts go on after a restart
        let again = Reports::open(dir.path(), "volley.test", "");
        again.record("example.test", Some(&p), None);
        again.flush();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            v["policies"][0]["summary"]["total-successful-session-count"],
            3
        );
    }

    #[test]
    fn days_are_utc_calendar_days() {
        let t = UNIX_EPOCH + Duration::from_secs(1_764_633_600 + 3_600); // 2025-12-02 01:00
        assert_eq!(day_of(t), ("2025-12-02".to_string(), 1_764_633_600));
    }
}
