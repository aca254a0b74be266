//! The memory all in-flight requests may hold at once, shared by the whole store.
//!
//! Requests reserve what they download before downloading it (the same point where the
//! per-request bytes limit is checked) and give chunk bytes back after each batch is sent, the
//! index-phase bytes when they finish. A request that does not fit waits for others to finish,
//! up to a deadline, then fails with ResourceExhausted: memory stays bounded however many
//! requests arrive, instead of growing until the pod is killed.
//!
//! Requests hold memory while they wait for more, so waiting alone could deadlock: every
//! request holding part of the budget, each waiting for another to give some back. The oldest
//! request holding memory therefore never waits; it may take the budget over its limit by
//! what it adds, finishes, and lets the others go on. The overshoot is at most one request's
//! holding, which is itself at most the limit.
//!
//! Blocking (waits on a condition variable): blocking pool only, or in no-wait mode
//! ([`crate::nowait`]), where a reservation that would wait, or find the lock taken, fails
//! instead. The lock is held for a few map operations, never across the wait (the condition
//! variable releases it); what `/metrics` shows is an atomic copy.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::storeapi::StoreError;

#[derive(Debug)]
pub struct MemoryBudget {
    /// Bytes all requests may hold together; 0 means unlimited.
    limit: u64,
    /// How long a request waits for room before it is refused.
    max_wait: Duration,
    state: Mutex<State>,
    freed: Condvar,
    /// `state.held`, for readers that must not wait.
    held: AtomicU64,
    next_ticket: AtomicU64,
    pub counters: BudgetCounters,
}

#[derive(Debug, Default)]
struct State {
    held: u64,
    /// Bytes held per request ticket (several threads of one request share its ticket); the
    /// smallest (oldest) ticket never waits.
    holders: BTreeMap<u64, u64>,
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
            state: Mutex::new(State::default()),
            freed: Condvar::new(),
            held: AtomicU64::new(0),
            next_ticket: AtomicU64::new(0),
            counters: BudgetCounters::default(),
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes held by requests right now. Never waits.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// A request's place in line, taken when it starts: older requests have smaller ones.
    pub fn ticket(&self) -> u64 {
        self.next_ticket.fetch_add(1, Ordering::Relaxed)
    }

    /// Takes `bytes` from the budget for the request with `ticket`, waiting for other
    /// requests to give some back if needed. A request that would hold more than the whole
    /// budget is refused at once, since waiting cannot help it.
    pub fn acquire(&self, ticket: u64, bytes: u64) -> Result<(), StoreError> {
        if bytes == 0 {
            return Ok(());
        }
        let mut state = if crate::nowait::active() {
            match self.state.try_lock() {
                Some(state) => state,
                None => {
                    crate::nowait::refuse();
                    return Err(StoreError::WouldWait);
                }
            }
        } else {
            self.state.lock()
        };
        let already = state.holders.get(&ticket).copied().unwrap_or(0);
        if self.limit > 0 && already + bytes > self.limit {
            self.counters.refusals.fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::ResourceExhausted(format!(
                "exceeded the in-flight memory limit: the request needs {} bytes, more than the \
                 whole --store.inflight-memory-limit of {} bytes",
                already + bytes,
                self.limit
            )));
        }
        let must_wait = |state: &State| {
            self.limit > 0
                && state.held + bytes > self.limit
                && state
                    .holders
                    .first_key_value()
                    .is_some_and(|(&oldest, _)| oldest != ticket)
        };
        if must_wait(&state) && crate::nowait::refuse() {
            return Err(StoreError::WouldWait);
        }
        if must_wait(&state) {
            self.counters.waits.fetch_add(1, Ordering::Relaxed);
            let deadline = Instant::now() + self.max_wait;
            while must_wait(&state) {
                if self.freed.wait_until(&mut state, deadline).timed_out() && must_wait(&state) {
                    self.counters.refusals.fetch_add(1, Ordering::Relaxed);
                    return Err(StoreError::ResourceExhausted(format!(
                        "exceeded the in-flight memory limit: {} bytes held by other requests \
                         for {:?}, this one needs {bytes} more of {}",
                        state.held, self.max_wait, self.limit
                    )));
                }
            }
        }
        state.held += bytes;
        self.held.store(state.held, Ordering::Relaxed);
        *state.holders.entry(ticket).or_insert(0) += bytes;
        Ok(())
    }

    /// Takes `bytes` for the request with `ticket` if that needs no wait (there is room, or
    /// the request is the oldest holder); false otherwise. Never waits: for async tasks.
    pub fn try_acquire(&self, ticket: u64, bytes: u64) -> bool {
        if bytes == 0 {
            return true;
        }
        let Some(mut state) = self.state.try_lock() else {
            return false;
        };
        let already = state.holders.get(&ticket).copied().unwrap_or(0);
        let oldest = state
            .holders
            .first_key_value()
            .is_none_or(|(&oldest, _)| oldest == ticket);
        if self.limit > 0
            && (already + bytes > self.limit || (state.held + bytes > self.limit && !oldest))
        {
            return false;
        }
        state.held += bytes;
        self.held.store(state.held, Ordering::Relaxed);
        *state.holders.entry(ticket).or_insert(0) += bytes;
        true
    }

    /// Gives `bytes` back for the request with `ticket` and wakes the requests waiting for
    /// room.
    pub fn release(&self, ticket: u64, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let mut state = self.state.lock();
        let held = state.holders.get(&ticket).copied().unwrap_or(0);
        let bytes = bytes.min(held);
        state.held = state.held.saturating_sub(bytes);
        self.held.store(state.held, Ordering::Relaxed);
        if held == bytes {
            state.holders.remove(&ticket);
        } else {
            state.holders.insert(ticket, held - bytes);
        }
        self.freed.notify_all();
    }
}

