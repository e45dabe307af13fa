// The crate documentation is the README: the guide, the device API, the
// command-line tool, the feature flags and how it works, with every example
// compiled and run as a doc test.
#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod codec;
pub mod devices;
pub mod live;
#[cfg(feature = "sim")]
pub mod sim;

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
