//! Helpers shared by the `devices_*` tests (included with `#[path]`).
#![allow(dead_code)]

pub use crate::common::LONG;
use std::time::Duration;

use flamingo_client::codec::CommandCode;
use flamingo_client::sim::{Faults, SimConfig, Simulator};
use flamingo_client::{Client, ClientConfig, Error, EventKind};

/// Upper bound for any wait in these tests (a failure bound only).
/// Deadline for operations that are expected to time out.
pub const SHORT: Duration = Duration::from_millis(250);

/// A simulator with small images.
pub fn sim() -> Simulator {
    sim_with(base_config())
}

pub fn base_config() -> SimConfig {
    SimConfig::default().image_size(64, 48)
}

pub fn sim_with(cfg: SimConfig) -> Simulator {
    Simulator::start(cfg).expect("start the simulator")
}

/// A client whose default deadline is generous (only a failure bound).
pub fn connect(sim: &Simulator) -> Client {
    Client::connect(
        &sim.addr().to_string(),
        ClientConfig::default().request_timeout(LONG),
    )
    .expect("connect to the simulator")
}

pub fn fault(sim: &Simulator, f: impl FnOnce(&mut Faults)) {
    sim.update_faults(f);
}

pub fn never_answer(sim: &Simulator, code: CommandCode) {
    fault(sim, |f| {
        f.never_answer.insert(code);
    });
}

pub fn status_override(sim: &Simulator, code: CommandCode, status: u32) {
    fault(sim, |f| {
        f.status_override.insert(code, status);
    });
}

/// Stops the simulator and waits until the client has noticed.
pub fn disconnect(sim: &Simulator, client: &Client) {
    let events = client.subscribe();
    sim.stop();
    events
        .wait_for(
            |e| matches!(e.kind, EventKind::Disconnected { .. }),
            0,
            LONG,
        )
        .map(|_| ())
        .or_else(|e| if e.is_disconnected() { Ok(()) } else { Err(e) })
        .expect("the client notices the simulator stopped");
}

/// Runs `f`, which must fail with `InvalidArgument`, and checks that nothing
/// reached the simulator: a state query sent afterwards is the only new
/// message it received.
pub fn assert_invalid_and_nothing_sent<T: std::fmt::Debug>(
    sim: &Simulator,
    client: &Client,
    f: impl FnOnce() -> flamingo_client::Result<T>,
) {
    let before = sim.received().len();
    match f() {
        Err(Error::InvalidArgument { what }) => assert!(!what.is_empty()),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    client.system().state().expect("barrier query");
    let after = sim.received();
    let new: Vec<CommandCode> = after[before..].iter().map(|r| r.message.code).collect();
    assert_eq!(
        new,
        vec![CommandCode::SYSTEM_STATE_GET],
        "something was sent"
    );
}

pub fn assert_refused<T: std::fmt::Debug>(
    r: flamingo_client::Result<T>,
    code: CommandCode,
    status: u32,
) {
    match r {
        Err(Error::Refused { code: c, status: s }) => {
            assert_eq!((c, s), (code, status));
        }
        other => panic!("expected Refused({code}, {status}), got {other:?}"),
    }
}

pub fn assert_busy<T: std::fmt::Debug>(r: flamingo_client::Result<T>, code: CommandCode) {
    match r {
        Err(Error::Busy { code: c, status }) => {
            assert_eq!((c, status), (code, 1));
        }
        other => panic!("expected Busy({code}), got {other:?}"),
    }
}

pub fn assert_timeout<T: std::fmt::Debug>(r: flamingo_client::Result<T>) {
    match r {
        Err(e) if e.is_timeout() => {}
        other => panic!("expected Timeout, got {other:?}"),
    }
}

pub fn assert_disconnected<T: std::fmt::Debug>(r: flamingo_client::Result<T>) {
    match r {
        Err(e) if e.is_disconnected() => {}
        other => panic!("expected Disconnected, got {other:?}"),
    }
}
