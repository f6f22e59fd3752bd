//! The scheduler's routing: which shard a domain's recipients go to (one
//! per site and egress source), the egress pool of a recipient's campaign,
//! batches shared among a pool's sources within their warm-up allowances,
//! and what waits for the next day. Exposure: none (internal).

use std::sync::Arc;

use tokio::sync::mpsc;
use volley_spool::RecipientId;

use super::super::backoff::Backoff;
use super::super::egress::Source;
use super::super::shard::{self, ShardIn};
use super::super::site::Site;
use super::super::{Report, Work};
use super::{NONE, Scheduler};
use crate::outcome;

impl Scheduler {
    /// Sends `m` to the shard of `site` and `source`, starting one when
    /// there is none or when its shard ended (idle) and gives `m` back.
    pub(super) fn send_to(&mut self, site: &Site, source: Option<Arc<Source>>, mut m: ShardIn) {
        let key = (
            Arc::clone(&site.key),
            source.as_ref().map_or(NONE, |s| s.index),
        );
        loop {
            let tx = self.sites.entry(key.clone()).or_insert_with(|| {
                let site = Site {
                    source: source.clone(),
                    ..site.clone()
                };
                shard::spawn(Arc::clone(&self.ctx), site)
            });
            match tx.send(m) {
                Ok(()) => return,
                Err(mpsc::error::SendError(back)) => {
                    m = back;
                    self.sites.remove(&key);
                }
            }
        }
    }

    /// Sends the recipients of `m` to `site`: each batch from a source of
    /// its pool (see [`super::egress`]).
    pub(super) fn send_to_site(&mut self, site: &Site, m: ShardIn) {
        for (source, part) in self.by_source(&site.key, m) {
            self.send_to(site, source, part);
        }
    }

    /// The egress pool of `w`'s campaign: its own, else its
    /// configuration set's, else the default.
    pub(super) fn pool_of(&mut self, id: RecipientId) -> usize {
        let spool = &self.ctx.spool;
        let Some(no) = spool.campaign_of(id) else {
            return self.ctx.egress.pool(None);
        };
        if let Some(p) = self.pools.get(&no) {
            return *p;
        }
        let config = self.ctx.config();
        let def = spool
            .campaign(no)
            .and_then(|c| crate::campaign::CampaignDef::from_bytes(&c.body).ok());
        let name = def.and_then(|d| {
            d.pool.or_else(|| {
                let set = d.configuration_set?;
                config.configuration_sets.get(&set)?.pool.clone()
            })
        });
        let p = self.ctx.egress.pool(name.as_deref());
        self.pools.insert(no, p);
        p
    }

    /// `m` split by the egress pool of its recipients and among the
    /// pools' sources (within their warm-up allowances at `site` today),
    /// each part with the source it leaves from (`None` without sources).
    /// What no source has room for today waits for tomorrow (deferred).
    pub(super) fn by_source(
        &mut self,
        site: &str,
        m: ShardIn,
    ) -> Vec<(Option<Arc<Source>>, ShardIn)> {
        let egress = Arc::clone(&self.ctx.egress);
        if egress.is_empty() {
            return vec![(None, m)];
        }
        if !egress.several_pools() && !egress.warmup.any() {
            return vec![(egress.pick(egress.pool(None)), m)];
        }
        let parts = if egress.several_pools() {
            self.by_pool(m)
        } else {
            vec![(egress.pool(None), m)]
        };
        let today = crate::delivery::warmup::day_of(volley_spool::now_ms());
        let mut out = Vec::new();
        for (pool, part) in parts {
            let n = count(&part);
            if n == 0 {
                out.push((egress.pick(pool), part));
                continue;
            }
            let (shares, waiting) = egress.assign(pool, site, n, today);
            let mut sizes: Vec<usize> = shares.iter().map(|s| s.1).collect();
            sizes.push(waiting);
            let mut chunks = split(part, &sizes).into_iter();
            for (source, _) in shares {
                if let Some(c) = chunks.next() {
                    out.push((Some(source), c));
                }
            }
            if let Some(rest) = chunks.next().filter(|c| count(c) > 0) {
                self.wait_for_tomorrow(rest, site, today);
            }
        }
        out
    }

