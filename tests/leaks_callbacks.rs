//! Resource accounting: closing a client from inside one of its own event
//! callbacks, while the callback holds a clone of the client, leaves no
//! thread, socket or client state behind. One test in this binary, so
//! nothing else runs beside it while it counts threads.

mod common;

use common::LONG;
use crossbeam_channel::bounded;
use flamingo_client::codec::{CommandCode, Message};
use flamingo_client::sim::{SimConfig, Simulator};
use flamingo_client::{ClientConfig, DisconnectReason};

#[test]
fn close_inside_a_callback_that_holds_the_client_leaks_nothing() {
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let base = common::proc_counts();
    for _ in 0..20 {
        let c = common::connect_registered(&sim, ClientConfig::default());
        let (tx, rx) = bounded(1);
        let held = c.clone();
        c.on_event(move |_| {
            held.close();
            let _ = tx.try_send(());
        })
        .unwrap();
        sim.broadcast(Message::new(CommandCode::SYSTEM_STATE_IDLE));
        rx.recv_timeout(LONG).unwrap();
        let e = c.on_event(|_| {}).unwrap_err();
        assert_eq!(e.disconnect_reason(), Some(DisconnectReason::ClosedByUser));
        drop(c);
    }
    common::wait_for_counts(base, "after closing from callbacks");
}
