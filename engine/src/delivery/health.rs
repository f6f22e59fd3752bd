//! Site health: whether a site's connections can be opened at all.
//!
//! A site is *up* until `down_after` attempts in a row to open a session
//! fail while none of its sessions is open (refused, timed out, greeting or
//! EHLO refused, TLS required and failing, ...). It is then *down*: one
//! decision, after which its queued recipients are deferred together
//! without connecting, and no connection is tried until a *probe* is due.
//! Probes come on a backoff (the site's retry schedule: `retry_first`,
//! growing by `retry_factor` up to `retry_cap`); while one runs, recipients
//! are held. A probe that opens a session brings the site up again; one
//! that fails schedules the next. Any session that opens resets the count.
//!
//! Pure: the clock and the backoff are passed in; the caller logs the
//! changes this returns and publishes them in metrics. Exposure: none.

use std::time::{Duration, Instant};

/// What a shard may do with its next recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// The site is up: dispatch.
    Send,
    /// The site is down and a probe is due: start it (this is returned
    /// once; until the probe ends, [`Admit::Hold`]).
    Probe,
    /// A probe is running: keep recipients queued until it ends.
    Hold,
    /// The site is down: defer recipients without trying, until `probe_at`.
    Defer { probe_at: Instant },
}

/// A change of state the caller reports (one log line, one metric change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing worth reporting.
    None,
    /// The site was up and is now down after `failures` failed opens.
    WentDown { failures: u32, probe_at: Instant },
    /// A probe failed; the next is due at `probe_at`.
    ProbeFailed { probes: u32, probe_at: Instant },
    /// The site was down for `down_for` and a session opened.
    CameUp { down_for: Duration },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Up {
        failures: u32,
    },
    Down {
        since: Instant,
        /// Probes that failed since the site went down.
        probes: u32,
        probe_at: Instant,
        probing: bool,
    },
}

/// The health of one site.
#[derive(Debug, Clone)]
pub struct Health {
    down_after: u32,
    state: State,
}

impl Health {
    /// A site that goes down after `down_after` (at least 1) failed opens
    /// in a row.
    pub fn new(down_after: u32) -> Health {
        Health {
            down_after: down_after.max(1),
            state: State::Up { failures: 0 },
        }
    }

    /// Changes the threshold (config reload).
    pub fn set_down_after(&mut self, down_after: u32) {
        self.down_after = down_after.max(1);
    }

    pub fn is_down(&self) -> bool {
        matches!(self.state, State::Down { .. })
    }

    /// When the next probe is due, while the site is down.
    pub fn probe_at(&self) -> Option<Instant> {
        match self.state {
            State::Down { probe_at, .. } => Some(probe_at),
            State::Up { .. } => None,
        }
    }

    /// A session could not be opened and none of the site's sessions is
    /// open. `probe_delay(n)` is the wait before probe `n` (1, 2, ...).
    pub fn failed(&mut self, now: Instant, probe_delay: impl Fn(u32) -> Duration) -> Change {
        match &mut self.state {
            State::Up { failures } => {
                *failures += 1;
                if *failures < self.down_after {
                    return Change::None;
                }
                let failures = *failures;
                let probe_at = now + probe_delay(1);
                self.state = State::Down {
                    since: now,
                    probes: 0,
                    probe_at,
                    probing: false,
                };
                Change::WentDown { failures, probe_at }
            }
            State::Down {
                probes,
                probe_at,
                probing,
                ..
            } => {
                if !*probing {
                    // a connection that started before the site went down
                    return Change::None;
                }
                *probing = false;
                *probes += 1;
                *probe_at = now + probe_delay(*probes + 1);
                Change::ProbeFailed {
                    probes: *probes,
                    probe_at: *probe_at,
                }
            }
        }
    }

    /// A session opened (a probe, or any connection of the site).
    pub fn opened(&mut self, now: Instant) -> Change {
        match self.state {
            State::Up { .. } => {
                self.state = State::Up { failures: 0 };
                Change::None
            }
            State::Down { since, .. } => {
                self.state = State::Up { failures: 0 };
                Change::CameUp {
                    down_for: now.saturating_duration_since(since),
                }
            }
        }
    }

    /// A probe ended without a verdict about the site (shutdown, or a
    /// local failure such as running out of file descriptors): it may be
    /// started again.
    pub fn probe_abandoned(&mut self) {
        if let State::Down { probing, .. } = &mut self.state {
            *probing = false;
        }
    }