    /// The recipients of `m` wait for the next UTC day: their pool's
    /// sources sent `site` their warm-up allowance today.
    pub(super) fn wait_for_tomorrow(&self, m: ShardIn, site: &str, today: u64) {
        let not_before = crate::delivery::warmup::start_of(today + 1);
        let outcome = outcome::Outcome::Deferred {
            status: "4.7.0".into(),
            diagnostic: format!(
                "warm-up: the sources of its pool sent {site} today's allowance; waiting for the next day"
            ),
            delay_type: "SendingDeferral",
        };
        let config = self.ctx.config();
        let report = |work: Work| {
            let retry = Some(Backoff::from(&config.policy(&work.domain, &[])));
            let _ = self.ctx.recorder.send(Report {
                retry,
                not_before: Some(not_before),
                ..Report::untried(work, outcome.clone(), String::new(), None)
            });
        };
        m.into_works().into_iter().for_each(report);
    }

    /// `m` split by the egress pool of its recipients.
    pub(super) fn by_pool(&mut self, m: ShardIn) -> Vec<(usize, ShardIn)> {
        let mut parts: Vec<(usize, ShardIn)> = Vec::new();
        match m {
            ShardIn::One(w) => parts.push((self.pool_of(w.id), ShardIn::One(w))),
            ShardIn::Many(ws) => {
                let mut by: Vec<(usize, Vec<Work>)> = Vec::new();
                for w in ws {
                    let p = self.pool_of(w.id);
                    match by.iter_mut().find(|(q, _)| *q == p) {
                        Some((_, v)) => v.push(w),
                        None => by.push((p, vec![w])),
                    }
                }
                parts.extend(by.into_iter().map(|(p, v)| (p, ShardIn::Many(v))));
            }
            ShardIn::Bulk(d, ids) => {
                let mut by: Vec<(usize, Vec<RecipientId>)> = Vec::new();
                for id in ids {
                    let p = self.pool_of(id);
                    match by.iter_mut().find(|(q, _)| *q == p) {
                        Some((_, v)) => v.push(id),
                        None => by.push((p, vec![id])),
                    }
                }
                parts.extend(
                    by.into_iter()
                        .map(|(p, v)| (p, ShardIn::Bulk(Arc::clone(&d), v))),
                );
            }
            other => parts.push((self.ctx.egress.pool(None), other)),
        }
        parts
    }

    /// The shards of the site `key` (one per source sending to it).
    pub(super) fn shards_of<'a>(
        &'a self,
        key: &'a str,
    ) -> impl Iterator<Item = &'a mpsc::UnboundedSender<ShardIn>> + 'a {
        self.sites
            .iter()
            .filter(move |((site, _), _)| **site == *key)
            .map(|(_, tx)| tx)
    }
}

/// Recipients in `m`.
fn count(m: &ShardIn) -> usize {
    match m {
        ShardIn::One(_) => 1,
        ShardIn::Many(ws) => ws.len(),
        ShardIn::Bulk(_, ids) => ids.len(),
        _ => 0,
    }
}

/// `m`'s recipients cut into parts of `sizes` (in order; empty parts
/// left out at the end by the caller's `count`).
fn split(m: ShardIn, sizes: &[usize]) -> Vec<ShardIn> {
    match m {
        ShardIn::One(w) => split(ShardIn::Many(vec![w]), sizes),
        ShardIn::Many(ws) => {
            let mut it = ws.into_iter();
            sizes
                .iter()
                .map(|&k| ShardIn::Many(it.by_ref().take(k).collect()))
                .collect()
        }
        ShardIn::Bulk(d, ids) => {
            let mut it = ids.into_iter();
            sizes
                .iter()
                .map(|&k| ShardIn::Bulk(Arc::clone(&d), it.by_ref().take(k).collect()))
                .collect()
        }
        other => vec![other],
    }
}
