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
use super::shard::{ShardCtx, ShardIn};
use super::site::{self, Site};
use super::{Report, Work};
use crate::outcome;
use crate::smtp::SessionError;

mod ending;
mod routing;

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
        // campaigns gone from the spool (every message submitted is one)
        let spool = &self.ctx.spool;
        self.pools.retain(|no, _| spool.campaign(*no).is_some());
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
            let sts = site::StsLookup {
                sts: &ctx.sts,
                tls: ctx.tls.verifying.as_ref(),
            };
            let r = site::resolve(&domain, &config, &ctx.resolver, reroute, Some(sts)).await;
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
                        retry,
                        ..Report::untried(work, outcome.clone(), String::new(), None)
                    });
                };
                for m in waiting {
                    m.into_works().into_iter().for_each(report);
                }
            }
        }
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
