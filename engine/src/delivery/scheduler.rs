//! The scheduler: maps recipients' domains to sites, owns the map of site
//! shards, and holds deferred recipients until their retry time.
//!
//! A domain's site is resolved once (route or MX lookup, on a task of its
//! own) and kept until its DNS answer expires; recipients arriving in the
//! meantime wait in the domain's entry. A lookup that fails permanently (no
//! such domain, null MX) bounces the waiting recipients; a temporary failure
//! defers them. Deferred recipients wait in a min-heap keyed by retry time;
//! the task sleeps until the earliest is due (no polling). A config reload
//! forgets the mappings, so routes and policies apply to new work at once.
//! A site's shard ends when the site has been idle for the connections'
//! idle period; its next recipient starts a new one (a send to an ended
//! shard gives the recipient back), and ended shards are swept from the
//! map every few seconds. Exposure: none (internal).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::sync::mpsc;
use volley_spool::RecipientId;

use super::backoff::Backoff;
use super::egress::Source;
use super::shard::{self, ShardCtx, ShardIn};
use super::site::{self, Site};
use super::{Report, Work};
use crate::outcome;
use crate::smtp::SessionError;

/// How often the map of shards is cleared of those that ended.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Messages to the scheduler.
pub enum SchedMsg {
    /// New recipients (already counted in `Stats::active`).
    Work(Vec<Work>),
    /// Recipients of one domain found queued in the spool at start (already
    /// counted in `Stats::active`); kept compact until dispatched.
    Bulk(Arc<str>, Vec<RecipientId>),
    /// A deferred recipient and when to try again (ms since the epoch;
    /// already counted in `Stats::waiting`).
    Retry(Work, u64),
    /// The site of a domain was looked up.
    Resolved(Arc<str>, Result<(Site, Instant), SessionError>),
    /// The configuration was reloaded.
    Reload,
    /// An operator's "retry now": the deferred recipients it names are due
    /// at once (and their sites, when down, probed at once); answers how
    /// many recipients that made due.
    RetryNow(Deferred, tokio::sync::oneshot::Sender<u64>),
    /// The operators' holds or endings changed: what the scheduler holds
    /// that an operator ended gets its outcome, and every shard looks
    /// again at what it holds (and a released site at its queue).
    HoldsChanged,
    /// The service drains (`true`: no shard starts an attempt; answered
    /// once no site has anything in flight) or takes work again.
    Drain(bool, tokio::sync::oneshot::Sender<()>),
    /// An operator rerouted a domain (or cleared its reroute): its mapping
    /// is forgotten and its old site gives back its recipients.
    Rerouted(Arc<str>),
}

/// Which deferred recipients an operator's "retry now" takes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Deferred {
    /// Every deferred recipient.
    All,
    /// Those of one domain (ASCII case ignored).
    Domain(String),
    /// Those whose domain is mapped to the site (its `site` label in the
    /// metrics: `host:port` of a route, `mx:<hosts>` of an MX site).
    Site(String),
}

struct Due {
    at: u64,
    seq: u64,
    work: Work,
}

