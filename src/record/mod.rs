//! Recordings of the wire traffic between clients and the instrument: the
//! file format, a streaming reader and writer, the recording proxy, and
//! the report of what a recording shows about the protocol's open points.
//!
//! - [`Proxy`]: a transparent proxy on both ports that forwards every byte
//!   unchanged and records every command-port message (both directions)
//!   and every live frame header (optionally subsampled pixels), with
//!   timestamps and connection ids (`flamingo record`).
//! - [`RecordingWriter`] and [`RecordingReader`]: the versioned file
//!   format (protocol.md, section 14), one record at a time, in bounded
//!   memory; a truncated or damaged file gives a [`RecordError`] with the
//!   byte offset.
//! - [`Facts`]: what a recording shows about the points protocol.md lists
//!   as unconfirmed: which replies echo `int32Data0`, which codes arrive
//!   unsolicited and whether other connections get them too, how late
//!   replies come, whether unflagged messages are answered, unknown codes
//!   (`flamingo facts`).
//! - Replaying a recording into the simulator is
//!   [`Simulator::replay`](crate::sim::Simulator::replay) (with the `sim`
//!   feature; `flamingo replay`).
//!
//! Compiled with the `record` feature (the `sim` feature includes it).

mod facts;
mod format;
mod pairing;
mod proxy;
mod reader;
mod tee;
mod writer;

pub use facts::{CodeFacts, Facts, Latency, BROADCAST_WINDOW, LATE_AFTER, MAX_CODES};
pub use format::{
    subsampled_len, Direction, EndCause, Entry, Port, Record, FILE_HEADER_LEN, MAGIC, MAX_BODY_LEN,
    RECORD_HEADER_LEN, RECORD_TRAILER_LEN, VERSION,
};
#[cfg(feature = "sim")]
pub(crate) use pairing::{match_key, Pairing};
pub use proxy::{Proxy, ProxyConfig, ProxyStats};
pub use reader::{RecordError, RecordErrorKind, RecordingReader};
pub use writer::RecordingWriter;
