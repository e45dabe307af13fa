//! Command-port client tests: correlation, deadlines, typed errors, reconnection, I/O faults and the contract under adversarial instruments, against loopback servers and the simulator.
//!
//! One test binary per subject: each module below is a former test file.

#[path = "../common/mod.rs"]
mod common;

mod contract;
mod core;
mod faults;
mod io;
mod reconnect;
mod teardown;
