//! Running query code on an async worker thread, where it must never wait.
//!
//! Handing a small request to the blocking pool and its reply back costs two thread wake-ups,
//! about a quarter of the latency of a one-series query (and four context switches of its
//! five). So the gRPC server first runs a Series request in place, in no-wait mode: while a
//! [`NoWait`] guard lives on a thread, every place that would wait (a read from the disk or the
//! network, opening an index, the memory budget, a memory map not in RAM) refuses instead: it
//! calls [`refuse`] and fails. The server then drops what the attempt produced and runs the
//! request on the blocking pool as usual. A repeated small query (postings, series and chunks
//! in memory or in the page cache) is answered without leaving the worker; anything else costs
//! one refused attempt, which stops at the first wait.
//!
//! The mode is per thread, so work the attempt would hand to other threads runs in place.

use std::cell::Cell;
use std::marker::PhantomData;

thread_local! {
    static STATE: Cell<State> = const { Cell::new(State::Off) };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Off,
    On,
    /// On, and something refused to wait.
    Refused,
}

/// No-wait mode on this thread until dropped. Not `Send`: it belongs to its thread.
#[must_use]
pub struct NoWait {
    _thread: PhantomData<*const ()>,
}

/// Enters no-wait mode on this thread.
pub fn enter() -> NoWait {
    STATE.with(|s| {
        debug_assert_eq!(s.get(), State::Off, "no-wait mode entered twice");
        s.set(State::On)
    });
    NoWait {
        _thread: PhantomData,
    }
}

impl NoWait {
    /// Whether something refused to wait since [`enter`]: the attempt's result is then
    /// incomplete or an error, and the work must run again where it may wait.
    pub fn refused(&self) -> bool {
        STATE.with(|s| s.get() == State::Refused)
    }
}

impl Drop for NoWait {
    fn drop(&mut self) {
        STATE.with(|s| s.set(State::Off));
    }
}

/// Whether this thread is in no-wait mode.
pub fn active() -> bool {
    STATE.with(|s| s.get() != State::Off)
}

/// Called where this thread is about to wait: in no-wait mode, records the refusal and returns
/// true (the caller then fails instead of waiting); otherwise false.
pub fn refuse() -> bool {
    STATE.with(|s| match s.get() {
        State::Off => false,
        _ => {
            s.set(State::Refused);
            true
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_count_only_inside_the_mode_of_their_own_thread() {
        assert!(!active());
        assert!(!refuse(), "outside the mode, waiting is allowed");
        let guard = enter();
        assert!(active() && !guard.refused());
        std::thread::spawn(|| assert!(!active() && !refuse()))
            .join()
            .unwrap();
        assert!(!guard.refused(), "another thread's wait is its own");
        assert!(refuse());
        assert!(guard.refused());
        drop(guard);
        assert!(!active() && !refuse());
        let again = enter();
        assert!(!again.refused(), "a new attempt starts clean");
    }
}
