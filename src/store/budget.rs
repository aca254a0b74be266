//! The memory all in-flight requests may hold at once, shared by the whole store.
//!
//! Requests reserve what they download before downloading it (the same point where the
//! per-request bytes limit is checked) and give chunk bytes back after each batch is sent, the
//! index-phase bytes when they finish. A request that does not fit waits for others to finish,
//! up to a deadline, then fails with ResourceExhausted: memory stays bounded however many
//! requests arrive, instead of growing until the pod is killed.
//!
//! Blocking (waits on a condition variable): blocking pool only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::StoreError;

#[derive(Debug)]
pub struct MemoryBudget {
    /// Bytes all requests may hold together; 0 means unlimited.
    limit: u64,
    /// How long a request waits for room before it is refused.
    max_wait: Duration,
    held: Mutex<u64>,
    freed: Condvar,
    pub counters: BudgetCounters,
}

/// For `/metrics`.
#[derive(Debug, Default)]
pub struct BudgetCounters {
    /// Reservations that had to wait for room.
    pub waits: AtomicU64,
    /// Reservations refused (too large, or no room within the wait).
    pub refusals: AtomicU64,
}

impl MemoryBudget {
    pub fn new(limit: u64, max_wait: Duration) -> Self {
        MemoryBudget {
            limit,
            max_wait,
            held: Mutex::new(0),
            freed: Condvar::new(),
            counters: BudgetCounters::default(),
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes held by requests right now.
    pub fn held(&self) -> u64 {
        *self.held.lock()
    }

    /// Takes `bytes` from the budget, waiting for other requests to give some back if needed.
    /// `already` is what the caller holds: a request larger than the whole budget is refused
    /// at once, since waiting cannot help it.
    pub fn acquire(&self, bytes: u64, already: u64) -> Result<(), StoreError> {
        if bytes == 0 {
            return Ok(());
        }
        let mut held = self.held.lock();
        if self.limit == 0 {
            *held += bytes;
            return Ok(());
        }
        if already + bytes > self.limit {
            self.counters.refusals.fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::ResourceExhausted(format!(
                "exceeded the in-flight memory limit: the request needs {} bytes, more than the \
                 whole --store.inflight-memory-limit of {} bytes",
                already + bytes,
                self.limit
            )));
        }
        if *held + bytes > self.limit {
            self.counters.waits.fetch_add(1, Ordering::Relaxed);
            let deadline = Instant::now() + self.max_wait;
            while *held + bytes > self.limit {
                if self.freed.wait_until(&mut held, deadline).timed_out()
                    && *held + bytes > self.limit
                {
                    self.counters.refusals.fetch_add(1, Ordering::Relaxed);
                    return Err(StoreError::ResourceExhausted(format!(
                        "exceeded the in-flight memory limit: {} bytes held by other requests \
                         for {:?}, this one needs {bytes} more of {}",
                        *held, self.max_wait, self.limit
                    )));
                }
            }
        }
        *held += bytes;
        Ok(())
    }

    /// Gives `bytes` back and wakes the requests waiting for room.
    pub fn release(&self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let mut held = self.held.lock();
        *held = held.saturating_sub(bytes);
        self.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn waits_for_room_then_proceeds() {
        let budget = Arc::new(MemoryBudget::new(100, Duration::from_secs(30)));
        budget.acquire(80, 0).unwrap();
        let waiter = {
            let budget = budget.clone();
            std::thread::spawn(move || budget.acquire(50, 0))
        };
        while budget.counters.waits.load(Ordering::Relaxed) == 0 {
            std::thread::yield_now();
        }
        budget.release(80);
        waiter.join().unwrap().unwrap();
        assert_eq!(budget.held(), 50);
        assert_eq!(budget.counters.refusals.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn refuses_after_the_wait_and_at_once_when_larger_than_everything() {
        let budget = MemoryBudget::new(100, Duration::from_millis(20));
        budget.acquire(60, 0).unwrap();
        let e = budget.acquire(50, 0).unwrap_err();
        assert!(matches!(e, StoreError::ResourceExhausted(_)), "{e}");
        assert_eq!(budget.held(), 60, "a refused request holds nothing more");

        let started = Instant::now();
        let e = budget.acquire(30, 80).unwrap_err();
        assert!(e.to_string().contains("more than the whole"), "{e}");
        assert!(started.elapsed() < Duration::from_millis(20), "no wait");
        assert_eq!(budget.counters.refusals.load(Ordering::Relaxed), 2);
        budget.release(60);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn zero_is_unlimited_but_still_counted() {
        let budget = MemoryBudget::new(0, Duration::ZERO);
        budget.acquire(u64::MAX / 2, 0).unwrap();
        assert_eq!(budget.held(), u64::MAX / 2);
        budget.release(u64::MAX / 2);
        assert_eq!(budget.held(), 0);
    }
}
