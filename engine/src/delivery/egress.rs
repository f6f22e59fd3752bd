//! Egress sources and pools at run time (`[egress]`, see
//! [`crate::config::egress`]): which source a recipient's mail leaves
//! from, and which sources are out of their pools.
//!
//! A site has one shard per source that sends to it, so its rate and
//! connection limits and adaptive throttling apply per source × site (as
//! providers limit each IP). The scheduler picks a source for each batch
//! of a domain's recipients from their pool, round robin over the pool's
//! sources in service. A source leaves service when its address cannot be
//! bound, or when [`REFUSING_SITES`] different sites in a row refused its
//! sessions at the greeting (blocklisted) with no session opened between;
//! it is reported (log, `volley_egress_source_up`) and tried again after
//! [`OUT_FOR`]. A pool whose sources are all out uses them anyway (its mail
//! is deferred, never failed). The sources are fixed at start. Exposure:
//! none (the config is checked at load).

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::config::egress::{DEFAULT_POOL, EgressConfig};
use crate::metrics::Metrics;

/// Different sites refusing a source at the greeting in a row that take
/// it out of service.
pub const REFUSING_SITES: usize = 3;
/// How long a source stays out of service before it is tried again.
pub const OUT_FOR: Duration = Duration::from_secs(3600);

/// One source.
#[derive(Debug)]
pub struct Source {
    pub index: usize,
    pub name: Arc<str>,
    pub address: IpAddr,
    pub ehlo: String,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Out of service since, and why.
    out: Option<(Instant, String)>,
    /// Sites that refused it at the greeting since its last session.
    refusing: HashSet<Arc<str>>,
}

impl Source {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether it is in service (not out, or out for [`OUT_FOR`]).
    pub fn in_service(&self) -> bool {
        self.lock()
            .out
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed() >= OUT_FOR)
    }
}

/// The sources and pools of a running engine.
pub struct Egress {
    /// The sources' warm-ups.
    pub warmup: super::warmup::Warmup,
    sources: Vec<Arc<Source>>,
    /// Pools by name: their sources' indices.
    pools: Vec<(String, Vec<usize>)>,
    next: AtomicUsize,
    metrics: Arc<Metrics>,
}

impl Egress {
    pub fn new(
        config: &EgressConfig,
        helo: &str,
        metrics: Arc<Metrics>,
        warmup: super::warmup::Warmup,
    ) -> Egress {
        let sources: Vec<Arc<Source>> = config
            .sources
            .iter()
            .enumerate()
            .map(|(index, s)| {
                Arc::new(Source {
                    index,
                    name: Arc::from(s.name.as_str()),
                    address: s.address,
                    ehlo: s.ehlo.clone().unwrap_or_else(|| helo.to_string()),
                    state: Mutex::default(),
                })
            })
            .collect();
        for s in &sources {
            metrics.source_up(&s.name, true);
        }
        for s in warmup.standings(super::warmup::day_of(volley_spool::now_ms())) {
            metrics.warmup(&s);
        }
        Egress {
            warmup,
            sources,
            pools: config.pools(),
            next: AtomicUsize::new(0),
            metrics,
        }
    }

    /// No sources: the system picks the address.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Whether mail may choose among several pools (else every recipient
    /// uses the default one and none needs looking at).
    pub fn several_pools(&self) -> bool {
        self.pools.len() > 1
    }

    /// The index of the pool `name` (the default pool for `None` or a
    /// name no longer configured).
    pub fn pool(&self, name: Option<&str>) -> usize {
        let find = |n: &str| self.pools.iter().position(|(p, _)| p == n);
        name.and_then(find)
            .or_else(|| find(DEFAULT_POOL))
            .unwrap_or(0)
    }

