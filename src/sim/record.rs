//! What the simulator observed: [`Received`] messages and [`SimCounters`].

use std::time::{Duration, Instant};

use crate::codec::Message;

/// One message the simulator received on a command connection.
#[derive(Clone, Debug)]
pub struct Received {
    /// The 128-byte message.
    pub message: Message,
    /// Its additional data (empty if `additional_data_len` was 0).
    pub data: Vec<u8>,
    /// When the message (and its additional data) had been read.
    pub at: Instant,
    /// Which command connection it came on (1 for the first accepted, then 2...).
    pub connection: u64,
}

/// Counters of a [`Simulator`](super::Simulator), read with
/// [`Simulator::counters`](super::Simulator::counters).
///
/// `replies_sent`, `events_sent` and the fault counters are updated before
/// the bytes concerned are written, so a client that has read a message (or
/// seen a fault) always finds it counted; a message whose write then fails
/// stays counted. `bytes_sent`, the frame counters and the write-block
/// maxima are updated after each write returns. `faults_injected` is the
/// total of the fault counters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SimCounters {
    /// Command connections accepted.
    pub connections: u64,
    /// Live connections accepted.
    pub live_connections: u64,
    /// Messages received on command connections.
    pub messages_received: u64,
    /// Additional-data bytes received.
    pub additional_bytes_received: u64,
    /// Client messages that broke the protocol (an additional-data length
    /// above the limit, bad markers skipped); the connection is closed for
    /// oversize data.
    pub protocol_errors: u64,
    /// Replies written.
    pub replies_sent: u64,
    /// Unsolicited messages written (a broadcast to 3 clients counts 3).
    pub events_sent: u64,
    /// Bytes written on command connections (messages, additional data, garbage).
    pub bytes_sent: u64,
    /// Live frames written (including a frame with a bad header).
    pub frames_sent: u64,
    /// Live frames dropped because no live client was connected (or its socket failed).
    pub frames_dropped: u64,
    /// Stage moves started (a home starts one per axis).
    pub moves: u64,
    /// Workflows accepted and started.
    pub workflows_started: u64,
    /// Workflows that played every plane.
    pub workflows_completed: u64,
    /// Workflows ended early by `CAMERA_WORK_FLOW_STOP`.
    pub workflows_stopped: u64,
    /// Total of all fault counters below.
    pub faults_injected: u64,
    /// Replies delayed by `Faults::delay`.
    pub delayed_replies: u64,
    /// Replies sent late by `Faults::answer_late`.
    pub late_replies: u64,
    /// Replies suppressed by `Faults::never_answer`.
    pub suppressed_replies: u64,
    /// Replies whose status was replaced by `Faults::status_override`.
    pub status_overrides: u64,
    /// Messages written in fragments (`Faults::fragment_writes`).
    pub fragmented_messages: u64,
    /// Garbage insertions (`Faults::garbage_between`).
    pub garbage_insertions: u64,
    /// Garbage bytes written.
    pub garbage_bytes: u64,
    /// Connections closed by `Faults::close_after_messages`.
    pub closed_after_messages: u64,
    /// Connections closed in the middle of a reply (`Faults::close_mid_message`).
    pub closed_mid_message: u64,
    /// Replies with an absurd additional-data length.
    pub absurd_lengths: u64,
    /// Additional-data payloads trickled.
    pub trickled_payloads: u64,
    /// Live frames sent with a bad header.
    pub bad_live_headers: u64,
    /// Unsolicited flood messages queued (per client).
    pub flood_messages: u64,
    /// Times a connection stopped reading (`Faults::stop_reading`).
    pub stop_reading_pauses: u64,
    /// State replies that reported an error because of `Faults::error_state`.
    pub error_state_replies: u64,
    /// The longest time a single write to a command client blocked: small
    /// when the client keeps reading.
    pub max_write_block: Duration,
    /// The longest time a single write of a live frame blocked.
    pub max_live_write_block: Duration,
}
