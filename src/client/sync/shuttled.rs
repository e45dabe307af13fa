//! Shuttle-backed stand-ins for the core's primitives, with the method
//! names the core uses (parking_lot's), and a virtual clock.
//!
//! Shuttle runs every thread of an execution as a coroutine on one OS
//! thread and chooses which one runs at each synchronisation operation. It
//! does not model time (its timed waits never time out), so the timed waits
//! here are built on shuttle's `park`/`unpark` and a clock of our own:
//!
//! - Virtual time stands still while any thread can run (computation takes
//!   no time) and jumps to the earliest deadline when every thread waits;
//!   the waits due then time out. So a timeout happens only when it could
//!   happen in a real run, and every interleaving of what is due at the
//!   same instant (a reply and its caller's deadline) is explored.
//! - A thread counts as waiting while it is in a condition-variable wait or
//!   joins an unfinished thread; a thread blocked on a mutex does not (the
//!   holder runs). The count, the timers and the clock live in a
//!   thread-local of the OS thread, which is one execution's.
//! - When every thread waits and none has a deadline, nothing can ever
//!   happen again: the clock thread panics ("wedged"), which fails the
//!   schedule with shuttle's replayable schedule string.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAITING: u8 = 0;
const NOTIFIED: u8 = 1;
const TIMED_OUT: u8 = 2;

/// One thread in a timed or untimed wait.
struct Waiter {
    thread: shuttle::thread::Thread,
    state: AtomicU8,
}

#[derive(Default)]
struct Clock {
    /// An exploration is under way (otherwise `now()` is real time).
    running: bool,
    base: Option<Instant>,
    /// Virtual time since `base`.
    now: Duration,
    /// Threads that can run (not in a wait), the clock thread aside.
    active: usize,
    timers: Vec<(Duration, Arc<Waiter>)>,
    /// The clock thread, woken when `active` drops to 0.
    keeper: Option<shuttle::thread::Thread>,
    stop: bool,
    /// Virtual time past which the run is a failure (something waits for
    /// ever, re-arming a far timer).
    horizon: Duration,
}

std::thread_local! {
    static CLOCK: RefCell<Clock> = RefCell::new(Clock::default());
    /// Executions started on this OS thread (one test's schedules).
    static RUNS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The number of the current execution (schedule), from 1.
pub(crate) fn runs() -> u64 {
    RUNS.with(|r| r.get())
}

/// Counts executions from 0 again.
pub(crate) fn reset_runs() {
    RUNS.with(|r| r.set(0));
}

fn with<R>(f: impl FnOnce(&mut Clock) -> R) -> R {
    CLOCK.with(|c| f(&mut c.borrow_mut()))
}

/// The time now: virtual during an exploration.
pub(crate) fn now() -> Instant {
    with(|c| match (c.running, c.base) {
        (true, Some(b)) => b + c.now,
        _ => Instant::now(),
    })
}

/// Virtual time elapsed since the exploration's start.
pub(crate) fn elapsed() -> Duration {
    with(|c| c.now)
}

fn offset(c: &Clock, t: Instant) -> Duration {
    c.base
        .map_or(Duration::ZERO, |b| t.saturating_duration_since(b))
}

/// One fewer thread can run; wakes the clock if none can.
fn deactivate() {
    let keeper = with(|c| {
        c.active -= 1;
        if c.active == 0 {
            c.keeper.clone()
        } else {
            None
        }
    });
    if let Some(k) = keeper {
        k.unpark();
    }
}

/// Starts the virtual clock for one execution: the calling thread is the
/// only one running. Returns the clock thread, for [`stop`].
pub(crate) fn start(horizon: Duration) -> shuttle::thread::JoinHandle<()> {
    RUNS.with(|r| r.set(r.get() + 1));
    with(|c| {
        *c = Clock {
            running: true,
            base: Some(Instant::now()),
            active: 1,
            horizon,
            ..Clock::default()
        }
    });
    let h = shuttle::thread::spawn(keep_time);
    with(|c| c.keeper = Some(h.thread().clone()));
    h
}

/// Stops the clock thread and joins it.
pub(crate) fn stop(h: shuttle::thread::JoinHandle<()>) {
    with(|c| c.stop = true);
    h.thread().unpark();
    let _ = h.join();
    with(|c| c.running = false);
}

enum Tick {
    Park,
    Stop,
    Fire(Vec<shuttle::thread::Thread>),
}

/// The clock thread: when every thread waits, moves time to the earliest
/// deadline and times out the waits due then.
fn keep_time() {
    loop {
        let tick = with(|c| {
            if c.stop {
                return Ok(Tick::Stop);
            }
            if c.active > 0 {
                return Ok(Tick::Park);
            }
            let horizon = c.horizon;
            match fire_next(c, horizon) {
                Some(fired) => Ok(Tick::Fire(fired)),
                None if c.timers.is_empty() => Err(format!(
                    "wedged: every thread waits and none has a deadline (virtual time {:?})",
                    c.now
                )),
                None => Err(format!(
                    "virtual time would pass {:?}: the only waits left are far timers (a wedge)",
                    c.horizon
                )),
            }
        });
        match tick {
            Ok(Tick::Stop) => return,
            Ok(Tick::Park) => shuttle::thread::park(),
            Ok(Tick::Fire(ts)) => ts.iter().for_each(|t| t.unpark()),
            Err(e) => panic!("{e} (schedule #{})", runs()),
        }
    }
}

/// Moves time to the earliest deadline (up to `limit`) and times out the
/// waits due then; returns their threads to unpark.
fn fire_next(c: &mut Clock, limit: Duration) -> Option<Vec<shuttle::thread::Thread>> {
    c.timers.retain(|(_, w)| w.state.load(Relaxed) == WAITING);
    let next = c.timers.iter().map(|(t, _)| *t).min()?;
    if next > limit {
        return None;
    }
    c.now = c.now.max(next);
    let now = c.now;
    let mut fired = Vec::new();
    c.timers.retain(|(t, w)| {
        if *t <= now {
            w.state.store(TIMED_OUT, Relaxed);
            fired.push(w.thread.clone());
            false
        } else {
            true
        }
    });
    c.active += fired.len();
    Some(fired)
}

/// Moves time to the earliest deadline if it is at most `max` away,
/// although threads may still be able to run: as if they were descheduled
/// that long. Times out the waits due then.
pub(crate) fn jump(max: Duration) {
    let fired = with(|c| {
        let limit = c.now.saturating_add(max).min(c.horizon);
        fire_next(c, limit)
    })
    .unwrap_or_default();
    for t in fired {
        t.unpark();
    }
}

/// A mutex with parking_lot's interface.
pub(crate) struct Mutex<T> {
    inner: shuttle::sync::Mutex<T>,
}

/// Its guard (`Condvar` takes it by `&mut`, as parking_lot's does).
pub(crate) struct MutexGuard<'a, T> {
    guard: Option<shuttle::sync::MutexGuard<'a, T>>,
    mutex: &'a shuttle::sync::Mutex<T>,
}

