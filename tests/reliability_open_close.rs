//! Reliability row 6 of issue 8 (see RELIABILITY.md): concurrent open() and
//! close() on one client make exactly one connection and one teardown, and
//! leave nothing behind. The only test in this binary, so the process-wide
//! thread and file-descriptor counts are not disturbed by other tests.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::{poll_until, proc_counts, thread_names};
use flamingo_client::codec::{CommandCode, Flags, Message, MESSAGE_LEN};
use flamingo_client::sim::{SimConfig, Simulator};
use flamingo_client::{Client, ClientConfig, ConnectionState, Error};

const LONG: Duration = Duration::from_secs(20);
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

/// Row 6. 16 threads open and close the same client at once, 200 times:
/// exactly one connection reaches the simulator and one teardown happens
/// each time; when the last close() returns, no client thread is left, and
/// once the simulator has seen the close, no socket either.
#[test]
fn r06_concurrent_open_and_close_make_one_connection_and_one_teardown() {
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let addr = sim.addr().to_string();
    fence(&sim);
    poll_until("the fence to close", LONG, || sim.open_connections() == 0);
    let base = proc_counts();
    let mut opened_ok = 0usize;
    for round in 0..ROUNDS {
        let before = sim.counters().connections;
        let c = Client::new(&addr, ClientConfig::default());
        let go = Arc::new(Barrier::new(16));
        let hs: Vec<_> = (0..16)
            .map(|_| {
                let (c, go) = (c.clone(), go.clone());
                std::thread::spawn(move || {
                    go.wait();
                    let r = c.open();
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
                Err(e) => panic!("round {round}: open failed with {e:?}"),
            }
        }
        assert!(oks >= 1, "round {round}: the first open succeeds");
        opened_ok += oks;
        // Every close() has returned: every thread it started is joined.
        assert_eq!(client_threads(), Vec::<String>::new(), "round {round}");
        assert!(matches!(c.state(), ConnectionState::Closed { .. }));
        assert_eq!(c.stats().teardowns, 1, "round {round}");
        fence(&sim);
        assert_eq!(
            sim.counters().connections,
            before + 2,
            "round {round}: exactly one client connection (plus the fence)"
        );
        poll_until("the simulator to see the close", LONG, || {
            sim.open_connections() == 0
        });
        // Before the handle is dropped: close() released the socket.
        if let (Some(base), Some(now)) = (base, proc_counts()) {
            assert_eq!(now.1, base.1, "round {round}: file descriptors");
        }
        drop(c);
    }
    common::wait_for_counts(base, "after 200 rounds");
    eprintln!(
        "r06: {ROUNDS} rounds x 16 threads: {ROUNDS} connections, {ROUNDS} teardowns, {opened_ok} successful open() calls"
    );
}
