//! The wire codec: encoding and decoding of the Flamingo protocol, with no
//! I/O of its own and no dependency on the rest of the crate (in the manner
//! of `httparse`). Messages and live headers encode to and decode from
//! fixed-size byte arrays without allocating (reading a message's text
//! allocates only to replace invalid UTF-8). [`FrameReader`] does framing
//! over any [`std::io::Read`] the caller supplies (a socket, a file, a byte
//! slice): it reads, but opens, configures and times nothing; it allocates
//! only for the additional data a message carries, into the caller's `Vec`.
//!
//! Each failure has the codec's own error type ([`FrameError`],
//! [`DecodeError`], [`TextError`], [`LiveHeaderError`], [`ParseAxisError`]);
//! the crate's error type converts from each of them (in `error.rs`, above
//! the codec), so `?` works in code that returns the crate's `Result`.
//!
//! - [`Message`]: the fixed 128-byte control message.
//! - [`CommandCode`] and [`CATALOGUE`]: every known code with its rules.
//! - [`Flags`]: the `cmdDataBits0` word.
//! - [`FrameReader`]: reads messages and their additional data from any
//!   [`std::io::Read`], resynchronising on bad markers.
//! - [`LiveHeader`]: the 40-byte header of a live image frame.
//! - [`Axis`]: the stage axes as numbered on the wire.

mod axis;
mod codes;
mod flags;
mod framing;
mod live;
mod message;

pub use axis::{Axis, ParseAxisError};
pub use codes::{
    CodeInfo, CommandCode, MatchKey, StatusClass, StatusPolicy, Subsystem, Unsolicited, CATALOGUE,
    STATUS_BUSY, STATUS_OK,
};
pub use flags::Flags;
pub use framing::{FrameError, FrameReader, FramingStats, DEFAULT_ADDITIONAL_DATA_LIMIT};
pub use live::{LiveHeader, LiveHeaderError, DEFAULT_MAX_IMAGE_BYTES, LIVE_HEADER_LEN};
pub use message::{
    hex_dump, offset, DecodeError, Message, Text, TextError, END_MARKER, MESSAGE_LEN, START_MARKER,
    TEXT_LEN,
};
