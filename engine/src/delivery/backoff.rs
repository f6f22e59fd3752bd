//! Retry timing: exponential backoff with jitter, capped, and the maximum
//! age after which a recipient is given up (pure, clock passed in).
//!
//! A recipient's clock starts when it was accepted into the spool. Retries
//! follow the schedule, but never past its expiry (acceptance + `max_age`):
//! the last retry comes at the expiry itself, and only a failure at or
//! after the expiry gives up. So the final bounce comes at `max_age`, not
//! up to a retry delay before it, and the `expirationTime` of every
//! DeliveryDelay is when that happens.

use std::time::Duration;

/// Retry policy values from the config.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub factor: f64,
    pub cap: Duration,
    /// Relative jitter: the delay varies by up to ± this fraction.
    pub jitter: f64,
    pub max_age: Duration,
}

impl From<&crate::config::Policy> for Backoff {
    fn from(p: &crate::config::Policy) -> Backoff {
        Backoff {
            first: p.retry_first,
            factor: p.retry_factor,
            cap: p.retry_cap,
            jitter: p.retry_jitter,
            max_age: p.max_age,
        }
    }
}

/// When to try again, or that it is time to give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    RetryAt(u64),
    GiveUp,
}

impl Backoff {
    /// Delay before attempt `attempts + 1` (after `attempts` failures),
    /// varied by ±`jitter` (a fraction) using `jitter01` in [0, 1).
    pub fn delay(&self, attempts: u32, jitter01: f64) -> Duration {
        let exp = self.factor.powi(attempts.saturating_sub(1).min(64) as i32);
        let base = (self.first.as_secs_f64() * exp).min(self.cap.as_secs_f64());
        let secs = (base * (1.0 - self.jitter + 2.0 * self.jitter * jitter01)).max(0.001);
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
    }

    /// Decides the next attempt for a recipient accepted at `accepted_ms`
    /// that has failed `attempts` times, now being `now_ms`, and that must
    /// not be retried before `not_before` (ms; 0 for no such bound).
    pub fn next(
        &self,
        accepted_ms: u64,
        attempts: u32,
        now_ms: u64,
        jitter01: f64,
        not_before: u64,
    ) -> Next {
        let expires = self.expires(accepted_ms);
        if now_ms >= expires {
            return Next::GiveUp;
        }
        let at = now_ms
            .saturating_add(self.delay(attempts, jitter01).as_millis() as u64)
            .max(not_before);
        Next::RetryAt(at.min(expires))
    }

    /// When a recipient accepted at `accepted_ms` expires.
    pub fn expires(&self, accepted_ms: u64) -> u64 {
        accepted_ms.saturating_add(self.max_age.as_millis() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b() -> Backoff {
        Backoff {
            first: Duration::from_secs(60),
            factor: 2.0,
            cap: Duration::from_secs(3600),
            jitter: 0.1,
            max_age: Duration::from_secs(72 * 3600),
        }
    }

    #[test]
    fn grows_and_caps() {
        assert_eq!(b().delay(1, 0.5), Duration::from_secs(60));
        assert_eq!(b().delay(2, 0.5), Duration::from_secs(120));
        assert_eq!(b().delay(30, 0.5), Duration::from_secs(3600));
        assert!(b().delay(1, 0.0) >= Duration::from_secs(54));
        assert!(b().delay(1, 0.999) <= Duration::from_secs(66));
    }

    #[test]
    fn gives_up_at_max_age_not_before() {
        let day = 24 * 3600 * 1000;
        assert_eq!(b().next(0, 1, 1000, 0.5, 0), Next::RetryAt(61_000));
        assert_eq!(b().next(0, 5, 3 * day, 0.5, 0), Next::GiveUp);
        assert_eq!(b().next(0, 5, 3 * day + 1, 0.5, 0), Next::GiveUp);
        // the next delay (1 h) would pass the expiry: the last retry comes
        // at the expiry itself, not never
        assert_eq!(
            b().next(0, 30, 3 * day - 1000, 0.5, 0),
            Next::RetryAt(3 * day)
        );
        // the clock is the recipient's acceptance, not anything earlier
        assert_eq!(
            b().next(10 * day, 1, 10 * day + 1000, 0.5, 0),
            Next::RetryAt(10 * day + 61_000)
        );
    }

    #[test]
    fn not_before_holds_a_retry_back_but_not_past_the_expiry() {
        let day = 24 * 3600 * 1000;
        assert_eq!(b().next(0, 1, 1000, 0.5, 500_000), Next::RetryAt(500_000));
        assert_eq!(b().next(0, 1, 1000, 0.5, 10), Next::RetryAt(61_000));
        assert_eq!(b().next(0, 1, 1000, 0.5, 4 * day), Next::RetryAt(3 * day));
    }
}
