//! MTA-STS (RFC 8461) texts, parsed: the `_mta-sts` TXT record (`v=STSv1;
//! id=...`) and the policy file (`version`, `mode`, `mx`, `max_age`), and
//! whether an MX host matches a policy's `mx` patterns. Pure functions.
//! Exposure: both texts come from the recipient domain (DNS and HTTPS);
//! anything malformed is an error naming what, never a panic.

use serde::{Deserialize, Serialize};

/// Longest `max_age` a policy may give (RFC 8461 §3.2: about a year).
pub const MAX_AGE_LIMIT: u64 = 31_557_600;

/// A policy's mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Verified TLS to a listed MX host, or no delivery.
    Enforce,
    /// Deliver as without a policy; report what would have failed.
    Testing,
    /// The domain withdrew its policy.
    None,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        }
    }
}

/// A parsed policy file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub mode: Mode,
    /// `mx` patterns, lower case: `mx.example.com` or `*.example.com`.
    pub mx: Vec<String>,
    /// Seconds the policy may be cached.
    pub max_age: u64,
    /// The policy's lines as fetched (the `policy-string` of reports).
    #[serde(default)]
    pub text: Vec<String>,
}

/// The policy id of a `_mta-sts` TXT answer (its strings, one per
/// record): exactly one record beginning `v=STSv1;` must be there (RFC
/// 8461 §3.1: others are discarded; several are as good as none), with an
/// `id` of 1 to 32 letters and digits.
pub fn txt_id(records: &[String]) -> Result<String, String> {
    let sts: Vec<&String> = records
        .iter()
        .filter(|r| r.starts_with("v=STSv1;"))
        .collect();
    let record = match sts.as_slice() {
        [] => return Err("no v=STSv1 record".into()),
        [one] => one,
        _ => return Err(format!("{} v=STSv1 records (one is allowed)", sts.len())),
    };
    let mut id = None;
    for field in record.split(';').skip(1) {
        let field = field.trim();
        if field.is_empty() {
            continue;
        }
        let Some((k, v)) = field.split_once('=') else {
            return Err(format!("field {field:?} has no '='"));
        };
        if k.trim() == "id" {
            let v = v.trim();
            if v.is_empty() || v.len() > 32 || !v.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(format!("id {v:?} is not 1 to 32 letters and digits"));
            }
            id = Some(v.to_string());
        }
    }
    id.ok_or_else(|| "the v=STSv1 record has no id".into())
}

/// Parses a policy file (`key: value` lines, LF or CRLF). Unknown keys are
/// ignored (RFC 8461 §3.2); `version`, `mode` and `max_age` are required,
/// and at least one `mx` unless the mode is `none`.
pub fn parse(text: &str) -> Result<Policy, String> {
    let (mut version, mut mode, mut max_age) = (None, None, None);
    let mut mx = Vec::new();
    let mut lines = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        lines.push(line.trim().chars().take(256).collect::<String>());
        let Some((k, v)) = line.split_once(':') else {
            return Err(format!("line {}: {line:?} is not `key: value`", n + 1));
        };
        let v = v.trim();
        match k.trim() {
            "version" => version = Some(v.to_string()),
            "mode" => {
                mode = Some(match v {
                    "enforce" => Mode::Enforce,
                    "testing" => Mode::Testing,
                    "none" => Mode::None,
                    _ => return Err(format!("line {}: unknown mode {v:?}", n + 1)),
                })
            }
            "max_age" => {
                let age = v
                    .parse::<u64>()
                    .ok()
                    .filter(|a| v.len() <= 10 && *a <= MAX_AGE_LIMIT)
                    .ok_or_else(|| {
                        format!("line {}: max_age {v:?} is not 0 to {MAX_AGE_LIMIT}", n + 1)
                    })?;
                max_age = Some(age);
            }
            "mx" => {
                let p = v.trim_end_matches('.').to_ascii_lowercase();
                let host = p.strip_prefix("*.").unwrap_or(&p);
                if host.is_empty()
                    || host.contains('*')
                    || !host
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                {
                    return Err(format!("line {}: mx {v:?} is not a host pattern", n + 1));
                }
                mx.push(p);
            }
            _ => {}
        }
    }
    match version.as_deref() {
        Some("STSv1") => {}
        Some(v) => return Err(format!("version {v:?} is not STSv1")),
        None => return Err("no version".into()),
    }
    let mode = mode.ok_or("no mode")?;
    let max_age = max_age.ok_or("no max_age")?;
    if mx.is_empty() && mode != Mode::None {
        return Err("no mx".into());
    }
    Ok(Policy {
        mode,
        mx,
        max_age,
        text: lines,
    })
}

