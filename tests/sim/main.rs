//! Simulator tests: its protocol, faults, stage, live port, workflows and lifecycle.
//!
//! One test binary per subject: each module below is a former test file.

#[path = "../common/mod.rs"]
mod common;

mod faults;
mod lifecycle;
mod live;
mod protocol;
mod stage;
mod util;
mod workflow;
