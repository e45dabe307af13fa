// The crate documentation is the README: the guide, the device API, the
// command-line tool, the feature flags and how it works, with every example
// compiled and run as a doc test.
#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod codec;
pub mod devices;
pub mod live;
#[cfg(feature = "record")]
pub mod record;
#[cfg(feature = "sim")]
pub mod sim;

mod client;
mod config;
mod error;
mod transport;

pub(crate) use client::events;
pub use client::{
    CallbackId, Client, ConnectionState, Deadline, Delays, Event, EventKind, LatencySummary, Op,
    ReconnectPolicy, Reply, Stats, SubscriberStats, Subscription, Waker,
};
pub use codec::Axis;
pub use config::ClientConfig;
pub use error::{DisconnectReason, Error, ErrorKind, Result, TimeoutPhase};
