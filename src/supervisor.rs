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

#[derive(Default)]
struct State {
    handle: Option<JoinHandle<()>>,
    running: bool,
    wake: bool,
}

/// The supervisor's slot in the client's shared state.
#[derive(Default)]
pub(crate) struct SupervisorSlot {
    state: Mutex<State>,
    cv: Condvar,
}

impl SupervisorSlot {
    /// True while a reconnect is in progress (requests wait for it).
    pub fn active(&self) -> bool {
        self.state.lock().running
    }

    /// Marks a reconnect as in progress, before the old link is cleared, so
    /// no request sees a gap. Returns false if one already is.
    pub fn claim(&self) -> bool {
        let mut st = self.state.lock();
        if st.running {
            return false;
        }
        st.running = true;
        st.wake = false;
        true
    }

    fn release(&self) {
        self.state.lock().running = false;
    }

    /// Interrupts a backoff sleep (close() calls this).
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

    /// Sleeps until `until`, or until woken. Returns true if woken.
    fn sleep_until(&self, until: Instant, shared: &Shared) -> bool {
        let mut st = self.state.lock();
        while !st.wake && !shared.is_closed() {
            if self.cv.wait_until(&mut st, until).timed_out() {
                break;
            }
        }
        std::mem::take(&mut st.wake) || shared.is_closed()
    }
}

/// Spawns the supervisor thread after a successful [`SupervisorSlot::claim`].
/// Returns false if the thread could not be started.
pub(crate) fn spawn(shared: &Arc<Shared>) -> bool {
    let slot = &shared.supervisor;
    let old = slot.state.lock().handle.take();
    if let Some(h) = old {
        // A previous supervisor has released the slot and is exiting.
        if h.thread().id() != std::thread::current().id() {
            let _ = h.join();
        }
    }
    let s = shared.clone();
    match std::thread::Builder::new()
        .name("flamingo-reconnect".into())
        .spawn(move || supervise(s))
    {
        Ok(h) => {
            slot.state.lock().handle = Some(h);
            true
        }
        Err(e) => {
            log::error!("cannot start the reconnect thread: {e}");
            slot.release();
            false
        }
    }
}

fn supervise(shared: Arc<Shared>) {
    let policy = shared
        .config
        .reconnect
        .clone()
        .expect("supervisor started without a policy");
    let slot = &shared.supervisor;
    let mut last = String::from("no attempt made");
    let mut attempts = 0u32;
    for delay in policy.delays() {
        attempts += 1;
        shared.set_state(ConnectionState::Reconnecting { attempt: attempts });
        if slot.sleep_until(Instant::now() + delay, &shared) && shared.is_closed() {
            slot.release();
            return;
        }
        shared.counters.reconnect_attempts.fetch_add(1, Relaxed);
        log::info!("reconnect attempt {attempts} to {}", shared.addr);
        match shared.reconnect_once(attempts) {
            Ok(()) => {
                shared.counters.reconnects.fetch_add(1, Relaxed);
                slot.release();
                shared.notify_link_changed();
                return;
            }
            Err(e) => {
                if shared.is_closed() {
                    slot.release();
                    return;
                }
                last = e.to_string();
                log::warn!("reconnect attempt {attempts} failed: {last}");
                shared.set_last_error(last.clone());
            }
        }
    }
    slot.release();
    shared.finish(format!(
        "gave up reconnecting to {} after {attempts} attempts; last error: {last}",
        shared.addr
    ));
}