impl Policy {
    /// Whether `host` is one of the policy's MX hosts: equal to a
    /// pattern, or a wildcard's domain with exactly one label before it
    /// (RFC 8461 §4.1: `*.example.com` matches `mx.example.com`, not
    /// `a.mx.example.com` nor `example.com`).
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.mx.iter().any(|p| match p.strip_prefix("*.") {
            Some(base) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == base),
            None => *p == host,
        })
    }

    /// The policy as the `policy-string` of a TLS report (RFC 8460 §4.4):
    /// its lines as fetched.
    pub fn lines(&self) -> Vec<String> {
        if !self.text.is_empty() {
            return self.text.clone();
        }
        let mut l = vec![
            "version: STSv1".to_string(),
            format!("mode: {}", self.mode.name()),
        ];
        l.extend(self.mx.iter().map(|m| format!("mx: {m}")));
        l.push(format!("max_age: {}", self.max_age));
        l
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_records() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            txt_id(&s(&["v=STSv1; id=20160831085700Z;"])).unwrap(),
            "20160831085700Z"
        );
        assert_eq!(txt_id(&s(&["spf", "v=STSv1;id=abc"])).unwrap(), "abc");
        assert!(txt_id(&s(&["v=STSv1; id=a", "v=STSv1; id=b"])).is_err());
        assert!(txt_id(&s(&["v=STSv1;"])).is_err());
        // only records beginning "v=STSv1;" count
        assert_eq!(txt_id(&s(&["v=STSv1", "v=STSv1; id=x1"])).unwrap(), "x1");
        assert!(txt_id(&s(&[" v=STSv1; id=x1"])).is_err());
        assert!(txt_id(&s(&["v=STSv1; id=has-dash"])).is_err());
        assert!(txt_id(&s(&["v=STSv1; id=012345678901234567890123456789012"])).is_err());
        assert!(txt_id(&s(&["v=spf1 -all"])).is_err());
        assert!(txt_id(&[]).is_err());
    }

    #[test]
    fn policy_files() {
        let p = parse("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.Example.NET.\r\nmax_age: 604800\r\nextension: x\r\n").unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.mx, ["mail.example.com", "*.example.net"]);
        assert_eq!(p.max_age, 604800);
        assert!(p.allows("mail.example.com"));
        assert!(p.allows("MAIL.example.com."));
        assert!(p.allows("mx1.example.net"));
        assert!(!p.allows("a.mx1.example.net"));
        assert!(!p.allows("example.net"));
        assert!(!p.allows("other.example.com"));
        assert_eq!(p.lines()[1], "mode: enforce");
        assert_eq!(p.lines()[3], "mx: *.Example.NET.", "as fetched");
        assert_eq!(p.lines().len(), 6);
        let none = parse("version: STSv1\nmode: none\nmax_age: 0\n").unwrap();
        assert_eq!(none.mode, Mode::None);
        for bad in [
            "",
            "mode: enforce\nmx: a\nmax_age: 1",
            "version: STSv2\nmode: enforce\nmx: a\nmax_age: 1",
            "version: STSv1\nmode: strict\nmx: a\nmax_age: 1",
            "version: STSv1\nmode: enforce\nmax_age: 1",
            "version: STSv1\nmode: enforce\nmx: a\n",
            "version: STSv1\nmode: enforce\nmx: a\nmax_age: 31557601",
            "version: STSv1\nmode: enforce\nmx: a\nmax_age: -1",
            "version: STSv1\nmode: enforce\nmx: a.*.b\nmax_age: 1",
            "version: STSv1\nmode: enforce\nmx: a b\nmax_age: 1",
            "version: STSv1\nno colon here\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
