//! A blocking, thread-based client for the Flamingo light-sheet microscope.
//!
//! The microscope speaks TCP: 128-byte little-endian control messages on its
//! command port, camera frames on the port above it. This crate gives you a
//! [`Client`] that any number of threads may share, typed device facades
//! ([`devices`]) that turn one intent into the right message and the reply
//! into a typed value, the live image stream ([`live`]), and a loopback
//! simulator of the instrument (`sim`, with the feature `sim`) to develop and test
//! without hardware.
//!
//! The library is synchronous: no async runtime, a few threads of its own
//! per connection, and every call has a non-blocking `submit_*` form for GUI
//! threads. Its runtime dependencies are `crossbeam-channel`, `parking_lot`,
//! `byteorder`, `socket2` and `log`.
//!
//! # Connecting and driving the instrument
//!
//! ```no_run
//! # fn main() -> flamingo_client::Result<()> {
//! use flamingo_client::{Axis, Client, ClientConfig};
//! use std::time::Duration;
//!
//! // The microscope's command port; live images come from the port after it.
//! let client = Client::connect("10.0.0.5:53717", ClientConfig::default())?;
//!
//! let stage = client.stage();
//! let here = stage.positions()?;
//! let stop = stage.move_and_wait(Axis::Z, here.z_mm + 0.010)?; // race-free wait for the stop
//! println!("z stopped at {:.4} mm", stop.position);
//!
//! client.lasers().set_level_percent(2, 10.0)?;                 // returns the level read back
//! let frame = client.camera().snapshot()?;                      // 16-bit pixels, width, height
//! frame.save_tiff("snapshot.tif")?;                             // opens in Fiji / ImageJ
//!
//! let events = client.subscribe();                              // unsolicited messages
//! if let Ok(ev) = events.recv_timeout(Duration::from_secs(1)) {
//!     println!("{:?}", ev.kind);
//! }
//! client.close();                                               // also when the last clone drops
//! # Ok(()) }
//! ```
//!
//! The facades are made from the client: [`Client::stage`],
//! [`Client::camera`], [`Client::lasers`], [`Client::led`],
//! [`Client::filter_wheel`], [`Client::system`], [`Client::settings`] and
//! [`Client::workflows`]. Each checks its arguments before anything is sent
//! ([`Error::InvalidArgument`], nothing on the wire) and has one overall
//! deadline per call (`.timeout(d)`, default
//! [`ClientConfig::request_timeout`]). Raw messages are available too:
//! [`Client::request`], [`Client::send`] and the [`codec`] module.
//!
//! # Safety: the stage's soft limits
//!
//! [`SoftLimits`](devices::SoftLimits) holds the range the instrument's own
//! settings allow for each axis (and the camera's field of view, which places
//! the tiles of a tiled workflow). Read them once with
//! [`Settings::soft_limits`](devices::Settings::soft_limits), then opt in
//! where you move or acquire: [`Stage::soft_limits`](devices::Stage::soft_limits)
//! checks every move target, and
//! [`Workflows::soft_limits`](devices::Workflows::soft_limits) checks every
//! workflow's start, end, angles and tiles before it starts. A value outside
//! them is refused before anything is sent, with a message naming the axis,
//! the value and the limits. Every workflow start also checks the file
//! itself ([`Workflow::validate`](devices::Workflow::validate)); and
//! [`Workflows::check`](devices::Workflows::check) does both against the
//! instrument without starting anything. The `flamingo` command-line tool,
//! the Python package and the desktop viewer all use these checks.
//!
//! ```
//! # fn main() -> flamingo_client::Result<()> {
//! # let sim = flamingo_client::sim::Simulator::start(Default::default())?;
//! # let addr = sim.addr().to_string();
//! use flamingo_client::{Axis, Client, ClientConfig, Error};
//! use flamingo_client::devices::Workflow;
//!
//! let client = Client::connect(&addr, ClientConfig::default())?;
//! let limits = client.settings().soft_limits()?;                // z 11 to 25 mm here
//! let stage = client.stage().soft_limits(limits);
//! assert!(matches!(stage.move_to(Axis::Z, 5.0), Err(Error::InvalidArgument { .. })));
//!
//! let mut wf = Workflow::from_text(&String::from_utf8_lossy(include_bytes!("../fixtures/ZStack.txt")))?;
//! wf.set("End Position", "Y (mm)", "200")?;
//! let e = client.workflows().soft_limits(limits).start(&wf).unwrap_err();
//! assert!(e.to_string().contains("y 200 mm at the workflow's end position is outside"));
//! # Ok(()) }
//! ```
//!
//! # From a GUI thread
//!
//! Every operation has a `submit_*` form that only queues its messages and
//! returns an [`Op`]; poll it with [`Op::try_get`] once per frame. Events
//! are drained without blocking from a [`Subscription`] (`try_recv`), and [`Client::set_waker`]
//! wakes an event-driven toolkit whenever an operation completes or an
//! event arrives. Nothing on a GUI thread ever blocks.
//!
//! ```
//! # fn main() -> flamingo_client::Result<()> {
//! # let sim = flamingo_client::sim::Simulator::start(Default::default())?;
//! # let client = flamingo_client::Client::connect(&sim.addr().to_string(), Default::default())?;
//! use flamingo_client::Axis;
//!
//! let mut op = client.stage().submit_move_and_wait(Axis::X, 10.0)?; // returns at once
//! loop {
//!     // ... draw a frame ...
//!     if let Some(result) = op.try_get() {                          // never blocks
//!         println!("x stopped at {:.3} mm", result?.position);
//!         break;
//!     }
//! #   std::thread::sleep(std::time::Duration::from_millis(1));
//! }
//! # Ok(()) }
//! ```
//!
//! # Errors
//!
//! Every failure is an [`Error`] to match on (or its [`ErrorKind`]):
//! `Connect`, [`Timeout`](Error::Timeout) (with its [`TimeoutPhase`]),
//! [`Disconnected`](Error::Disconnected) (with its [`DisconnectReason`]),
//! `Refused` and `Busy` (the instrument's status), `Protocol`, `TooLarge`,
//! `InvalidArgument` and `Io`. Messages are written for the person at the
//! microscope.
//!
//! # How it works
//!
//! One connection thread is the only reader of the command socket; replies
//! carry no request id, so at most one request per reply code is on the wire
//! and a reply can only be its request's (others wait in the client, within
//! their deadlines). Late replies are discarded and counted, never handed to
//! another caller. Unsolicited messages go to bounded per-subscriber queues
//! that drop their oldest entry rather than block the reader, each with a
//! sequence number so "the stop after my move" never takes a stale event.
//! Live frames have their own socket and reader thread with pooled buffers.
//! Memory is bounded by [`ClientConfig`] whatever a peer claims, and
//! [`Client::close`] tears everything down once, promptly. The wire format,
//! the command catalogue and every correlation rule and limit are in
//! `protocol.md` at the root of the crate's source.
//!
//! # The simulator (feature `sim`)
//!
//! `sim::Simulator` serves both ports on 127.0.0.1 with the instrument's
//! behaviour as recorded from the real one (stage motion and limits, camera
//! and live frames, workflows with progress events, lasers, LED, filter
//! wheel) and injectable faults (`sim::Faults`: delays, lost replies,
//! refusals, torn messages, floods, a stalled reader...). The crate's own
//! tests, examples and doc tests use it. An application enables it with
//! `features = ["sim"]`; without the feature it is not compiled.
//!
//! ```
//! # fn main() -> flamingo_client::Result<()> {
//! use flamingo_client::sim::{SimConfig, Simulator};
//! use flamingo_client::{Client, ClientConfig};
//!
//! let sim = Simulator::start(SimConfig::default().image_size(64, 48))?;
//! let client = Client::connect(&sim.addr().to_string(), ClientConfig::default())?;
//! assert_eq!(client.camera().image_size()?.width, 64);
//! sim.update_faults(|f| f.error_state = true);               // rehearse a failure
//! assert_eq!(client.system().state()?, flamingo_client::devices::SystemState::Error);
//! # Ok(()) }
//! ```
//!
//! # Feature flags
//!
//! - `sim` (off by default): the `sim` module. Everything else is always
//!   there.
//!
//! # Beyond the library
//!
//! The source repository also holds the `flamingo` command-line tool (an
//! example of this crate: `cargo run --release --example flamingo -- demo`),
//! a desktop viewer and Python bindings built on this library; its README
//! describes them, and `BENCHMARKS.md` and `RELIABILITY.md` give the
//! measured figures.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

// The README's examples run as doc tests too (it is the repository's front
// page, not the API's).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

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
