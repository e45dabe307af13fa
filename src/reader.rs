//! The command-socket reader thread: the only code that reads the socket.
//!
//! It reads one message (and its additional data) at a time, gives it the
//! next sequence number, and either hands it to the waiting request or
//! publishes it as an event. It never blocks on anything but the socket:
//! reply channels have room for their one reply, event queues drop their
//! oldest entry when full, and no user code runs here.

use std::io::{self, BufReader, Read};
use std::net::TcpStream;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use crate::client::Shared;
use crate::codec::{hex_dump, FrameError, FrameReader};
use crate::Error;

/// Bytes the reader takes from the socket per read call. Whatever has
/// arrived (up to this) comes in one system call and the messages in it are
/// handled one by one; a read only blocks when nothing is buffered, so the
/// reader still never waits on anything but the socket.
const READ_BUFFER: usize = 64 * 1024;

/// Windows may not wake a blocked `recv` when another thread shuts the
/// socket down, so there the reader wakes every so often to check whether the
/// client is closing. Elsewhere it blocks on the socket with no timeout (an
/// idle client uses no CPU).
#[cfg(windows)]
const CLOSE_POLL: Option<std::time::Duration> = Some(std::time::Duration::from_millis(250));
#[cfg(not(windows))]
const CLOSE_POLL: Option<std::time::Duration> = None;

/// Retries read timeouts (only possible with `CLOSE_POLL`) until the client
/// closes, so the framing layer never sees them.
struct Patient<'a> {
    stream: &'a TcpStream,
    shared: &'a Shared,
}

impl Read for Patient<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match (&mut &*self.stream).read(buf) {
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) && !self.shared.is_closed() => {}
                other => return other,
            }
        }
    }
}

pub(crate) fn run(shared: Arc<Shared>, stream: TcpStream, link: u64) {
    let started = Instant::now();
    if CLOSE_POLL.is_some() {
        let _ = stream.set_read_timeout(CLOSE_POLL);
    }
    let patient = Patient {
        stream: &stream,
        shared: &shared,
    };
    let mut stream = BufReader::with_capacity(READ_BUFFER, patient);
    let mut framer = FrameReader::new(shared.config.additional_data_limit);
    let mut seen = framer.stats();
    let reason = loop {
        let msg = match framer.read_message(&mut stream) {
            Ok(m) => m,
            Err(e) => break e.to_string(),
        };
        let now = framer.stats();
        if now.bytes_skipped != seen.bytes_skipped {
            shared
                .counters
                .bytes_skipped
                .fetch_add(now.bytes_skipped - seen.bytes_skipped, Relaxed);
            shared
                .counters
                .resyncs
                .fetch_add(now.resyncs - seen.resyncs, Relaxed);
        }
        seen = now;
        let received_at = Instant::now();
        let seq = shared.next_seq();
        shared.counters.messages_received.fetch_add(1, Relaxed);
        let mut data = Vec::new();
        let mut failure = None;
        if msg.additional_data_len > 0 {
            match framer.read_additional(&mut stream, msg.additional_data_len, &mut data) {
                Ok(()) => {}
                Err(FrameError::TooLarge { size, limit }) => {
                    shared.counters.oversized.fetch_add(1, Relaxed);
                    log::warn!(
                        "{} announced {size} bytes of additional data, over the {limit}-byte limit; skipping it",
                        msg.code
                    );
                    failure = Some(Error::TooLarge {
                        what: "additional data",
                        size: size.into(),
                        limit: limit.into(),
                    });
                }
                Err(e) => break e.to_string(),
            }
        }
        if log::log_enabled!(log::Level::Debug) {
            log::debug!(
                "<- #{seq} {} status={} int0={} int1={} int2={} double={} data={}B",
                msg.code,
                msg.status,
                msg.int32_data0,
                msg.int32_data1,
                msg.int32_data2,
                msg.double_data,
                data.len()
            );
            log::trace!("<- #{seq} bytes:\n{}", hex_dump(&msg.to_bytes()));
        }
        shared.dispatch(msg, data, seq, received_at, failure);
    };
    let stillborn =
        framer.stats().messages == 0 && started.elapsed() < crate::supervisor::STILLBORN;
    shared.on_link_down(link, reason, stillborn);
}