impl<T> Mutex<T> {
    pub(crate) fn new(v: T) -> Mutex<T> {
        Mutex {
            inner: shuttle::sync::Mutex::new(v),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        MutexGuard {
            guard: Some(self.inner.lock().expect("a thread panicked under the lock")),
            mutex: &self.inner,
        }
    }

    /// Takes the lock; the deadline is not modelled (only the live port's
    /// single-flight lock uses it, and the live port is not explored).
    pub(crate) fn try_lock_until(&self, _until: Instant) -> Option<MutexGuard<'_, T>> {
        Some(self.lock())
    }
}

impl<T> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.guard.as_ref().expect("held")
    }
}

impl<T> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.guard.as_mut().expect("held")
    }
}

/// A reader-writer lock with parking_lot's interface.
pub(crate) struct RwLock<T> {
    inner: shuttle::sync::RwLock<T>,
}

impl<T> RwLock<T> {
    pub(crate) fn new(v: T) -> RwLock<T> {
        RwLock {
            inner: shuttle::sync::RwLock::new(v),
        }
    }

    pub(crate) fn read(&self) -> shuttle::sync::RwLockReadGuard<'_, T> {
        self.inner.read().expect("a thread panicked under the lock")
    }

    pub(crate) fn write(&self) -> shuttle::sync::RwLockWriteGuard<'_, T> {
        self.inner
            .write()
            .expect("a thread panicked under the lock")
    }
}

/// Whether a timed wait ended at its deadline.
pub(crate) struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    pub(crate) fn timed_out(&self) -> bool {
        self.0
    }
}

/// A condition variable with parking_lot's interface, whose timed waits
/// time out on the virtual clock. `notify_one` wakes the longest waiter.
#[derive(Default)]
pub(crate) struct Condvar {
    /// Touched only between shuttle operations, so never contended.
    waiters: std::sync::Mutex<Vec<Arc<Waiter>>>,
}

impl Condvar {
    pub(crate) fn new() -> Condvar {
        Condvar::default()
    }

    pub(crate) fn wait<T>(&self, g: &mut MutexGuard<'_, T>) {
        self.wait_inner(g, None);
    }

    pub(crate) fn wait_until<T>(&self, g: &mut MutexGuard<'_, T>, t: Instant) -> WaitTimeoutResult {
        WaitTimeoutResult(self.wait_inner(g, Some(t)))
    }

