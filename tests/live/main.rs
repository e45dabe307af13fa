//! Live image port tests: the stream, its reader against a reference parser, reconnection, image files and display conversion.
//!
//! One test binary per subject: each module below is a former test file.

#[path = "../common/mod.rs"]
mod common;

mod client;
mod image_io;
mod imaging;
mod reader_props;
mod reconnect_policy;
mod stream;
mod teardown;