    /// An operator asked to retry the site now: a down site's next probe
    /// is due at `now` (unless one runs). Whether it was down.
    pub fn probe_now(&mut self, now: Instant) -> bool {
        match &mut self.state {
            State::Down {
                probe_at, probing, ..
            } => {
                if !*probing {
                    *probe_at = (*probe_at).min(now);
                }
                true
            }
            State::Up { .. } => false,
        }
    }

    /// What to do with the next recipient at `now`.
    pub fn admit(&mut self, now: Instant) -> Admit {
        match &mut self.state {
            State::Up { .. } => Admit::Send,
            State::Down { probing: true, .. } => Admit::Hold,
            State::Down {
                probe_at, probing, ..
            } => {
                if now >= *probe_at {
                    *probing = true;
                    Admit::Probe
                } else {
                    Admit::Defer {
                        probe_at: *probe_at,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// 10 s, 20 s, 40 s, ... (as a retry schedule would give).
    fn delay(n: u32) -> Duration {
        secs(10 << (n - 1).min(10))
    }

    #[test]
    fn probe_now_makes_a_down_sites_probe_due_unless_one_runs() {
        let t0 = Instant::now();
        let mut h = Health::new(1);
        assert!(!h.probe_now(t0), "an up site has no probe");
        assert_eq!(h.admit(t0), Admit::Send);
        h.failed(t0, delay);
        let t1 = t0 + secs(1);
        assert!(matches!(h.admit(t1), Admit::Defer { .. }));
        assert!(h.probe_now(t1));
        assert_eq!(h.admit(t1), Admit::Probe);
        // while the probe runs, asking again changes nothing
        assert!(h.probe_now(t1));
        assert_eq!(h.admit(t1), Admit::Hold);
    }

    #[test]
    fn goes_down_after_consecutive_failures_only() {
        let t0 = Instant::now();
        let mut h = Health::new(3);
        assert_eq!(h.failed(t0, delay), Change::None);
        assert_eq!(h.failed(t0, delay), Change::None);
        // a session that opens resets the count
        assert_eq!(h.opened(t0), Change::None);
        assert_eq!(h.failed(t0, delay), Change::None);
        assert_eq!(h.failed(t0, delay), Change::None);
        assert_eq!(h.admit(t0), Admit::Send);
        assert_eq!(
            h.failed(t0, delay),
            Change::WentDown {
                failures: 3,
                probe_at: t0 + secs(10)
            }
        );
        assert!(h.is_down());
        // stragglers that were opening when it went down change nothing
        assert_eq!(h.failed(t0 + secs(1), delay), Change::None);
        assert_eq!(
            h.admit(t0 + secs(9)),
            Admit::Defer {
                probe_at: t0 + secs(10)
            }
        );
    }

    #[test]
    fn probes_back_off_and_a_success_brings_it_up() {
        let t0 = Instant::now();
        let mut h = Health::new(1);
        h.failed(t0, delay);
        assert_eq!(h.admit(t0 + secs(10)), Admit::Probe);
        // one probe at a time; recipients are held meanwhile
        assert_eq!(h.admit(t0 + secs(11)), Admit::Hold);
        assert_eq!(
            h.failed(t0 + secs(12), delay),
            Change::ProbeFailed {
                probes: 1,
                probe_at: t0 + secs(32)
            }
        );
        assert_eq!(
            h.admit(t0 + secs(31)),
            Admit::Defer {
                probe_at: t0 + secs(32)
            }
        );
        assert_eq!(h.admit(t0 + secs(32)), Admit::Probe);
        assert_eq!(
            h.failed(t0 + secs(33), delay),
            Change::ProbeFailed {
                probes: 2,
                probe_at: t0 + secs(73)
            }
        );
        assert_eq!(h.admit(t0 + secs(80)), Admit::Probe);
        assert_eq!(
            h.opened(t0 + secs(81)),
            Change::CameUp { down_for: secs(81) }
        );
        assert_eq!(h.admit(t0 + secs(81)), Admit::Send);
        assert!(!h.is_down());
    }

    #[test]
    fn an_abandoned_probe_can_start_again() {
        let t0 = Instant::now();
        let mut h = Health::new(1);
        h.failed(t0, delay);
        assert_eq!(h.admit(t0 + secs(10)), Admit::Probe);
        h.probe_abandoned();
        assert_eq!(h.admit(t0 + secs(10)), Admit::Probe);
    }
}