    /// The source the next batch of pool `pool` leaves from: round robin
    /// over its sources in service (over all of them when none is).
    pub fn pick(&self, pool: usize) -> Option<Arc<Source>> {
        let (_, members) = self.pools.get(pool)?;
        let live: Vec<&Arc<Source>> = members
            .iter()
            .filter_map(|&i| self.sources.get(i))
            .filter(|s| s.in_service())
            .collect();
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        if live.is_empty() {
            let all: Vec<&Arc<Source>> = members
                .iter()
                .filter_map(|&i| self.sources.get(i))
                .collect();
            return all.get(n % all.len().max(1)).map(|s| Arc::clone(s));
        }
        Some(Arc::clone(live[n % live.len()]))
    }

    /// Shares `n` messages of pool `pool` for `site` out among its
    /// sources in service, in turn, each within its warm-up allowance for
    /// UTC day `today` (counted); how many each takes, and how many have
    /// no room today.
    pub fn assign(
        &self,
        pool: usize,
        site: &str,
        n: usize,
        today: u64,
    ) -> (Vec<(Arc<Source>, usize)>, usize) {
        if !self.warmup.any() {
            return (self.pick(pool).map(|s| (s, n)).into_iter().collect(), 0);
        }
        let Some((_, members)) = self.pools.get(pool) else {
            return (Vec::new(), n);
        };
        let mut turn: Vec<&Arc<Source>> = members
            .iter()
            .filter_map(|&i| self.sources.get(i))
            .filter(|s| s.in_service())
            .collect();
        if turn.is_empty() {
            turn = members
                .iter()
                .filter_map(|&i| self.sources.get(i))
                .collect();
        }
        let len = turn.len().max(1);
        turn.rotate_left(self.next.fetch_add(1, Ordering::Relaxed) % len);
        let mut out = Vec::new();
        let mut left = n;
        for s in turn {
            if left == 0 {
                break;
            }
            let take = match self.warmup.room(&s.name, site, today) {
                None => left,
                Some(r) => left.min(usize::try_from(r).unwrap_or(usize::MAX)),
            };
            if take > 0 {
                self.warmup.take(&s.name, site, take as u64, today);
                out.push((Arc::clone(s), take));
                left -= take;
            }
        }
        (out, left)
    }

    /// Stores the warm-ups' progress and shows it in the metrics.
    pub fn store_warmup(&self) {
        if let Err(e) = self.warmup.flush() {
            tracing::warn!(error = %e, "cannot store the warm-up progress");
        }
        let today = super::warmup::day_of(volley_spool::now_ms());
        for s in self.warmup.standings(today) {
            self.metrics.warmup(&s);
        }
    }

    /// Takes `s` out of service: `why` is logged and reported.
    pub fn take_out(&self, s: &Source, why: &str) {
        {
            let mut st = s.lock();
            if st
                .out
                .as_ref()
                .is_some_and(|(at, _)| at.elapsed() < OUT_FOR)
            {
                return;
            }
            st.out = Some((Instant::now(), why.to_string()));
            st.refusing.clear();
        }
        tracing::error!(source = %s.name, address = %s.address, reason = why, "egress source out of service; its pools go on with their other sources");
        self.metrics.source_up(&s.name, false);
    }

    /// A session from `s` to `site` opened: it is in service.
    pub fn opened(&self, s: &Source) {
        let mut st = s.lock();
        st.refusing.clear();
        if st.out.take().is_some() {
            drop(st);
            tracing::info!(source = %s.name, "egress source back in service");
            self.metrics.source_up(&s.name, true);
        }
    }

    /// `site` refused a session from `s` at the greeting; after
    /// [`REFUSING_SITES`] different sites in a row, `s` goes out.
    pub fn refused(&self, s: &Source, site: &Arc<str>, reply: &str) {
        let many = {
            let mut st = s.lock();
            st.refusing.insert(Arc::clone(site));
            st.refusing.len() >= REFUSING_SITES
        };
        if many {
            let why = format!(
                "{REFUSING_SITES} sites in a row refused its sessions at the greeting (blocklisted?); the last: {reply}"
            );
            self.take_out(s, &why);
        }
    }

    /// Each source: name, address and whether it is in service.
    pub fn sources(&self) -> impl Iterator<Item = &Arc<Source>> {
        self.sources.iter()
    }
}

