//! Device facade tests against the simulator: stage, camera, lasers, LED, filter wheel, system, settings and workflows.
//!
//! One test binary per subject: each module below is a former test file.

#[path = "../common/mod.rs"]
mod common;

mod camera;
mod illumination;
mod limits;
mod sections;
mod snapshot;
mod stage;
mod system;
mod util;
mod workflow;