impl PartialEq for Due {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Due {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

enum Domain {
    /// Being looked up; what arrives meanwhile waits here.
    Resolving(Vec<ShardIn>),
    /// Mapped to a site until the instant.
    Mapped(Arc<Site>, Instant),
}

/// A shard's key: its site's key and its egress source's index (`NONE`
/// without sources).
type ShardKey = (Arc<str>, usize);
const NONE: usize = usize::MAX;

struct Scheduler {
    ctx: Arc<ShardCtx>,
    me: mpsc::UnboundedSender<SchedMsg>,
    domains: HashMap<Arc<str>, Domain>,
    sites: HashMap<ShardKey, mpsc::UnboundedSender<ShardIn>>,
    /// The egress pool of each campaign (by number) seen.
    pools: HashMap<u32, usize>,
}

impl Scheduler {
    /// Sends `m` to the shard of `site` and `source`, starting one when
    /// there is none or when its shard ended (idle) and gives `m` back.
    fn send_to(&mut self, site: &Site, source: Option<Arc<Source>>, mut m: ShardIn) {
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
    fn send_to_site(&mut self, site: &Site, m: ShardIn) {
        for (source, part) in self.by_source(&site.key, m) {
            self.send_to(site, source, part);
        }
    }

    /// The egress pool of `w`'s campaign: its own, else its
    /// configuration set's, else the default.
    fn pool_of(&mut self, id: RecipientId) -> usize {
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
    fn by_source(&mut self, site: &str, m: ShardIn) -> Vec<(Option<Arc<Source>>, ShardIn)> {
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
        let today = super::warmup::day_of(volley_spool::now_ms());
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
    fn wait_for_tomorrow(&self, m: ShardIn, site: &str, today: u64) {
        let not_before = super::warmup::start_of(today + 1);
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
                work,
                outcome: outcome.clone(),
                subject: String::new(),
                headers: None,
                at_ms: volley_spool::now_ms(),
                permit: None,
                site: None,
                retry,
                not_before: Some(not_before),
            });
        };
        match m {
            ShardIn::One(w) => report(w),
            ShardIn::Many(ws) => ws.into_iter().for_each(report),
            ShardIn::Bulk(d, ids) => {
                for id in ids {
                    report(Work {
                        id,
                        domain: Arc::clone(&d),
                        attempts: 0,
                    });
                }
            }
            _ => {}
        }
    }

    /// `m` split by the egress pool of its recipients.
    fn by_pool(&mut self, m: ShardIn) -> Vec<(usize, ShardIn)> {
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
    fn shards_of<'a>(
        &'a self,
        key: &'a str,
    ) -> impl Iterator<Item = &'a mpsc::UnboundedSender<ShardIn>> + 'a {
        self.sites
            .iter()
            .filter(move |((site, _), _)| **site == *key)
            .map(|(_, tx)| tx)
    }

    /// Forgets where `domain` goes; its old site's shard gives its
    /// recipients back (they are looked up again, the reroute applied).
    fn rerouted(&mut self, domain: &str) {
        let mapped: Vec<Arc<str>> = self
            .domains
            .iter()
            .filter(|(name, m)| {
                name.eq_ignore_ascii_case(domain) && matches!(m, Domain::Mapped(..))
            })
            .map(|(name, _)| Arc::clone(name))
            .collect();
        for name in mapped {
            if let Some(Domain::Mapped(site, _)) = self.domains.remove(&name) {
                for tx in self.shards_of(&site.key) {
                    let _ = tx.send(ShardIn::GiveBack(Arc::clone(&name)));
                }
            }
        }
    }

    /// Whether `which` takes a recipient of `domain`.
    fn takes(&self, which: &Deferred, domain: &str) -> bool {
        match which {
            Deferred::All => true,
            Deferred::Domain(d) => d.eq_ignore_ascii_case(domain),
            Deferred::Site(k) => matches!(
                self.domains.get(domain),
                Some(Domain::Mapped(site, _)) if *site.key == **k
            ),
        }
    }

    /// Makes the deferred recipients `which` names due at `now` and has
    /// their sites probed at once when down; how many were made due.
    fn retry_now(
        &mut self,
        timers: &mut BinaryHeap<Reverse<Due>>,
        which: &Deferred,
        now: u64,
    ) -> u64 {
        // the sites first: their shards take the probe before the
        // recipients (one channel, in order)
        let sites: Vec<Arc<str>> = match which {
            Deferred::All => self.sites.keys().map(|(k, _)| Arc::clone(k)).collect(),
            Deferred::Site(k) => vec![Arc::from(k.as_str())],
            Deferred::Domain(d) => self
                .domains
                .iter()
                .filter(|(name, _)| name.eq_ignore_ascii_case(d))
                .filter_map(|(_, m)| match m {
                    Domain::Mapped(site, _) => Some(Arc::clone(&site.key)),
                    Domain::Resolving(_) => None,
                })
                .collect(),
        };
        for site in sites {
            for tx in self.shards_of(&site) {
                let _ = tx.send(ShardIn::ProbeNow);
            }
        }
        let mut made = 0;
        let all = std::mem::take(timers).into_vec();
        for Reverse(mut d) in all {
            if d.at > now && self.takes(which, &d.work.domain) {
                d.at = now;
                made += 1;
            }
            timers.push(Reverse(d));
        }
        made
    }

