//! How many DNS lookups are in flight, in two lanes, so that lookups a
//! nameserver is slow to answer (an unreachable authoritative server
//! behind the recursive resolver, a hostile domain) cannot hold every
//! place while unrelated domains wait.
//!
//! A lookup starts in the *fast* lane ([`FAST`] places). One that has not
//! finished after [`SLOW_AFTER`] moves to the *slow* lane ([`SLOW`]
//! places) as soon as a place there is free, giving its fast place to the
//! next lookup; it keeps running meanwhile. So unrelated lookups wait for
//! slow ones only when more than [`SLOW`] of them are slow at once. Both
//! lanes together bound the sockets DNS holds (each lookup in flight may
//! hold one; see `delivery::budget::RESERVED_FDS`).

use std::future::Future;
use std::time::Duration;

use tokio::sync::Semaphore;

/// Places in the fast lane: lookups that have not yet been slow.
pub const FAST: usize = 64;
/// Places in the slow lane: lookups slower than [`SLOW_AFTER`].
pub const SLOW: usize = 192;
/// A lookup in flight longer than this is slow (a recursive resolver
/// answers from its cache in well under a millisecond and most recursions
/// within a few hundred).
pub const SLOW_AFTER: Duration = Duration::from_secs(1);

/// The two lanes.
pub struct Lanes {
    fast: Semaphore,
    slow: Semaphore,
    slow_after: Duration,
}

impl Default for Lanes {
    fn default() -> Self {
        Lanes::new(FAST, SLOW, SLOW_AFTER)
    }
}

impl Lanes {
    pub fn new(fast: usize, slow: usize, slow_after: Duration) -> Lanes {
        Lanes {
            fast: Semaphore::new(fast),
            slow: Semaphore::new(slow),
            slow_after,
        }
    }

    /// Runs `lookup` with a place in a lane (waiting for one first).
    pub async fn run<F: Future>(&self, lookup: F) -> F::Output {
        // the semaphores are never closed: `acquire` cannot fail
        let fast = self.fast.acquire().await;
        let mut lookup = std::pin::pin!(lookup);
        tokio::select! {
            out = &mut lookup => return out,
            () = tokio::time::sleep(self.slow_after) => {}
        }
        let slow = tokio::select! {
            out = &mut lookup => return out,
            slow = self.slow.acquire() => slow,
        };
        drop(fast);
        let out = lookup.await;
        drop(slow);
        out
    }

    /// Free places in the fast lane.
    #[cfg(test)]
    fn fast_free(&self) -> usize {
        self.fast.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::sync::Notify;

    /// `n` lookups that hang until `gate` is notified.
    fn stuck(
        lanes: &Arc<Lanes>,
        gate: &Arc<Notify>,
        n: usize,
    ) -> Vec<tokio::task::JoinHandle<&'static str>> {
        (0..n)
            .map(|_| {
                let (l, g) = (Arc::clone(lanes), Arc::clone(gate));
                tokio::spawn(async move {
                    l.run(async move {
                        g.notified().await;
                        "answered"
                    })
                    .await
                })
            })
            .collect()
    }

    /// Lets the hanging lookups answer, and waits for them.
    async fn answer(gate: &Notify, held: Vec<tokio::task::JoinHandle<&'static str>>) {
        gate.notify_waiters();
        for h in held {
            assert_eq!(h.await.unwrap(), "answered");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn slow_lookups_give_their_fast_place_to_others() {
        let lanes = Arc::new(Lanes::new(2, 3, Duration::from_secs(1)));
        let gate = Arc::new(Notify::new());
        let held = stuck(&lanes, &gate, 3);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(lanes.fast_free(), 0, "not slow yet");
        // two moved at 1 s, the third (in the fast lane from then) at 2 s
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(lanes.fast_free(), 2, "the hanging lookups moved out");
        for i in 0..10 {
            assert_eq!(lanes.run(async move { i }).await, i, "quick lookups pass");
        }
        answer(&gate, held).await;
        assert_eq!(lanes.fast_free(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_slow_lane_slow_lookups_keep_their_fast_place() {
        let lanes = Arc::new(Lanes::new(2, 3, Duration::from_secs(1)));
        let gate = Arc::new(Notify::new());
        let held = stuck(&lanes, &gate, 5);
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(lanes.fast_free(), 0);
        let l = Arc::clone(&lanes);
        let quick = tokio::spawn(async move { l.run(async { 7 }).await });
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(!quick.is_finished(), "every place is held");
        answer(&gate, held).await;
        assert_eq!(quick.await.unwrap(), 7);
    }

    #[tokio::test(start_paused = true)]
    async fn a_quick_lookup_never_needs_a_slow_place() {
        let lanes = Lanes::new(1, 0, Duration::from_secs(1));
        for i in 0..100 {
            assert_eq!(lanes.run(async move { i }).await, i);
        }
        assert_eq!(lanes.fast_free(), 1);
    }
}
