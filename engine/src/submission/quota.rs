//! Sending quotas per principal, as SES has them: a maximum send rate
//! (recipients per second; a token bucket holding one second's worth) and
//! a maximum per rolling 24 hours (counted per minute). Pure: the caller
//! gives the time. Counts live in memory and start again at a restart.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

use super::auth::Principal;

/// A quota's verdict on sending to `n` more recipients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Over the maximum send rate.
    Rate,
    /// Over the 24-hour maximum (the limit).
    Daily(u64),
}

struct Usage {
    tokens: f64,
    last: Instant,
    /// Recipients sent per minute (minutes since `epoch`), oldest first.
    minutes: VecDeque<(u64, u64)>,
    day_total: u64,
}

/// Usage of every principal.
pub struct Quotas {
    epoch: Instant,
    usage: Mutex<HashMap<String, Usage>>,
}

impl Quotas {
    pub fn new(epoch: Instant) -> Quotas {
        Quotas {
            epoch,
            usage: Mutex::new(HashMap::new()),
        }
    }

    /// Recipients `p` sent in the 24 hours before `now` (SES
    /// `SentLast24Hours`).
    pub fn used(&self, p: &Principal, now: Instant) -> u64 {
        let map = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        let minute = now.saturating_duration_since(self.epoch).as_secs() / 60;
        map.get(&p.name).map_or(0, |u| {
            u.minutes
                .iter()
                .filter(|(m, _)| m + 24 * 60 > minute)
                .map(|(_, c)| c)
                .sum()
        })
    }

    /// Takes `n` recipients from `p`'s quotas at `now`, or says which is
    /// exceeded (nothing is taken then).
    pub fn take(&self, p: &Principal, n: u64, now: Instant) -> Verdict {
        let mut map = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        let u = map.entry(p.name.clone()).or_insert_with(|| Usage {
            tokens: p.max_send_rate.max(1.0),
            last: now,
            minutes: VecDeque::new(),
            day_total: 0,
        });
        let minute = now.saturating_duration_since(self.epoch).as_secs() / 60;
        while let Some(&(m, c)) = u.minutes.front() {
            if m + 24 * 60 > minute {
                break;
            }
            u.day_total -= c;
            u.minutes.pop_front();
        }
        if p.max_24_hour_send > 0 && u.day_total + n > p.max_24_hour_send {
            return Verdict::Daily(p.max_24_hour_send);
        }
        if p.max_send_rate > 0.0 {
            let cap = p.max_send_rate.max(1.0);
            let elapsed = now.saturating_duration_since(u.last).as_secs_f64();
            u.tokens = (u.tokens + elapsed * p.max_send_rate).min(cap);
            u.last = now;
            // a message with more recipients than a second's worth may go
            // when the bucket is full (SES counts it against the rate)
            let need = (n as f64).min(cap);
            if u.tokens + 1e-9 < need {
                return Verdict::Rate;
            }
            u.tokens -= n as f64;
        }
        u.day_total += n;
        match u.minutes.back_mut() {
            Some((m, c)) if *m == minute => *c += n,
            _ => u.minutes.push_back((minute, n)),
        }
        Verdict::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn p(rate: f64, day: u64) -> Principal {
        Principal {
            name: "u".into(),
            identities: vec![],
            max_send_rate: rate,
            max_24_hour_send: day,
        }
    }

    #[test]
    fn rate_refills_over_time() {
        let t0 = Instant::now();
        let q = Quotas::new(t0);
        let u = p(2.0, 0);
        assert_eq!(q.take(&u, 1, t0), Verdict::Ok);
        assert_eq!(q.take(&u, 1, t0), Verdict::Ok);
        assert_eq!(q.take(&u, 1, t0), Verdict::Rate);
        assert_eq!(q.take(&u, 1, t0 + Duration::from_millis(500)), Verdict::Ok);
        assert_eq!(
            q.take(&u, 1, t0 + Duration::from_millis(500)),
            Verdict::Rate
        );
        // unlimited
        assert_eq!(q.take(&p(0.0, 0), 1000, t0), Verdict::Ok);
    }

    #[test]
    fn daily_limit_rolls() {
        let t0 = Instant::now();
        let q = Quotas::new(t0);
        let u = p(0.0, 10);
        assert_eq!(q.take(&u, 6, t0), Verdict::Ok);
        assert_eq!(
            q.take(&u, 5, t0 + Duration::from_secs(3600)),
            Verdict::Daily(10)
        );
        assert_eq!(q.take(&u, 4, t0 + Duration::from_secs(3600)), Verdict::Ok);
        assert_eq!(
            q.take(&u, 1, t0 + Duration::from_secs(3700)),
            Verdict::Daily(10)
        );
        // the first 6 leave the window after 24 hours
        assert_eq!(
            q.take(&u, 6, t0 + Duration::from_secs(86_400 + 60)),
            Verdict::Ok
        );
    }
}
