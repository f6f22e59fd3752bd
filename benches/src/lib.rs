//! Benchmarks of Volley (see `benches/`): run with `cargo bench -p volley-benches`.
//!
//! The library holds what the benches share: [`newsletter`] (the campaign
//! workload), [`sites`] (the many-sites rig of DNS and sinks) and
//! [`sites_report`] (its results and table), [`measure`]
//! (running a process under watch: wall time, peak memory, bounds),
//! [`dns_probe`] (a nameserver's responsiveness during a run),
//! [`delay`] (a latency-adding proxy), [`workloads`] (the per-message
//! bench's campaigns), [`stages`] (its in-process stage timings) and
//! [`threads`] (a running process's CPU time by thread).

pub mod broker_alone;
pub mod delay;
pub mod dns_probe;
pub mod measure;
pub mod newsletter;
pub mod postfix_smtpd;
pub mod sites;
pub mod sites_report;
pub mod stages;
pub mod threads;
pub mod workloads;

/// The environment variable `name` parsed, or `default` when it is unset;
/// panics naming the variable when it is set but does not parse.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Err(_) => default,
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} does not parse")),
    }
}
