//! # flamingo-client
//!
//! A blocking, thread-based client for the Flamingo light-sheet microscope's
//! TCP protocol: 128-byte little-endian control messages on the command port,
//! camera frames on the port above it.
//!
//! One reader thread owns each socket's receive side and hands solicited
//! replies to their callers through per-request channels and everything else
//! to event subscribers; callers send under a mutex and block on their own
//! reply channel with a deadline. See `protocol.md` for the wire format and
//! the correlation rules.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod codec;
pub mod live;

mod client;
mod config;
mod correlate;
mod error;
mod events;
mod reader;
mod reconnect;
mod stats;
mod supervisor;
mod transport;

pub use client::{Client, ConnectionState, Pending, Reply};
pub use codec::Axis;
pub use config::ClientConfig;
pub use error::{Error, Result};
pub use events::{CallbackId, Event, EventKind, SubscriberStats, Subscription};
pub use reconnect::{Delays, ReconnectPolicy};
pub use stats::{LatencySummary, Stats};
