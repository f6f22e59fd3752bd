//! `[egress]`: the local addresses mail leaves from (sources: an address to
//! bind and the EHLO name that matches its PTR record) and the pools that
//! group them. A configuration set (`pool` in `[configuration_sets.NAME]`)
//! or a campaign (`pool` in its file) chooses a pool; the others use the
//! pool named `default`, which is every source when no pool has that name.
//! Without sources the system chooses the address and `[delivery] helo`
//! is the EHLO name, as before. Pure.

use std::collections::HashSet;
use std::net::IpAddr;

use serde::Deserialize;

/// The `[egress]` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressConfig {
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    #[serde(default)]
    pub pools: Vec<PoolConfig>,
}

/// One source: `[[egress.sources]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub name: String,
    /// The local address to bind (IPv4 or IPv6).
    pub address: IpAddr,
    /// The EHLO name (its PTR record's name); `[delivery] helo` if absent.
    #[serde(default)]
    pub ehlo: Option<String>,
    /// A warm-up plan: the most messages a day to each site (provider),
    /// day 1, 2, ...; `"standard"` for [`STANDARD_WARMUP`]. None: an
    /// established address.
    #[serde(default)]
    pub warmup: Option<WarmupPlan>,
}

/// A warm-up plan as the config gives it.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum WarmupPlan {
    Named(String),
    Days(Vec<u64>),
}

/// The standard plan: messages a day to each site, doubling from 50 over
/// 14 days (as the common published schedules rise); established after.
pub const STANDARD_WARMUP: [u64; 14] = [
    50, 100, 200, 400, 800, 1_500, 3_000, 6_000, 12_000, 25_000, 50_000, 100_000, 200_000, 400_000,
];

impl WarmupPlan {
    /// The daily allowances.
    pub fn days(&self) -> Option<Vec<u64>> {
        match self {
            WarmupPlan::Named(n) if n == "standard" => Some(STANDARD_WARMUP.to_vec()),
            WarmupPlan::Named(_) => None,
            WarmupPlan::Days(d) => Some(d.clone()),
        }
    }
}

/// One pool: `[[egress.pools]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    pub name: String,
    pub sources: Vec<String>,
}

/// The name of the pool mail uses unless it chooses another.
pub const DEFAULT_POOL: &str = "default";