    /// Starts draining (`on`) or ends it; `reply` is answered once no
    /// site has anything in flight (at once when the drain ends).
    fn drain(&mut self, on: bool, reply: tokio::sync::oneshot::Sender<()>) {
        self.ctx.draining.store(on, Ordering::Release);
        if !on {
            for tx in self.sites.values() {
                let _ = tx.send(ShardIn::HoldsChanged);
            }
            let _ = reply.send(());
            return;
        }
        let (quiet, mut all_quiet) = mpsc::channel::<()>(1);
        for tx in self.sites.values() {
            let _ = tx.send(ShardIn::Quiet(quiet.clone()));
        }
        drop(quiet);
        tokio::spawn(async move {
            // every shard lets go of its sender (or ended)
            while all_quiet.recv().await.is_some() {}
            let _ = reply.send(());
        });
    }

    /// Forgets the shards that ended (idle sites): what an idle site costs
    /// is then its DNS mapping and its metrics.
    fn sweep(&mut self) {
        self.sites.retain(|_, tx| !tx.is_closed());
    }

    /// Reports the outcome of a recipient an operator ended.
    fn end(&self, work: Work, outcome: outcome::Outcome) {
        let _ = self
            .ctx
            .recorder
            .send(Report::untried(work, outcome, String::new(), None));
    }

    /// `msg` without the recipients an operator ended (they get their
    /// outcome); `None` when none is left.
    fn unended(&self, msg: ShardIn) -> Option<ShardIn> {
        let endings = &self.ctx.endings;
        if endings.none() {
            return Some(msg);
        }
        let set = endings.get();
        let spool = &self.ctx.spool;
        let keep = |w: Work| match set.verdict(spool, &w) {
            Some(o) => {
                self.end(w, o);
                None
            }
            None => Some(w),
        };
        let left = match msg {
            ShardIn::One(w) => keep(w).map(ShardIn::One),
            ShardIn::Many(ws) => Some(ShardIn::Many(ws.into_iter().filter_map(keep).collect())),
            ShardIn::Bulk(d, ids) => {
                let ids: Vec<RecipientId> = ids
                    .into_iter()
                    .filter_map(|id| {
                        let w = Work {
                            id,
                            domain: Arc::clone(&d),
                            attempts: 0,
                        };
                        keep(w).map(|w| w.id)
                    })
                    .collect();
                Some(ShardIn::Bulk(d, ids))
            }
            other => Some(other),
        };
        left.filter(|m| match m {
            ShardIn::Many(ws) => !ws.is_empty(),
            ShardIn::Bulk(_, ids) => !ids.is_empty(),
            _ => true,
        })
    }

    /// The endings changed: the deferred recipients and those waiting for
    /// a lookup that an operator ended get their outcome now.
    fn end_waiting(&mut self, timers: &mut BinaryHeap<Reverse<Due>>) {
        if self.ctx.endings.none() {
            return;
        }
        let set = self.ctx.endings.get();
        let all = std::mem::take(timers).into_vec();
        let mut ended = 0u64;
        for Reverse(d) in all {
            match set.verdict(&self.ctx.spool, &d.work) {
                Some(o) => {
                    self.ctx.stats.active.fetch_add(1, Ordering::AcqRel);
                    self.ctx.stats.waiting.fetch_sub(1, Ordering::AcqRel);
                    self.end(d.work, o);
                    ended += 1;
                }
                None => timers.push(Reverse(d)),
            }
        }
        let resolving: Vec<Arc<str>> = self
            .domains
            .iter()
            .filter(|(_, m)| matches!(m, Domain::Resolving(_)))
            .map(|(d, _)| Arc::clone(d))
            .collect();
        for d in resolving {
            if let Some(Domain::Resolving(waiting)) = self.domains.remove(&d) {
                let left = waiting
                    .into_iter()
                    .filter_map(|m| self.unended(m))
                    .collect();
                self.domains.insert(d, Domain::Resolving(left));
            }
        }
        if ended > 0 {
            tracing::info!(
                recipients = ended,
                "deferred recipients ended by an operator"
            );
        }
    }

