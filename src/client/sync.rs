//! The connection core's locks, condition variables, threads, thread-local
//! values and clock, in one place.
//!
//! In every normal build these are plain re-exports (parking_lot's locks,
//! `std::thread`, `Instant::now`): no wrapper, no cost. The schedule
//! exploration tests (`client::explore`, built with `--cfg
//! flamingo_explore`) swap them for stand-ins backed by the shuttle crate,
//! which runs the real core code under a scheduler that chooses every
//! interleaving, and for a virtual clock that advances only when every
//! thread waits, so deadlines are explored too. See RELIABILITY.md,
//! "Schedule exploration".
//!
//! So every lock, condition variable, thread spawn and reading of the
//! clock in the core comes from here; one taken from parking_lot or std
//! directly would hide its interleavings from the exploration (or block
//! it). Atomics stay std's: the core's are statistics counters and the
//! slot's spin hint (the spin is off under exploration), and neither
//! orders anything another thread relies on.

#[cfg(not(all(test, flamingo_explore)))]
pub(crate) use parking_lot::{Condvar, Mutex, RwLock};
#[cfg(not(all(test, flamingo_explore)))]
pub(crate) use std::thread_local;

/// Threads: `std::thread` in normal builds.
#[cfg(not(all(test, flamingo_explore)))]
pub(crate) mod thread {
    pub(crate) use std::thread::{Builder, JoinHandle};
}

/// The time now: `Instant::now()` in normal builds.
#[cfg(not(all(test, flamingo_explore)))]
#[inline(always)]
pub(crate) fn now() -> std::time::Instant {
    std::time::Instant::now()
}

#[cfg(all(test, flamingo_explore))]
pub(crate) mod shuttled;
#[cfg(all(test, flamingo_explore))]
pub(crate) use shuttle::thread_local;
#[cfg(all(test, flamingo_explore))]
pub(crate) use shuttled::{now, thread, Condvar, Mutex, RwLock};
