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
pub mod devices;
pub mod live;
#[cfg(feature = "sim")]
pub mod sim;

mod client;
mod config;
mod error;
mod reconnect;
mod transport;

pub(crate) use client::events;
pub use client::{
    CallbackId, Client, ConnectionState, Deadline, Event, EventKind, LatencySummary, Op, Reply,
    Stats, SubscriberStats, Subscription, Waker,
};
pub use codec::Axis;
pub use config::ClientConfig;
pub use error::{DisconnectReason, Error, ErrorKind, Result, TimeoutPhase};
pub use reconnect::{Delays, ReconnectPolicy};

// The README's examples are compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
