//! The hand-off of one outcome from the thread that produces it (the reader,
//! the writer, a teardown) to the one caller waiting for it.
//!
//! A one-shot slot rather than a channel: putting the value in never blocks
//! and wakes the receiver only if it is parked. The receiver first spins for
//! a few microseconds on a flag when the machine has more than one CPU and
//! it is the only receiver waiting: a reply on a local link often arrives
//! within that time, and catching it without parking saves a futex wake-up
//! and a context switch, the largest cost the client adds to a round trip.
//! On one CPU, or with other receivers waiting (callers outnumbering the
//! cores), spinning would only take the CPU the reader needs, so it parks at
//! once.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::sync::{Condvar, Mutex};

enum State<T> {
    Empty,
    Full(T),
    /// Taken, or the sender went away without sending.
    Closed,
}

struct Slot<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
    /// Set (after `state`) when a value or a close is there: lets the
    /// receiver spin without taking the lock.
    flagged: AtomicBool,
}

/// The producing side. Dropping it without sending closes the slot.
pub(crate) struct Sender<T> {
    slot: Arc<Slot<T>>,
    sent: bool,
}

/// The consuming side.
pub(crate) struct Receiver<T> {
    slot: Arc<Slot<T>>,
}

/// Why no value was received.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RecvError {
    /// Nothing yet.
    Empty,
    /// The sender went away without sending, or the value was already taken.
    Closed,
}

pub(crate) fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let slot = Arc::new(Slot {
        state: Mutex::new(State::Empty),
        ready: Condvar::new(),
        flagged: AtomicBool::new(false),
    });
    (
        Sender {
            slot: slot.clone(),
            sent: false,
        },
        Receiver { slot },
    )
}

/// Receivers blocked in [`Receiver::recv_until`] right now, in the process.
static WAITING: AtomicUsize = AtomicUsize::new(0);

fn spin_budget() -> Duration {
    static BUDGET: OnceLock<Duration> = OnceLock::new();
    *BUDGET.get_or_init(|| {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        // Under schedule exploration a spin would never see time pass.
        if cpus > 1 && !cfg!(all(test, flamingo_explore)) {
            Duration::from_micros(50)
        } else {
            Duration::ZERO
        }
    })
}

/// A receiver to wake: the value is already in its slot. Waking is kept
/// apart from filling so that a slot can be filled while the connection
/// lock is held (the outcome and the request's removal are one step) and
/// the wake-up system call made after the lock is released. Dropping it
/// wakes the receiver too, so no wake-up is ever lost.
pub(crate) struct Wake<T> {
    slot: Option<Arc<Slot<T>>>,
}

impl<T> Wake<T> {
    /// Wakes the receiver now.
    pub(crate) fn wake(mut self) {
        self.fire();
    }

    fn fire(&mut self) {
        if let Some(s) = self.slot.take() {
            s.ready.notify_one();
        }
    }
}

impl<T> Drop for Wake<T> {
    fn drop(&mut self) {
        self.fire();
    }
}

impl<T> Sender<T> {
    /// Puts the value in the slot and wakes the receiver at once.
    #[cfg(test)]
    pub(crate) fn send(self, value: T) {
        self.fill(value).wake();
    }

    /// Puts the value in the slot, where the receiver finds it from now
    /// on, and returns the wake-up to make (at once, or after releasing a
    /// lock). A receiver polling or timing out sees the value even before
    /// it is woken.
    pub(crate) fn fill(mut self, value: T) -> Wake<T> {
        self.sent = true;
        *self.slot.state.lock() = State::Full(value);
        self.slot.flagged.store(true, Ordering::Release);
        Wake {
            slot: Some(self.slot.clone()),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if !self.sent {
            let mut st = self.slot.state.lock();
            if matches!(*st, State::Empty) {
                *st = State::Closed;
            }
            drop(st);
            self.slot.flagged.store(true, Ordering::Release);
            self.slot.ready.notify_one();
        }
    }
}

fn take<T>(st: &mut State<T>) -> Option<Result<T, RecvError>> {
    match std::mem::replace(st, State::Closed) {
        State::Full(v) => Some(Ok(v)),
        State::Closed => Some(Err(RecvError::Closed)),
        State::Empty => {
            *st = State::Empty;
            None
        }
    }
}

impl<T> Receiver<T> {
    /// The value if it is there. Never blocks.
    pub(crate) fn try_recv(&self) -> Result<T, RecvError> {
        take(&mut self.slot.state.lock()).unwrap_or(Err(RecvError::Empty))
    }

    /// Waits until `until` for the value.
    pub(crate) fn recv_until(&self, until: Instant) -> Result<T, RecvError> {
        let budget = spin_budget();
        let alone = WAITING.fetch_add(1, Ordering::Relaxed) == 0;
        if alone && !budget.is_zero() && !self.slot.flagged.load(Ordering::Acquire) {
            let spin_end = Instant::now() + budget;
            let mut i = 0u32;
            while !self.slot.flagged.load(Ordering::Acquire) {
                std::hint::spin_loop();
                i = i.wrapping_add(1);
                if i & 63 == 0 && Instant::now() >= spin_end.min(until) {
                    break;
                }
            }
        }
        let r = self.park_until(until);
        WAITING.fetch_sub(1, Ordering::Relaxed);
        r
    }

    fn park_until(&self, until: Instant) -> Result<T, RecvError> {
        let mut st = self.slot.state.lock();
        loop {
            if let Some(r) = take(&mut st) {
                return r;
            }
            if self.slot.ready.wait_until(&mut st, until).timed_out() {
                return take(&mut st).unwrap_or(Err(RecvError::Empty));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_then_receive_once() {
        let (tx, rx) = channel();
        tx.send(7);
        assert_eq!(rx.try_recv(), Ok(7));
        assert_eq!(rx.try_recv(), Err(RecvError::Closed));
    }

    #[test]
    fn dropped_sender_closes_a_waiter() {
        let (tx, rx) = channel::<u8>();
        let t = std::thread::spawn(move || rx.recv_until(Instant::now() + Duration::from_secs(10)));
        drop(tx);
        assert_eq!(t.join().unwrap(), Err(RecvError::Closed));
    }

    #[test]
    fn wakes_a_parked_receiver_and_times_out() {
        let (tx, rx) = channel();
        let t = std::thread::spawn(move || rx.recv_until(Instant::now() + Duration::from_secs(10)));
        tx.send(3u32);
        assert_eq!(t.join().unwrap(), Ok(3));
        let (_tx, rx) = channel::<u8>();
        assert_eq!(rx.try_recv(), Err(RecvError::Empty));
        assert_eq!(
            rx.recv_until(Instant::now() + Duration::from_millis(1)),
            Err(RecvError::Empty)
        );
    }
}
