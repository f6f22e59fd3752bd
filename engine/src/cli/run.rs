//! `volley run` (the service), `volley status`, `volley sink` and
//! `volley keygen`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use volley_engine::capture::Capture;
use volley_engine::config::Config;
use volley_engine::engine::Options;
use volley_engine::message::keygen::{self, KeyAlgorithm, KeygenError, Replace};
use volley_engine::metrics::ReloadLabels;
use volley_engine::status;

use super::{CliResult, EXIT_OK, bad, fail, load_config, start_engine};

/// SIGTERM and SIGINT, caught from the moment this is made (a signal that
/// comes during start-up then stops the process cleanly once it is up,
/// rather than killing it).
pub(super) struct Stop {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Stop {
    pub(super) fn catch() -> Result<Stop, std::io::Error> {
        Ok(Stop {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The name of the first signal to come.
    pub(super) async fn wait(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// `volley run`.
pub async fn run(config_path: &Path) -> CliResult {
    let mut stop = Stop::catch().map_err(fail)?;
    let mut hup = signal(SignalKind::hangup()).map_err(fail)?;
    let config = load_config(config_path)?;
    let listen: SocketAddr = config
        .http
        .listen
        .parse()
        .map_err(|e| bad(anyhow::anyhow!("http.listen: {e}")))?;
    let (engine, metrics) = start_engine(&config, Options::default())?;
    let inbound = super::inbound::start(&config, &engine).await?;
    let (http_stop, http_stop_rx) = tokio::sync::watch::channel(false);
    let spool = Arc::clone(&engine.spool);
    let (drain_tx, mut drain_rx) = tokio::sync::mpsc::unbounded_channel();
    let admin = Arc::new(super::admin_http::AdminCtx::new(
        &config,
        engine.handle(),
        Arc::clone(&spool),
        drain_tx.clone(),
    ));
    let service = volley_engine::http::Service {
        metrics: Arc::clone(&metrics),
        stats: Arc::clone(&engine.stats),
        spool: Arc::clone(&spool),
        sns: engine.sns.clone(),
        feedback: inbound.handler.clone(),
        more: Some(super::admin_http::router(Arc::clone(&admin))),
    };
    let addr = volley_engine::http::serve(listen, service, http_stop_rx)
        .await
        .map_err(|e| fail(anyhow::anyhow!("cannot listen on {listen}: {e}")))?;
    // one quota per principal for the service's life (kept across a
    // drain and resume)
    let quotas = Arc::new(volley_engine::submission::quota::Quotas::new(
        std::time::Instant::now(),
    ));
    let mut submission = Some(start_submission(&config, &engine, &quotas).await?);
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let control = Arc::new(super::control::ControlCtx {
        drain: Some(drain_tx),
        draining: Arc::clone(&draining),
        config: Arc::clone(&config),
        spool: Arc::clone(&engine.spool),
        handle: engine.handle(),
        events_file: engine.events_file_position(),
        clients: Arc::default(),
        suppression: Arc::clone(&engine.suppression),
    });
    let (control_stop, control_stop_rx) = tokio::sync::watch::channel(false);
    if let Err(e) = super::control::serve(control, control_stop_rx) {
        tracing::warn!(
            error = %e,
            socket = %super::control::socket_path(&config).display(),
            "no control socket: campaign jobs cannot hand campaigns to this service"
        );
    }
    let (queued, deferred) = engine.resume_spooled();
    tracing::info!(%addr, queued, deferred, spool = %config.spool.dir.display(), "volley is running");
    let mut current = config;
    let sig = loop {
        tokio::select! {
            sig = stop.wait() => break sig,
            Some(req) = drain_rx.recv() => {
                let on = req.on;
                match super::drain::apply(req, &engine, &mut submission, &current, &quotas).await {
                    Ok(()) => draining.store(on, std::sync::atomic::Ordering::Release),
                    Err(e) => tracing::error!(error = %e, "cannot take new work again"),
                }
            }
            _ = hup.recv() => {
                let result = match reload(config_path, &current) {
                    Some(c) => {
                        engine.reload(Arc::clone(&c));
                        admin.set_tokens(&c);
                        if let Some(s) = &submission {
                            s.reload(&c);
                        }
                        current = c;
                        "applied"
                    }
                    None => "invalid",
                };
                metrics.reloads.get_or_create(&ReloadLabels { result }).inc();
            }
        }
    };
    tracing::info!(signal = sig, "shutting down: finishing open transactions");
    let _ = control_stop.send(true);
    if let Some(s) = submission {
        s.stop().await;
    }
    inbound.stop().await;
    engine.shutdown(Duration::from_secs(30)).await;
    let _ = http_stop.send(true);
    if let Some(why) = spool.failure() {
        return Err(fail(anyhow::anyhow!(
            "stopped after the spool failed: {why}; outcomes that were not journaled are delivered again at the next start"
        )));
    }
    tracing::info!("stopped");
    Ok(EXIT_OK)
}

/// Reads the config again for SIGHUP; `None` (and the old config stays)
/// when it is invalid. Settings that only apply at start are reported.
fn reload(path: &Path, old: &Config) -> Option<Arc<Config>> {
    let new = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: the configuration is invalid; keeping the one in force");
            return None;
        }
    };
    let fixed = [
        ("spool.dir", old.spool.dir != new.spool.dir),
        ("http.listen", old.http.listen != new.http.listen),
        ("events.jsonl", old.events.jsonl != new.events.jsonl),
        (
            "events.rotate_bytes",
            (old.events.rotate_bytes, old.events.keep)
                != (new.events.rotate_bytes, new.events.keep),
        ),
        (
            "configuration_sets",
            format!("{:?}", old.configuration_sets) != format!("{:?}", new.configuration_sets),
        ),
        ("sns", old.sns != new.sns),
        (
            "egress",
            format!("{:?}", old.egress) != format!("{:?}", new.egress),
        ),
        (
            "dkim",
            format!("{:?}", old.dkim) != format!("{:?}", new.dkim),
        ),
        ("dns", old.dns.nameservers != new.dns.nameservers),
        ("submission", {
            // credentials apply now; the rest at start
            let fixed = |c: &Config| {
                let mut s = c.submission.clone();
                s.ses_credentials.clear();
                format!("{s:?}")
            };
            fixed(old) != fixed(&new)
        }),
    ];
    for (key, changed) in fixed {
        if changed {
            tracing::warn!(
                key,
                "SIGHUP: this setting applies only at start; restart to change it"
            );
        }
    }
    tracing::info!(
        routes = new.routes.len(),
        domain_rules = new.domain.len(),
        mx_rules = new.mx.len(),
        "SIGHUP: configuration reloaded (delivery policies, routes, timeouts and throttle patterns apply now; queued mail is kept)"
    );
    Some(Arc::new(new))
}

/// The producers inside the service: SMTP submission listeners and the
/// drop directory, and the acceptor behind them.
pub(super) struct Submission {
    stop: tokio::sync::watch::Sender<bool>,
    pub(super) tasks: Vec<tokio::task::JoinHandle<()>>,
    shared: Option<Arc<volley_engine::submission::smtp::Shared>>,
    /// The SES v2 API (`[api] listen`).
    pub(super) api: Option<Arc<volley_engine::api::Ctx>>,
    pickup_stop: Arc<std::sync::atomic::AtomicBool>,
    pickup: Option<std::thread::JoinHandle<()>>,
}

impl Submission {
    /// SIGHUP: the users file and SES credentials are read again (the
    /// listeners, TLS files and limits apply only at start).
    fn reload(&self, config: &Config) {
        use volley_engine::submission::auth;
        if let Some(api) = &self.api {
            api.set_keys(config);
        }
        let Some(shared) = &self.shared else { return };
        let s = &config.submission;
        match auth::UsersFile::load(&s.users) {
            Ok(users) => {
                shared
                    .set_credentials(Arc::new(auth::Credentials::new(&users, &s.ses_credentials)));
                tracing::info!(
                    users = users.users.len(),
                    "SIGHUP: submission credentials reloaded"
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: the users file is invalid; keeping the credentials in force")
            }
        }
    }

    /// Stops accepting connections and files; sessions in a transaction
    /// get a moment to finish (the acceptor stores what it was given).
    pub(super) async fn stop(self) {
        let _ = self.stop.send(true);
        self.pickup_stop
            .store(true, std::sync::atomic::Ordering::Release);
        for t in self.tasks {
            let _ = t.await;
        }
        if let Some(shared) = self.shared {
            // sessions hold the shared state: wait (bounded) for them
            for _ in 0..50 {
                if Arc::strong_count(&shared) == 1 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        if let Some(p) = self.pickup {
            let _ = tokio::task::spawn_blocking(move || p.join()).await;
        }
    }
}

pub(super) async fn start_submission(
    config: &Arc<Config>,
    engine: &volley_engine::engine::Engine,
    quotas: &Arc<volley_engine::submission::quota::Quotas>,
) -> Result<Submission, super::CliError> {
    use volley_engine::submission::{accept::Acceptor, auth, pickup, smtp};
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let s = &config.submission;
    let (acceptor, _thread) = Acceptor::start(Arc::clone(&engine.spool), Some(engine.handle()));
    let pickup_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let dir = s
        .pickup
        .clone()
        .unwrap_or_else(|| config.spool.dir.join("pickup"));
    let pickup = pickup::start(pickup::PickupCtx {
        dir: dir.clone(),
        spool: Arc::clone(&engine.spool),
        acceptor: acceptor.clone(),
        config: Arc::clone(config),
        engine: Some(engine.handle()),
        stop: Arc::clone(&pickup_stop),
        stats: Arc::default(),
    })
    .map_err(|e| fail(anyhow::anyhow!("drop directory {}: {e}", dir.display())))?;
    let mut out = Submission {
        stop,
        tasks: Vec::new(),
        shared: None,
        api: None,
        pickup_stop,
        pickup: Some(pickup),
    };
    if s.listeners.is_empty() {
        let quotas = Arc::clone(quotas);
        super::api::start(config, engine, acceptor, quotas, &stop_rx, &mut out).await?;
        return Ok(out);
    }
    let (Some(cert), Some(key)) = (&s.cert, &s.key) else {
        return Err(bad(anyhow::anyhow!(
            "submission: listeners need cert and key"
        )));
    };
    let tls = smtp::load_tls(cert, key).map_err(|e| bad(anyhow::anyhow!("submission TLS: {e}")))?;
    let users = auth::UsersFile::load(&s.users).map_err(|e| bad(anyhow::anyhow!(e)))?;
    let credentials = Arc::new(auth::Credentials::new(&users, &s.ses_credentials));
    if credentials.is_empty() && s.trusted_networks.is_empty() {
        tracing::warn!(
            "submission: no users, SES credentials or trusted networks: nobody can submit"
        );
    }
    let shared = Arc::new(smtp::Shared::new(
        Arc::clone(config),
        credentials,
        Some(tls),
        acceptor.clone(),
        Arc::clone(quotas),
    ));
    super::api::start(
        config,
        engine,
        acceptor,
        Arc::clone(&shared.quotas),
        &stop_rx,
        &mut out,
    )
    .await?;
    for (listener, mode) in smtp::bind(config)
        .await
        .map_err(|e| fail(anyhow::anyhow!(e)))?
    {
        let addr = listener.local_addr().map_err(fail)?;
        tracing::info!(%addr, tls = ?mode, "SMTP submission listening");
        out.tasks.push(tokio::spawn(smtp::serve(
            listener,
            mode,
            Arc::clone(&shared),
            stop_rx.clone(),
        )));
    }
    out.shared = Some(shared);
    Ok(out)
}

/// `volley status`.
pub fn status(config_path: &Path, json: bool) -> CliResult {
    let config = load_config(config_path)?;
    let inspection = volley_spool::inspect(&config.spool.dir)
        .map_err(|e| fail(anyhow::anyhow!("cannot read the spool: {e}")))?;
    let s = status::collect(inspection);
    let holds = volley_engine::delivery::holds::Holds::open(&config.spool.dir)
        .map_err(|e| fail(anyhow::anyhow!("cannot read the holds: {e}")))?
        .get();
    let reroutes = volley_engine::delivery::reroutes::Reroutes::open(&config.spool.dir)
        .map_err(|e| fail(anyhow::anyhow!("cannot read the reroutes: {e}")))?
        .get();
    let warmups = volley_engine::delivery::warmup::Warmup::open(
        &config.spool.dir,
        volley_engine::delivery::egress::plans(&config.egress),
    )
    .map_err(|e| fail(anyhow::anyhow!("cannot read the warm-ups: {e}")))?
    .standings(volley_engine::delivery::warmup::day_of(
        volley_spool::now_ms(),
    ));
    let endings = volley_engine::delivery::endings::Endings::open(&config.spool.dir)
        .map_err(|e| fail(anyhow::anyhow!("cannot read the endings: {e}")))?
        .get();
    if json {
        let mut v = serde_json::to_value(&s).map_err(fail)?;
        v["holds"] = serde_json::to_value(&*holds).map_err(fail)?;
        v["endings"] = serde_json::to_value(&*endings).map_err(fail)?;
        v["warmups"] = serde_json::to_value(&warmups).map_err(fail)?;
        v["reroutes"] = serde_json::to_value(&*reroutes).map_err(fail)?;
        println!("{}", serde_json::to_string_pretty(&v).map_err(fail)?);
    } else {
        print!("{}", status::render(&s));
        for (kind, name) in holds.iter() {
            println!("held: {kind} {name} (volley queue release --{kind} {name})");
        }
        for (domain, to) in reroutes.iter() {
            println!("rerouted: {domain} to {to} (volley queue reroute --domain {domain} --clear)");
        }
        for (name, _) in endings.campaigns.iter() {
            println!("cancelled: campaign {name}");
        }
        for w in &warmups {
            let state = match (w.complete, w.paused, w.allowance) {
                (true, _, _) | (_, _, None) => "established".to_string(),
                (_, true, _) => "paused".to_string(),
                (_, false, Some(a)) => format!("{a} a day to each site"),
            };
            println!(
                "warm-up: source {} day {} of {}: {state}",
                w.source, w.day, w.days
            );
        }
    }
    Ok(EXIT_OK)
}

/// `volley sink`.
pub async fn sink(listen: SocketAddr, maildir: Option<PathBuf>) -> CliResult {
    let mut stop = Stop::catch().map_err(fail)?;
    let cap = Capture::start(listen, maildir.clone())
        .await
        .map_err(fail)?;
    eprintln!(
        "volley sink listening on {}{}",
        cap.addr,
        maildir
            .map(|d| format!(", storing in {}", d.display()))
            .unwrap_or_default()
    );
    let counters = Arc::clone(&cap.counters);
    let report = tokio::spawn(async move {
        let mut last = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let n = counters.messages.load(std::sync::atomic::Ordering::Relaxed);
            if n != last {
                eprintln!("received {n} messages");
                last = n;
            }
        }
    });
    stop.wait().await;
    report.abort();
    cap.stop();
    println!(
        "received {} messages for {} recipients",
        cap.counters
            .messages
            .load(std::sync::atomic::Ordering::Relaxed),
        cap.counters
            .recipients
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    Ok(EXIT_OK)
}

/// `volley keygen`; replaces existing files only with `force`.
pub fn keygen(
    alg: KeyAlgorithm,
    domain: &str,
    selector: &str,
    out: &Path,
    force: bool,
) -> CliResult {
    let replace = if force {
        Replace::Existing
    } else {
        Replace::Never
    };
    let g = keygen::generate(alg, domain, selector, out, replace).map_err(|e| match e {
        KeygenError::Invalid(_) | KeygenError::Exists { .. } => bad(e),
        KeygenError::Io { .. } | KeygenError::Crypto(_) => fail(e),
    })?;
    println!("private key: {}", g.private_key.display());
    println!("TXT record:  {}", g.txt_file.display());
    // DNS strings hold at most 255 bytes: split the value into several.
    let parts: Vec<String> = g
        .txt
        .as_bytes()
        .chunks(250)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    println!(
        "publish in DNS:\n{} IN TXT ( {} )",
        g.dns_name,
        parts.join(" ")
    );
    Ok(EXIT_OK)
}