fn valid_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl EgressConfig {
    /// The pools by name with their sources' indices, the default pool
    /// included (every source, unless a pool is named `default`). Empty
    /// without sources.
    pub fn pools(&self) -> Vec<(String, Vec<usize>)> {
        if self.sources.is_empty() {
            return Vec::new();
        }
        let index = |n: &String| self.sources.iter().position(|s| s.name == *n);
        let mut out: Vec<(String, Vec<usize>)> = self
            .pools
            .iter()
            .map(|p| (p.name.clone(), p.sources.iter().filter_map(index).collect()))
            .collect();
        if !out.iter().any(|(n, _)| n == DEFAULT_POOL) {
            out.push((DEFAULT_POOL.to_string(), (0..self.sources.len()).collect()));
        }
        out
    }

    /// Whether `name` is a pool mail may choose.
    pub fn has_pool(&self, name: &str) -> bool {
        self.pools().iter().any(|(n, _)| n == name)
    }

    /// Checks names, addresses and references: `(key, reason)`.
    pub fn check(&self, helo: &str) -> Result<(), (String, String)> {
        let mut names = HashSet::new();
        for (i, s) in self.sources.iter().enumerate() {
            let key = |k: &str| format!("egress.sources[{i}].{k}");
            if !valid_name(&s.name) {
                return Err((key("name"), "1 to 64 letters, digits, '_', '-', '.'".into()));
            }
            if !names.insert(s.name.as_str()) {
                return Err((key("name"), format!("{:?} is used twice", s.name)));
            }
            if s.address.is_unspecified() || s.address.is_multicast() {
                return Err((
                    key("address"),
                    format!("{} is not a local unicast address", s.address),
                ));
            }
            if let Some(plan) = &s.warmup {
                match plan.days() {
                    None => {
                        return Err((
                            key("warmup"),
                            "\"standard\" or a list of daily allowances".into(),
                        ));
                    }
                    Some(d) if d.is_empty() || d.len() > 365 || d.contains(&0) => {
                        return Err((
                            key("warmup"),
                            "1 to 365 daily allowances, each at least 1".into(),
                        ));
                    }
                    Some(_) => {}
                }
            }
            let ehlo = s.ehlo.as_deref().unwrap_or(helo);
            if ehlo.is_empty() || ehlo.bytes().any(|b| !b.is_ascii_graphic()) {
                return Err((key("ehlo"), "must be a host name".into()));
            }
        }
        let mut pools = HashSet::new();
        for (i, p) in self.pools.iter().enumerate() {
            let key = |k: &str| format!("egress.pools[{i}].{k}");
            if !valid_name(&p.name) {
                return Err((key("name"), "1 to 64 letters, digits, '_', '-', '.'".into()));
            }
            if !pools.insert(p.name.as_str()) {
                return Err((key("name"), format!("{:?} is used twice", p.name)));
            }
            if p.sources.is_empty() {
                return Err((key("sources"), "a pool needs at least one source".into()));
            }
            if let Some(unknown) = p.sources.iter().find(|n| !names.contains(n.as_str())) {
                return Err((
                    key("sources"),
                    format!("no source {unknown:?} in [[egress.sources]]"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> EgressConfig {
        toml::from_str(s).unwrap()
    }

    #[test]
    fn the_default_pool_is_every_source_unless_named() {
        let e = parse(
            "[[sources]]\nname = \"a\"\naddress = \"127.0.0.2\"\n[[sources]]\nname = \"b\"\naddress = \"::1\"\nehlo = \"mta2.example.com\"\n[[pools]]\nname = \"bulk\"\nsources = [\"b\"]\n",
        );
        assert!(e.check("mta.example.com").is_ok());
        assert_eq!(
            e.pools(),
            [
                ("bulk".to_string(), vec![1]),
                ("default".to_string(), vec![0, 1])
            ]
        );
        assert!(e.has_pool("bulk") && e.has_pool("default") && !e.has_pool("x"));
        let named = parse(
            "[[sources]]\nname = \"a\"\naddress = \"127.0.0.2\"\n[[pools]]\nname = \"default\"\nsources = [\"a\"]\n",
        );
        assert_eq!(named.pools(), [("default".to_string(), vec![0])]);
        assert!(EgressConfig::default().pools().is_empty());
    }

    #[test]
    fn mistakes_name_their_key() {
        let bad = |s: &str| parse(s).check("h").unwrap_err().0;
        assert_eq!(
            bad("[[sources]]\nname = \"a\"\naddress = \"0.0.0.0\"\n"),
            "egress.sources[0].address"
        );
        assert_eq!(
            bad(
                "[[sources]]\nname = \"a\"\naddress = \"127.0.0.2\"\n[[sources]]\nname = \"a\"\naddress = \"127.0.0.3\"\n"
            ),
            "egress.sources[1].name"
        );
        assert_eq!(
            bad(
                "[[sources]]\nname = \"a\"\naddress = \"127.0.0.2\"\n[[pools]]\nname = \"p\"\nsources = [\"z\"]\n"
            ),
            "egress.pools[0].sources"
        );
        assert_eq!(
            bad("[[sources]]\nname = \"a\"\naddress = \"127.0.0.2\"\nehlo = \"bad name\"\n"),
            "egress.sources[0].ehlo"
        );
        assert!(
            toml::from_str::<EgressConfig>("[[sources]]\nname = \"a\"\naddress = \"nope\"\n")
                .is_err()
        );
    }
}
