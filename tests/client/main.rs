//! Command-port client tests: correlation, deadlines, typed errors, reconnection, I/O faults and the contract under adversarial instruments, against loopback servers and the simulator.
//!
//! One test binary per subject: each module below is a former test file,
//! except `send_side`, the contracts of the send side.

#[path = "../common/mod.rs"]
mod common;

mod adversary;
mod adversary2;
mod adversary3;
mod contract;
mod core;
mod faults;
mod io;
mod reconnect;
mod send_side;
mod teardown;