    fn wait_inner<T>(&self, g: &mut MutexGuard<'_, T>, until: Option<Instant>) -> bool {
        let w = Arc::new(Waiter {
            thread: shuttle::thread::current(),
            state: AtomicU8::new(WAITING),
        });
        let due = with(|c| {
            let due = until.map(|t| offset(c, t));
            if due.is_some_and(|d| d <= c.now) {
                return true;
            }
            if let Some(d) = due {
                c.timers.push((d, w.clone()));
            }
            false
        });
        if due {
            return true;
        }
        self.waiters.lock().expect("uncontended").push(w.clone());
        deactivate();
        drop(g.guard.take());
        while w.state.load(Relaxed) == WAITING {
            shuttle::thread::park();
        }
        self.waiters
            .lock()
            .expect("uncontended")
            .retain(|x| !Arc::ptr_eq(x, &w));
        g.guard = Some(g.mutex.lock().expect("a thread panicked under the lock"));
        w.state.load(Relaxed) == TIMED_OUT
    }

    fn notify(&self, max: usize) -> usize {
        let mut woken = Vec::new();
        {
            let mut ws = self.waiters.lock().expect("uncontended");
            with(|c| {
                ws.retain(|w| {
                    if woken.len() < max && w.state.load(Relaxed) == WAITING {
                        w.state.store(NOTIFIED, Relaxed);
                        c.active += 1;
                        woken.push(w.thread.clone());
                        false
                    } else {
                        true
                    }
                })
            });
        }
        for t in &woken {
            t.unpark();
        }
        woken.len()
    }

    pub(crate) fn notify_all(&self) -> usize {
        self.notify(usize::MAX)
    }

    pub(crate) fn notify_one(&self) -> bool {
        self.notify(1) == 1
    }
}

/// Sleeps `d` of virtual time.
pub(crate) fn sleep(d: Duration) {
    let until = now() + d;
    let m = Mutex::new(());
    let cv = Condvar::new();
    let mut g = m.lock();
    while now() < until {
        cv.wait_until(&mut g, until);
    }
}

/// Threads with `std::thread`'s interface, counted by the clock.
pub(crate) mod thread {
    use super::*;

    struct Record {
        finished: AtomicBool,
        joiner: AtomicBool,
    }

    /// Counts the thread out when it ends (and its joiner back in).
    struct Exit(Arc<Record>);

    impl Drop for Exit {
        fn drop(&mut self) {
            self.0.finished.store(true, Relaxed);
            if self.0.joiner.load(Relaxed) {
                with(|c| c.active += 1);
            }
            deactivate();
        }
    }

    pub(crate) struct JoinHandle<T> {
        inner: shuttle::thread::JoinHandle<T>,
        rec: Arc<Record>,
    }

    impl<T> JoinHandle<T> {
        pub(crate) fn join(self) -> std::thread::Result<T> {
            if !self.rec.finished.load(Relaxed) {
                self.rec.joiner.store(true, Relaxed);
                deactivate();
            }
            self.inner.join()
        }

        #[allow(dead_code)] // std's JoinHandle has it; the core may call it
        pub(crate) fn thread(&self) -> &shuttle::thread::Thread {
            self.inner.thread()
        }

        /// A flag that turns true when the thread's function has returned.
        pub(crate) fn finished_flag(&self) -> impl Fn() -> bool + Send + Sync + 'static {
            let rec = self.rec.clone();
            move || rec.finished.load(Relaxed)
        }
    }

    pub(crate) fn spawn<F, T>(f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        Builder::new().spawn(f).expect("shuttle spawns never fail")
    }

    #[derive(Default)]
    pub(crate) struct Builder {
        name: Option<String>,
    }

    impl Builder {
        pub(crate) fn new() -> Builder {
            Builder::default()
        }

        pub(crate) fn name(mut self, name: String) -> Builder {
            self.name = Some(name);
            self
        }

        pub(crate) fn spawn<F, T>(self, f: F) -> std::io::Result<JoinHandle<T>>
        where
            F: FnOnce() -> T + Send + 'static,
            T: Send + 'static,
        {
            let rec = Arc::new(Record {
                finished: AtomicBool::new(false),
                joiner: AtomicBool::new(false),
            });
            with(|c| c.active += 1);
            let exit = Exit(rec.clone());
            let mut b = shuttle::thread::Builder::new();
            if let Some(n) = self.name {
                b = b.name(n);
            }
            let inner = b.spawn(move || {
                let _exit = exit;
                f()
            })?;
            Ok(JoinHandle { inner, rec })
        }
    }
}