/// Bytes taken from a budget by a task of a request ([`MemoryBudget::try_acquire`]), given
/// back when dropped unless the request takes them over ([`Taken::hand_over`]): a task
/// aborted with its request leaks nothing.
#[derive(Debug)]
pub struct Taken {
    budget: std::sync::Arc<MemoryBudget>,
    ticket: u64,
    bytes: u64,
}

impl Taken {
    pub fn try_take(
        budget: &std::sync::Arc<MemoryBudget>,
        ticket: u64,
        bytes: u64,
    ) -> Option<Taken> {
        budget.try_acquire(ticket, bytes).then(|| Taken {
            budget: budget.clone(),
            ticket,
            bytes,
        })
    }

    /// The bytes, now the request's to give back.
    pub fn hand_over(mut self) -> u64 {
        std::mem::take(&mut self.bytes)
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        self.budget.release(self.ticket, self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn waits_for_room_then_proceeds() {
        let budget = Arc::new(MemoryBudget::new(100, Duration::from_secs(30)));
        budget.acquire(1, 80).unwrap();
        let waiter = {
            let budget = budget.clone();
            std::thread::spawn(move || budget.acquire(2, 50))
        };
        while budget.counters.waits.load(Ordering::Relaxed) == 0 {
            std::thread::yield_now();
        }
        budget.release(1, 80);
        waiter.join().unwrap().unwrap();
        assert_eq!(budget.held(), 50);
        assert_eq!(budget.counters.refusals.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn refuses_after_the_wait_and_at_once_when_larger_than_everything() {
        let budget = MemoryBudget::new(100, Duration::from_millis(20));
        budget.acquire(1, 60).unwrap();
        let e = budget.acquire(2, 50).unwrap_err();
        assert!(matches!(e, StoreError::ResourceExhausted(_)), "{e}");
        assert_eq!(budget.held(), 60, "a refused request holds nothing more");

        assert_eq!(budget.counters.waits.load(Ordering::Relaxed), 1);
        let e = budget.acquire(1, 50).unwrap_err();
        assert!(e.to_string().contains("more than the whole"), "{e}");
        assert_eq!(budget.counters.waits.load(Ordering::Relaxed), 1, "no wait");
        assert_eq!(budget.counters.refusals.load(Ordering::Relaxed), 2);
        budget.release(1, 60);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn the_oldest_holder_never_waits_so_holders_cannot_deadlock() {
        let budget = MemoryBudget::new(100, Duration::from_millis(20));
        let (old, young) = (budget.ticket(), budget.ticket());
        budget.acquire(young, 50).unwrap();
        budget.acquire(old, 50).unwrap();
        // Both hold half and want more: the younger waits and is refused, the older goes on.
        assert!(budget.acquire(young, 10).is_err());
        budget.acquire(old, 30).unwrap();
        assert_eq!(budget.held(), 130, "over by the oldest request's addition");
        // Once the oldest is done, the younger is the oldest holder.
        budget.release(old, 80);
        budget.acquire(young, 40).unwrap();
        assert_eq!(budget.held(), 90);
    }

    #[test]
    fn threads_of_one_request_share_its_place_in_line() {
        let budget = MemoryBudget::new(100, Duration::from_millis(20));
        let (old, young) = (budget.ticket(), budget.ticket());
        // Two threads of the older request take 40 each; one gives its part back.
        budget.acquire(old, 40).unwrap();
        budget.acquire(old, 40).unwrap();
        budget.release(old, 40);
        budget.acquire(young, 20).unwrap();
        // The older request still holds 40, so it is still the oldest holder: it never waits.
        budget.acquire(old, 50).unwrap();
        assert_eq!(budget.held(), 110);
        assert!(budget.acquire(young, 10).is_err(), "the younger one waits");
        // Nor can a request give back more than it holds.
        budget.release(young, 1000);
        assert_eq!(budget.held(), 90);
    }

    #[test]
    fn in_no_wait_mode_a_reservation_that_would_wait_fails_at_once() {
        let budget = MemoryBudget::new(100, Duration::from_secs(30));
        budget.acquire(1, 80).unwrap();
        let attempt = crate::nowait::enter();
        budget.acquire(2, 10).unwrap();
        assert!(!attempt.refused(), "room enough: no wait, no refusal");
        let e = budget.acquire(2, 50).unwrap_err();
        assert!(matches!(e, StoreError::WouldWait), "{e}");
        assert!(attempt.refused());
        assert_eq!(budget.held(), 90, "the refused part is not held");
        assert_eq!(budget.counters.waits.load(Ordering::Relaxed), 0);
        assert_eq!(budget.counters.refusals.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn zero_is_unlimited_but_still_counted() {
        let budget = MemoryBudget::new(0, Duration::ZERO);
        budget.acquire(1, u64::MAX / 2).unwrap();
        assert_eq!(budget.held(), u64::MAX / 2);
        budget.release(1, u64::MAX / 2);
        assert_eq!(budget.held(), 0);
    }
}
