//! Teardown of the callbacks' dispatcher thread: a callback registered while
//! the client closes is either refused or run and dropped by a thread that
//! the teardown joins, and every `close()`, concurrent ones included, returns
//! only once the callbacks (and what they captured) are gone.

use crate::common::LONG;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;
use flamingo_client::{Client, ClientConfig, EventKind};

/// Sets its flag when dropped: tells the test that a callback's captures
/// are gone.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A client that is never opened: its teardown still closes the event hub
/// and joins the dispatcher thread, without any network in the way.
fn unopened() -> Client {
    Client::new("127.0.0.1:9", ClientConfig::default())
}

/// `on_event` racing `close()`: once both returned, the callback was either
/// refused or registered and then dropped by the joined dispatcher thread.
/// A dispatcher thread started after the teardown joined (the race) would
/// drop it later, on a thread nobody joins.
#[test]
fn on_event_racing_close_never_leaves_a_thread_behind() {
    let mut registered = 0;
    for i in 0..3000 {
        let c = unopened();
        let dropped = Arc::new(AtomicBool::new(false));
        let barrier = Arc::new(Barrier::new(2));
        let adder = {
            let c = c.clone();
            let guard = DropFlag(dropped.clone());
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                c.on_event(move |_| {
                    let _ = &guard;
                })
                .is_ok()
            })
        };
        barrier.wait();
        c.close();
        let ok = adder.join().unwrap();
        registered += usize::from(ok);
        assert!(
            dropped.load(Ordering::SeqCst),
            "iteration {i}: a callback (registered: {ok}) outlived close()"
        );
        assert!(c.on_event(|_| {}).is_err(), "refused after close");
    }
    println!("on_event won the race {registered} times of 3000");
}

/// Two `close()` calls at once while a callback is still running (it blocks
/// on the final `Closed` event): neither returns before the callback has
/// returned and been dropped.
#[test]
fn a_second_concurrent_close_waits_for_the_callbacks() {
    for round in 0..3 {
        let c = unopened();
        let dropped = Arc::new(AtomicBool::new(false));
        let (inside_tx, inside_rx) = bounded(1);
        let (release_tx, release_rx) = bounded::<()>(1);
        let guard = DropFlag(dropped.clone());
        c.on_event(move |ev| {
            let _ = &guard;
            if matches!(ev.kind, EventKind::Closed { .. }) {
                let _ = inside_tx.send(());
                let _ = release_rx.recv_timeout(LONG);
            }
        })
        .unwrap();
        let (done_tx, done_rx) = bounded(2);
        let first = {
            let (c, done_tx, dropped) = (c.clone(), done_tx.clone(), dropped.clone());
            std::thread::spawn(move || {
                c.close();
                done_tx.send(dropped.load(Ordering::SeqCst)).unwrap();
            })
        };
        inside_rx
            .recv_timeout(LONG)
            .expect("the callback got Closed");
        let second = {
            let (c, done_tx, dropped) = (c.clone(), done_tx.clone(), dropped.clone());
            std::thread::spawn(move || {
                let t = Instant::now();
                c.close();
                done_tx.send(dropped.load(Ordering::SeqCst)).unwrap();
                t.elapsed()
            })
        };
        // Neither close may return while the callback runs. (A time bound
        // only to detect an early return; a correct close never returns here.)
        assert!(
            done_rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "round {round}: a close returned while a callback was still running"
        );
        release_tx.send(()).unwrap();
        for _ in 0..2 {
            let callbacks_gone = done_rx.recv_timeout(LONG).expect("close returns");
            assert!(
                callbacks_gone,
                "round {round}: close returned before the callbacks were dropped"
            );
        }
        first.join().unwrap();
        let took = second.join().unwrap();
        println!("round {round}: second close waited {took:?} for the callback");
    }
}