    fn dispatch(&mut self, domain: &Arc<str>, msg: ShardIn) {
        let Some(msg) = self.unended(msg) else {
            return;
        };
        let now = Instant::now();
        match self.domains.get_mut(domain) {
            Some(Domain::Mapped(site, until)) if *until > now => {
                // a shard that ended (idle) is started again
                let site = Arc::clone(site);
                self.send_to_site(&site, msg);
                return;
            }
            Some(Domain::Resolving(waiting)) => {
                waiting.push(msg);
                return;
            }
            _ => {}
        }
        self.domains
            .insert(Arc::clone(domain), Domain::Resolving(vec![msg]));
        self.look_up(Arc::clone(domain));
    }

    /// Looks `domain` up on a task of its own (the answer comes back as
    /// [`SchedMsg::Resolved`]).
    fn look_up(&self, domain: Arc<str>) {
        let (ctx, me) = (Arc::clone(&self.ctx), self.me.clone());
        tokio::spawn(async move {
            let config = ctx.config();
            let reroute = ctx.reroutes.route(&domain);
            let r = site::resolve(&domain, &config, &ctx.resolver, reroute).await;
            let _ = me.send(SchedMsg::Resolved(domain, r));
        });
    }

    /// Whether a site looked up for `domain` no longer matches its next
    /// hop: rerouted (or the reroute cleared) while the lookup ran.
    fn stale(&self, site: &Site, domain: &str) -> bool {
        let want = self
            .ctx
            .reroutes
            .route(domain)
            .or_else(|| self.ctx.config().route_for(domain));
        match (&site.hosts, want) {
            (site::Hosts::Route { host, port }, Some(r)) => *host != r.host || *port != r.port,
            (site::Hosts::Route { .. }, None) | (site::Hosts::Mx { .. }, Some(_)) => true,
            (site::Hosts::Mx { .. }, None) => false,
        }
    }

