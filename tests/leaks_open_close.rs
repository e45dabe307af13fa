//! Open and close racing: concurrent open() and
//! close() on one client make exactly one connection and one teardown, and
//! leave nothing behind. The only test in this binary, so the process-wide
//! thread and file-descriptor counts are not disturbed by other tests.

mod common;
use common::LONG;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};

use common::{poll_until, proc_counts, thread_names};
use flamingo_client::codec::{CommandCode, Flags, Message, MESSAGE_LEN};
use flamingo_client::sim::{SimConfig, Simulator};
use flamingo_client::{Client, ClientConfig, ConnectionState, Error};

const ROUNDS: usize = 200;

/// A raw connection that makes one echo round trip: once it is answered,
/// the simulator has accepted every connection made before it.
fn fence(sim: &Simulator) {
    let mut s = TcpStream::connect(sim.addr()).unwrap();
    s.set_read_timeout(Some(LONG)).unwrap();
    let m = Message::new(CommandCode(0x7777)).with_flags(Flags::TRIGGER_CALL_BACK);
    s.write_all(&m.to_bytes()).unwrap();
    let mut buf = [0u8; MESSAGE_LEN];
    s.read_exact(&mut buf).unwrap();
}

fn client_threads() -> Vec<String> {
    thread_names()
        .into_iter()
        .filter(|n| n.starts_with("flamingo-") && !n.starts_with("flamingo-sim"))
        .collect()
}

/// One round: 16 threads on a fresh client, each calling `open()` (unless
/// `closers_skip_open` and the thread is odd) and then `close()`. Returns
/// (successful opens, connections the simulator accepted).
fn round(
    sim: &Simulator,
    base: Option<(usize, usize)>,
    closers_skip_open: bool,
    n: usize,
) -> (usize, u64) {
    let before = sim.counters().connections;
    let c = Client::new(&sim.addr().to_string(), ClientConfig::default());
    let go = Arc::new(Barrier::new(16));
    let hs: Vec<_> = (0..16)
        .map(|i| {
            let (c, go) = (c.clone(), go.clone());
            std::thread::spawn(move || {
                go.wait();
                let r = if closers_skip_open && i % 2 == 1 {
                    Err(Error::disconnected(
                        flamingo_client::DisconnectReason::NotConnected,
                        "did not open",
                    ))
                } else {
                    c.open()
                };
                c.close();
                r
            })
        })
        .collect();
    let mut oks = 0;
    for h in hs {
        match h.join().unwrap() {
            Ok(()) => oks += 1,
            Err(Error::Disconnected { .. }) => {}
            Err(e) => panic!("round {n}: open failed with {e:?}"),
        }
    }
    // Every close() has returned: every thread it started is joined. (A
    // joined thread can stay listed in /proc for a moment while the kernel
    // reaps it: allow that, bounded.)
    poll_until("joined client threads to leave /proc", LONG, || {
        client_threads().is_empty()
    });
    assert!(matches!(c.state(), ConnectionState::Closed { .. }));
    assert_eq!(c.stats().teardowns, 1, "round {n}");
    fence(sim);
    let made = sim.counters().connections - before - 1;
    poll_until("the simulator to see the close", LONG, || {
        sim.open_connections() == 0
    });
    // Before the handle is dropped: close() released every socket. (The
    // simulator's connection threads close their copies as they exit, just
    // after it reports the connection gone: poll, bounded.)
    if let Some(base) = base {
        poll_until(
            "file descriptors back to the baseline after close()",
            LONG,
            || proc_counts().is_some_and(|now| now.1 == base.1),
        );
    }
    drop(c);
    (oks, made)
}

/// 16 threads open and close the same client at once, 200 times:
/// exactly one connection reaches the simulator and one teardown happens
/// each time; when the last close() returns, no client thread or socket is
/// left. Then 200 rounds where half the threads only close (closes landing
/// while the connection is being set up): at most one connection, exactly
/// one when an open() succeeded, and nothing left behind.
#[test]
fn concurrent_open_and_close_make_one_connection_and_one_teardown() {
    let sim = Simulator::start(SimConfig::default()).unwrap();
    fence(&sim);
    poll_until("the fence to close", LONG, || sim.open_connections() == 0);
    // The simulator's threads for that connection ("flamingo-sim-cmd1-r",
    // "-w") exit just after: the baseline is taken once they are gone.
    poll_until("the simulator's connection threads to exit", LONG, || {
        !thread_names()
            .iter()
            .any(|n| n.starts_with("flamingo-sim-cm"))
    });
    let base = proc_counts();
    let mut opened = 0;
    for n in 0..ROUNDS {
        let (oks, made) = round(&sim, base, false, n);
        assert!(oks >= 1, "round {n}: the first open() succeeds");
        assert_eq!(made, 1, "round {n}: exactly one connection");
        opened += oks;
    }
    let mut raced = 0;
    for n in 0..ROUNDS {
        let (oks, made) = round(&sim, base, true, n);
        assert!(made <= 1, "round {n}: {made} connections");
        if oks > 0 {
            assert_eq!(made, 1, "round {n}");
        } else if made == 1 {
            raced += 1; // connected, then found the client closed: undone
        }
    }
    common::wait_for_counts(base, "after 400 rounds");
    eprintln!(
        "{ROUNDS} rounds x 16 threads: {ROUNDS} connections, {ROUNDS} teardowns, {opened} successful open() calls; \
         {ROUNDS} rounds with 8 closers: {raced} connections undone because close() won"
    );
}
