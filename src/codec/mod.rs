//! The wire codec: pure, allocation-free encoding and decoding of the
//! Flamingo protocol, kept apart from all I/O (in the manner of `httparse`).
//!
//! - [`Message`]: the fixed 128-byte control message.
//! - [`CommandCode`] and [`CATALOGUE`]: every known code with its rules.
//! - [`Flags`]: the `cmdDataBits0` word.
//! - [`FrameReader`]: reads messages and their additional data from any
//!   [`std::io::Read`], resynchronising on bad markers.
//! - [`LiveHeader`]: the 40-byte header of a live image frame.

mod axis;
mod codes;
mod flags;
mod framing;
mod live;
mod message;

pub use axis::Axis;
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
