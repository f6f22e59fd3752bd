//! The global budget of outbound connections: one slot per SMTP connection
//! (or probe) of any site, so that thousands of sites together never open
//! more sockets than the process may have.
//!
//! Slots are handed out first come, first served (a fair semaphore), so
//! every site with work gets its turn. When others wait, a site holding
//! more than its fair share (the budget divided by the sites that hold or
//! want slots) gives a slot back after its current transaction: thousands
//! of sites proceed together and none starves. Running out of local
//! resources while connecting (file descriptors, buffers, local ports) is
//! back-pressure, not a site's failure: the slot that hit it is taken out
//! of the budget (one warning a minute says the new size) and its holder
//! waits for another slot.
//!
//! The size is `[delivery] max_connections`, or, when that is 0, derived
//! from the open-file limit (see [`auto_size`]). Exposure: none.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// File descriptors kept back from the budget for everything else: DNS
/// lookups in flight (a socket each at most), and 64 for the spool's files,
/// the event sink, listeners and their clients, logging.
pub const RESERVED_FDS: u64 = 64 + super::mx::DNS_CONCURRENCY as u64;
/// The largest budget derived from the open-file limit (each connection
/// also costs memory: buffers, TLS state).
pub const AUTO_MAX: usize = 10_000;

/// The budget size for an open-file limit of `nofile`.
pub fn auto_size(nofile: u64) -> usize {
    let usable = nofile.saturating_sub(RESERVED_FDS).max(nofile / 2).max(1);
    usize::try_from(usable).unwrap_or(usize::MAX).min(AUTO_MAX)
}

/// The soft open-file limit of this process.
pub fn nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit with a valid struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur
    } else {
        1024
    }
}

/// The connection budget shared by every site.
pub struct Budget {
    slots: Arc<Semaphore>,
    /// Slots in the budget now (lowered by local failures).
    size: AtomicUsize,
    /// Tasks waiting for a slot.
    waiting: AtomicUsize,
    /// Sites holding or waiting for slots.
    sites: AtomicUsize,
    /// When the last "lowered" warning was logged (ms since the epoch).
    warned_ms: AtomicU64,
}

/// A slot: released when dropped.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

impl Budget {
    pub fn new(size: usize) -> Budget {
        let size = size.max(1);
        Budget {
            slots: Arc::new(Semaphore::new(size)),
            size: AtomicUsize::new(size),
            waiting: AtomicUsize::new(0),
            sites: AtomicUsize::new(0),
            warned_ms: AtomicU64::new(0),
        }
    }

    /// Slots in the budget.
    pub fn size(&self) -> usize {
        self.size.load(Ordering::Acquire)
    }

    /// Slots in use.
    pub fn in_use(&self) -> usize {
        self.size().saturating_sub(self.slots.available_permits())
    }

    /// Tasks waiting for a slot.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// Waits for a slot (first come, first served).
    pub async fn acquire(&self) -> Option<Slot> {
        self.waiting.fetch_add(1, Ordering::AcqRel);
        let permit = Arc::clone(&self.slots).acquire_owned().await.ok();
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        permit.map(|p| Slot { _permit: p })
    }

    /// A site starts holding or wanting slots (`before` is how many it
    /// held or wanted before).
    pub fn site_wants(&self, before: usize) {
        if before == 0 {
            self.sites.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// A site holds or wants one slot fewer (`after` is how many now).
    pub fn site_wants_less(&self, after: usize) {
        if after == 0 {
            self.sites.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Whether a site holding `held` slots should give one back: others
    /// wait and it holds more than its fair share.
    pub fn should_yield(&self, held: usize) -> bool {
        held > 1
            && self.waiting() > 0
            && held.saturating_mul(self.sites.load(Ordering::Acquire).max(1)) > self.size()
    }

    /// Connecting with `slot` failed for lack of a local resource: the
    /// slot leaves the budget (never below one).
    pub fn lower(&self, slot: Slot, cause: &str) {
        let lowered = self
            .size
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                (s > 1).then(|| s - 1)
            })
            .is_ok();
        if lowered {
            slot._permit.forget();
        } else {
            drop(slot);
        }
        let now = volley_spool::now_ms();
        let last = self.warned_ms.load(Ordering::Acquire);
        if now.saturating_sub(last) >= 60_000
            && self
                .warned_ms
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            tracing::warn!(
                budget = self.size(),
                error = cause,
                "out of a local resource while connecting: the connection budget is lowered; waiting connections go on as slots free up"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_size_keeps_a_reserve_and_a_ceiling() {
        assert_eq!(auto_size(1024), 704);
        assert_eq!(auto_size(4096), 4096 - RESERVED_FDS as usize);
        assert_eq!(auto_size(256), 128);
        assert_eq!(auto_size(100), 50);
        assert_eq!(auto_size(1 << 20), AUTO_MAX);
        assert_eq!(auto_size(0), 1);
    }

    #[tokio::test]
    async fn fair_share_and_lowering() {
        let b = Budget::new(4);
        let s: Vec<Slot> = vec![
            b.acquire().await.unwrap(),
            b.acquire().await.unwrap(),
            b.acquire().await.unwrap(),
        ];
        b.site_wants(0);
        assert!(!b.should_yield(3), "nobody waits");
        b.site_wants(0);
        let b = Arc::new(b);
        let b2 = Arc::clone(&b);
        let _last = b.acquire().await.unwrap();
        let waiter = tokio::spawn(async move { b2.acquire().await.map(|_| ()) });
        while b.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        // two sites, four slots: three held by one site is over its share
        assert!(b.should_yield(3));
        assert!(!b.should_yield(2));
        let mut s = s;
        b.lower(s.pop().unwrap(), "EMFILE");
        assert_eq!(b.size(), 3);
        drop(s);
        waiter.await.unwrap().unwrap();
        assert_eq!(b.in_use(), 1);
    }
}