/// The warm-up plans of `config`'s sources (source → daily allowances).
pub fn plans(config: &EgressConfig) -> std::collections::BTreeMap<String, Vec<u64>> {
    config
        .sources
        .iter()
        .filter_map(|s| Some((s.name.clone(), s.warmup.as_ref()?.days()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn egress(text: &str) -> Egress {
        let c: EgressConfig = toml::from_str(text).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let w = super::super::warmup::Warmup::open(dir.path(), plans(&c)).unwrap();
        Egress::new(&c, "mta.test", Arc::new(Metrics::default()), w)
    }

    #[test]
    fn a_warming_source_takes_its_allowance_and_the_others_the_rest() {
        let e = egress(
            "[[sources]]\nname = \"old\"\naddress = \"127.0.0.2\"\n[[sources]]\nname = \"new\"\naddress = \"127.0.0.3\"\nwarmup = [3]\n[[pools]]\nname = \"fresh\"\nsources = [\"new\"]\n",
        );
        let mut got: Vec<(String, usize)> = Vec::new();
        for _ in 0..4 {
            let (parts, left) = e.assign(e.pool(None), "site", 5, 100);
            assert_eq!(left, 0);
            got.extend(parts.into_iter().map(|(s, n)| (s.name.to_string(), n)));
        }
        let new: usize = got.iter().filter(|(s, _)| s == "new").map(|p| p.1).sum();
        let old: usize = got.iter().filter(|(s, _)| s == "old").map(|p| p.1).sum();
        assert_eq!((new, old), (3, 17), "{got:?}");
        // a pool of the warming source alone: the rest waits
        let (parts, left) = e.assign(e.pool(Some("fresh")), "other", 5, 100);
        assert_eq!((parts.len(), left), (1, 2));
        let (parts, left) = e.assign(e.pool(Some("fresh")), "other", 5, 100);
        assert_eq!((parts.len(), left), (0, 5));
    }

    #[test]
    fn picks_round_robin_in_the_pool_and_skips_sources_out_of_service() {
        let e = egress(
            "[[sources]]\nname = \"a\"\naddress = \"127.0.0.2\"\n[[sources]]\nname = \"b\"\naddress = \"127.0.0.3\"\nehlo = \"b.test\"\n[[pools]]\nname = \"solo\"\nsources = [\"b\"]\n",
        );
        let default = e.pool(None);
        let names = |pool: usize, n: usize| -> Vec<String> {
            (0..n)
                .map(|_| e.pick(pool).unwrap().name.to_string())
                .collect()
        };
        let mut got = names(default, 4);
        got.sort();
        assert_eq!(got, ["a", "a", "b", "b"]);
        assert_eq!(names(e.pool(Some("solo")), 3), ["b", "b", "b"]);
        assert_eq!(e.pool(Some("gone")), default);
        let b = e.pick(e.pool(Some("solo"))).unwrap();
        assert_eq!(b.ehlo, "b.test");
        e.take_out(&b, "bind failed");
        assert!(!b.in_service());
        assert_eq!(names(default, 3), ["a", "a", "a"]);
        // a pool with every source out still sends (deferrals, not failures)
        assert_eq!(names(e.pool(Some("solo")), 1), ["b"]);
        e.opened(&b);
        assert!(b.in_service());
    }

    #[test]
    fn three_sites_refusing_at_greeting_take_a_source_out() {
        let e = egress("[[sources]]\nname = \"a\"\naddress = \"127.0.0.2\"\n");
        let a = e.pick(0).unwrap();
        let site = |n: &str| Arc::<str>::from(n);
        e.refused(&a, &site("x"), "554 blocked");
        e.refused(&a, &site("x"), "554 blocked");
        e.refused(&a, &site("y"), "554 blocked");
        assert!(a.in_service(), "two sites are not every site");
        e.opened(&a);
        e.refused(&a, &site("z"), "554 blocked");
        e.refused(&a, &site("x"), "554 blocked");
        assert!(a.in_service(), "a session opened in between");
        e.refused(&a, &site("y"), "554 blocked");
        assert!(!a.in_service());
    }
}