    fn resolved(&mut self, domain: Arc<str>, r: Result<(Site, Instant), SessionError>) {
        let waiting = match self.domains.remove(&domain) {
            Some(Domain::Resolving(w)) => w,
            Some(mapped) => {
                self.domains.insert(domain, mapped);
                return;
            }
            None => Vec::new(),
        };
        match r {
            Ok((site, _)) if self.stale(&site, &domain) => {
                // rerouted meanwhile: looked up again
                self.domains
                    .insert(Arc::clone(&domain), Domain::Resolving(waiting));
                self.look_up(domain);
            }
            Ok((site, until)) => {
                for m in waiting {
                    self.send_to_site(&site, m);
                }
                self.domains
                    .insert(domain, Domain::Mapped(Arc::new(site), until));
            }
            Err(e) => {
                // no site: each waiting recipient gets the lookup's outcome
                tracing::info!(%domain, error = %e, "destination lookup failed");
                let outcome = outcome::from_session_error(&e);
                let retry = Some(Backoff::from(&self.ctx.config().policy(&domain, &[])));
                let report = |work: Work| {
                    let _ = self.ctx.recorder.send(Report {
                        work,
                        outcome: outcome.clone(),
                        subject: String::new(),
                        headers: None,
                        at_ms: volley_spool::now_ms(),
                        permit: None,
                        site: None,
                        retry,
                        not_before: None,
                    });
                };
                for m in waiting {
                    match m {
                        ShardIn::One(w) => report(w),
                        ShardIn::Many(ws) => ws.into_iter().for_each(report),
                        ShardIn::Bulk(d, ids) => {
                            for id in ids {
                                report(Work {
                                    id,
                                    domain: Arc::clone(&d),
                                    attempts: 0,
                                });
                            }
                        }
                        ShardIn::ProbeNow
                        | ShardIn::HoldsChanged
                        | ShardIn::GiveBack(_)
                        | ShardIn::Quiet(_) => {}
                    }
                }
            }
        }
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

/// Runs until the channel closes or shutdown is signalled. `me` is a sender
/// of the same channel (lookups report back through it).
pub async fn run(
    ctx: Arc<ShardCtx>,
    me: mpsc::UnboundedSender<SchedMsg>,
    mut rx: mpsc::UnboundedReceiver<SchedMsg>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut s = Scheduler {
        ctx: Arc::clone(&ctx),
        me,
        domains: HashMap::new(),
        sites: HashMap::new(),
        pools: HashMap::new(),
    };
    let mut timers: BinaryHeap<Reverse<Due>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut last_sweep = Instant::now();
    loop {
        let now = volley_spool::now_ms();
        while timers.peek().is_some_and(|Reverse(d)| d.at <= now) {
            let Some(Reverse(d)) = timers.pop() else {
                break;
            };
            ctx.stats.active.fetch_add(1, Ordering::AcqRel);
            ctx.stats.waiting.fetch_sub(1, Ordering::AcqRel);
            let domain = Arc::clone(&d.work.domain);
            s.dispatch(&domain, ShardIn::One(d.work));
        }
        if last_sweep.elapsed() >= SWEEP_EVERY {
            s.sweep();
            if ctx.egress.warmup.any() {
                let egress = Arc::clone(&ctx.egress);
                tokio::task::spawn_blocking(move || egress.store_warmup());
            }
            last_sweep = Instant::now();
        }
        let sleep_ms = timers
            .peek()
            .map_or(3_600_000, |Reverse(d)| d.at.saturating_sub(now))
            .min(SWEEP_EVERY.as_millis() as u64);
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(SchedMsg::Work(batch)) => {
                    // a domain's recipients go to its shard together
                    // (by the interned name's address: the works of a batch
                    // share one name per domain; two names of one domain
                    // only make two messages)
                    let mut by_domain: Vec<(Arc<str>, Vec<Work>)> = Vec::new();
                    let mut index: volley_spool::FastMap<usize, usize> = Default::default();
                    for w in batch {
                        let key = Arc::as_ptr(&w.domain) as *const u8 as usize;
                        let i = *index.entry(key).or_insert_with(|| {
                            by_domain.push((Arc::clone(&w.domain), Vec::new()));
                            by_domain.len() - 1
                        });
                        by_domain[i].1.push(w);
                    }
                    for (domain, mut ws) in by_domain {
                        let m = if ws.len() == 1 {
                            ShardIn::One(ws.remove(0))
                        } else {
                            ShardIn::Many(ws)
                        };
                        s.dispatch(&domain, m);
                    }
                }
                Some(SchedMsg::Bulk(domain, ids)) => {
                    let d = Arc::clone(&domain);
                    s.dispatch(&d, ShardIn::Bulk(domain, ids));
                }
                Some(SchedMsg::Retry(work, at)) => {
                    seq += 1;
                    timers.push(Reverse(Due { at, seq, work }));
                }
                Some(SchedMsg::Resolved(domain, r)) => s.resolved(domain, r),
                Some(SchedMsg::Reload) => {
                    s.domains.retain(|_, d| matches!(d, Domain::Resolving(_)));
                    s.pools.clear();
                }
                Some(SchedMsg::Rerouted(domain)) => s.rerouted(&domain),
                Some(SchedMsg::HoldsChanged) => {
                    s.end_waiting(&mut timers);
                    for tx in s.sites.values() {
                        let _ = tx.send(ShardIn::HoldsChanged);
                    }
                }
                Some(SchedMsg::Drain(on, reply)) => s.drain(on, reply),
                Some(SchedMsg::RetryNow(which, reply)) => {
                    let made = s.retry_now(&mut timers, &which, volley_spool::now_ms());
                    tracing::info!(?which, recipients = made, "retry now (operator)");
                    let _ = reply.send(made);
                }
                None => break,
            },
            _ = tokio::time::sleep(std::time::Duration::from_millis(sleep_ms)) => {}
            _ = shutdown.changed() => break,
        }
    }
    if ctx.egress.warmup.any() {
        let egress = Arc::clone(&ctx.egress);
        let _ = tokio::task::spawn_blocking(move || egress.store_warmup()).await;
    }
}
