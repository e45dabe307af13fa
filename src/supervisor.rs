//! The reconnection supervisor: one thread per client at most, started when
//! the link breaks (if the config has a [`ReconnectPolicy`](crate::ReconnectPolicy)).
//!
//! It waits the policy's delay (interruptible by `close()`), tries to
//! connect, and repeats until it succeeds or the policy runs out; then it
//! closes the client for good. Attempts never overlap: there is one
//! supervisor, and it holds the client's connect lock while connecting.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use crate::client::{ConnectionState, Shared};
use crate::events::{Event, EventKind};

#[derive(Default)]
struct State {
    handle: Option<JoinHandle<()>>,
    /// A reconnect has been requested and not started yet.
    needed: bool,
    /// A reconnect cycle is under way.
    running: bool,
    /// close() asked the backoff sleep to end.
    wake: bool,
    /// The link that broke never delivered a message and lived less than
    /// [`STILLBORN`]: continue the previous attempt sequence (its attempt
    /// failed) instead of starting a new one.
    continue_backoff: bool,
}

/// A link that breaks sooner than this without delivering a single message
/// counts as a failed attempt: a server that accepts and closes at once
/// must not reset the backoff and the attempt count every time.
pub(crate) const STILLBORN: std::time::Duration = std::time::Duration::from_secs(2);

/// The supervisor's slot in the client's shared state.
///
/// The thread is started on the first link loss and then stays, blocked on
/// a condition variable (no CPU) until the next loss or close. A loss is
/// recorded in `needed` under the lock, so it is never missed, even if it
/// happens while the previous cycle is still finishing.
#[derive(Default)]
pub(crate) struct SupervisorSlot {
    state: Mutex<State>,
    cv: Condvar,
}

impl SupervisorSlot {
    /// True while a reconnect is requested or in progress (requests wait for it).
    pub fn active(&self) -> bool {
        let st = self.state.lock();
        st.needed || st.running
    }

    /// Records that a reconnect is needed. Called before the old link is
    /// cleared, so no request sees a gap.
    pub fn mark_needed(&self, stillborn: bool) {
        let mut st = self.state.lock();
        st.needed = true;
        st.continue_backoff = stillborn;
    }

    /// Interrupts a backoff sleep and an idle wait (close() calls this).
    pub fn wake(&self) {
        self.state.lock().wake = true;
        self.cv.notify_all();
    }

    /// Joins the supervisor thread unless called from it.
    pub fn join(&self) {
        let handle = self.state.lock().handle.take();
        if let Some(h) = handle {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }

    /// Sleeps until `until`, or until woken by close(). Returns true if closed.
    fn backoff(&self, until: Instant, shared: &Shared) -> bool {
        let mut st = self.state.lock();
        while !st.wake && !shared.is_closed() {
            if self.cv.wait_until(&mut st, until).timed_out() {
                break;
            }
        }
        st.wake = false;
        shared.is_closed()
    }

    /// Blocks until a reconnect is needed (`Some(continue_backoff)`) or the
    /// client closes (`None`).
    fn next_cycle(&self, shared: &Shared) -> Option<bool> {
        let mut st = self.state.lock();
        loop {
            if shared.is_closed() {
                st.needed = false;
                st.running = false;
                return None;
            }
            if st.needed {
                st.needed = false;
                st.running = true;
                return Some(std::mem::take(&mut st.continue_backoff));
            }
            self.cv.wait(&mut st);
        }
    }

    fn cycle_done(&self) {
        self.state.lock().running = false;
    }
}

/// Starts the supervisor thread if it is not running, and wakes it for the
/// reconnect recorded by [`SupervisorSlot::mark_needed`]. Returns false if
/// the thread could not be started.
pub(crate) fn request(shared: &Arc<Shared>) -> bool {
    let slot = &shared.supervisor;
    let mut st = slot.state.lock();
    if st.handle.is_none() {
        let s = shared.clone();
        match std::thread::Builder::new()
            .name("flamingo-reconnect".into())
            .spawn(move || supervise(s))
        {
            Ok(h) => st.handle = Some(h),
            Err(e) => {
                log::error!("cannot start the reconnect thread: {e}");
                st.needed = false;
                return false;
            }
        }
    }
    slot.cv.notify_all();
    true
}

fn supervise(shared: Arc<Shared>) {
    let policy = shared
        .config
        .reconnect
        .clone()
        .expect("supervisor started without a policy");
    let slot = &shared.supervisor;
    let mut delays = policy.delays();
    let mut attempts = 0u32;
    let mut last = String::from("no attempt made");
    while let Some(continue_backoff) = slot.next_cycle(&shared) {
        if continue_backoff {
            log::warn!(
                "the link made by reconnect attempt {attempts} broke at once without a message; counting it as failed"
            );
        } else {
            delays = policy.delays();
            attempts = 0;
            last = String::from("no attempt made");
        }
        let mut connected = false;
        for delay in delays.by_ref() {
            attempts += 1;
            shared.set_state(ConnectionState::Reconnecting { attempt: attempts });
            if slot.backoff(Instant::now() + delay, &shared) {
                slot.cycle_done();
                return;
            }
            shared.counters.reconnect_attempts.fetch_add(1, Relaxed);
            shared.hub.publish(Event::connection(
                shared.next_seq(),
                EventKind::Reconnecting { attempt: attempts },
            ));
            log::info!("reconnect attempt {attempts} to {}", shared.addr);
            match shared.reconnect_once(attempts) {
                Ok(()) => {
                    shared.counters.reconnects.fetch_add(1, Relaxed);
                    connected = true;
                    break;
                }
                Err(e) => {
                    if shared.is_closed() {
                        slot.cycle_done();
                        return;
                    }
                    last = e.to_string();
                    log::warn!("reconnect attempt {attempts} failed: {last}");
                    shared.set_last_error(last.clone());
                }
            }
        }
        slot.cycle_done();
        shared.notify_link_changed();
        if !connected {
            shared.finish(format!(
                "gave up reconnecting to {} after {attempts} attempts; last error: {last}",
                shared.addr
            ));
            return;
        }
    }
}
