//! [`LiveConfig`]: limits and queue sizes of a [`LiveStream`](super::LiveStream).

use std::time::Duration;

use crate::codec::DEFAULT_MAX_IMAGE_BYTES;
use crate::ReconnectPolicy;

/// Settings of a [`LiveStream`](super::LiveStream).
///
/// Start from [`Default`] and change what you need with the `with_*`
/// builder methods:
///
/// ```
/// use flamingo_client::live::LiveConfig;
/// use std::time::Duration;
///
/// let config = LiveConfig::default()
///     .with_queue_depth(4)
///     .with_max_image_bytes(32 << 20)
///     .with_reconnect_timeout(Duration::from_secs(5));
/// assert_eq!(config.queue_depth, 4);
/// assert_eq!(config.pool_buffers, 4);
/// assert!(config.reconnect_on_error);
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct LiveConfig {
    /// Largest image (pixel bytes after the header) accepted from a frame
    /// header. A header claiming more is rejected before anything is
    /// allocated. Default [`DEFAULT_MAX_IMAGE_BYTES`] (64 MiB).
    pub max_image_bytes: u32,
    /// How many frames wait for the consumer in
    /// [`LiveStream::frames`](super::LiveStream::frames) at most. When the
    /// queue is full the oldest waiting frame is dropped (and counted in
    /// [`LiveStats::dropped`](super::LiveStats::dropped)) to make room for
    /// the newest. At least 1. Default 2.
    pub queue_depth: usize,
    /// How many idle buffers of each kind (raw bytes, converted pixels) are
    /// kept for reuse. Buffers beyond this are freed when their frame drops.
    /// Default 4.
    pub pool_buffers: usize,
    /// Time allowed for one connection attempt when the reader reconnects
    /// after losing the link. (The first connection is bounded by the deadline
    /// given to [`LiveStream::connect`](super::LiveStream::connect).)
    /// Default 2 s.
    pub connect_timeout: Duration,
    /// After a bad frame header or a lost link, reconnect the live socket to
    /// the same address (true, default) or end the stream with the error
    /// (false).
    pub reconnect_on_error: bool,
    /// Receive buffer (`SO_RCVBUF`) asked for on the live socket, in bytes;
    /// 0 leaves the operating system's default and its automatic tuning
    /// (Linux, Windows and macOS grow the receive window as the stream
    /// needs, beyond 1 MiB). Default 0: a fixed size turns Linux's tuning
    /// off, and a fixed 1 MiB (what the vendor client asks for) cost 10 to
    /// 40 % of the frame rate in `examples/bench` against the same reader
    /// without it. The OS may cap a fixed size (Linux: `net.core.rmem_max`).
    pub recv_buffer_bytes: usize,
    /// How long the reader keeps trying to reconnect after losing the link
    /// before it gives up and ends the stream with
    /// [`Error::Disconnected`](crate::Error::Disconnected). Default 30 s.
    pub reconnect_timeout: Duration,
    /// The pauses between connection attempts: between refused attempts in
    /// [`LiveStream::connect`](super::LiveStream::connect), and between
    /// reconnection attempts after the link is lost (the first of which is
    /// immediate when the lost link had delivered frames). Its
    /// `max_attempts`, if set, limits the attempts that follow a pause, and
    /// the stream ends with [`Error::Disconnected`](crate::Error::Disconnected)
    /// when they have failed. Default: 20 ms,
    /// doubling up to 1 s, ±20 % jitter, unlimited attempts (bounded by
    /// [`reconnect_timeout`](LiveConfig::reconnect_timeout)).
    pub reconnect_policy: ReconnectPolicy,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            max_image_bytes: DEFAULT_MAX_IMAGE_BYTES,
            queue_depth: 2,
            pool_buffers: 4,
            connect_timeout: Duration::from_secs(2),
            reconnect_on_error: true,
            recv_buffer_bytes: 0,
            reconnect_timeout: Duration::from_secs(30),
            reconnect_policy: ReconnectPolicy::default()
                .initial_delay(Duration::from_millis(20))
                .max_delay(Duration::from_secs(1)),
        }
    }
}

impl LiveConfig {
    /// Sets [`max_image_bytes`](LiveConfig::max_image_bytes).
    pub fn with_max_image_bytes(mut self, bytes: u32) -> Self {
        self.max_image_bytes = bytes;
        self
    }

    /// Sets [`queue_depth`](LiveConfig::queue_depth) (at least 1).
    pub fn with_queue_depth(mut self, frames: usize) -> Self {
        self.queue_depth = frames;
        self
    }

    /// Sets [`pool_buffers`](LiveConfig::pool_buffers).
    pub fn with_pool_buffers(mut self, buffers: usize) -> Self {
        self.pool_buffers = buffers;
        self
    }

    /// Sets [`connect_timeout`](LiveConfig::connect_timeout).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`reconnect_on_error`](LiveConfig::reconnect_on_error).
    pub fn with_reconnect_on_error(mut self, reconnect: bool) -> Self {
        self.reconnect_on_error = reconnect;
        self
    }

    /// Sets [`recv_buffer_bytes`](LiveConfig::recv_buffer_bytes).
    pub fn with_recv_buffer_bytes(mut self, bytes: usize) -> Self {
        self.recv_buffer_bytes = bytes;
        self
    }

    /// Sets [`reconnect_timeout`](LiveConfig::reconnect_timeout).
    pub fn with_reconnect_timeout(mut self, timeout: Duration) -> Self {
        self.reconnect_timeout = timeout;
        self
    }

    /// Sets [`reconnect_policy`](LiveConfig::reconnect_policy).
    pub fn with_reconnect_policy(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect_policy = policy;
        self
    }

    /// Checks the settings; called by [`LiveStream::connect`](super::LiveStream::connect).
    pub(crate) fn check(&self) -> crate::Result<()> {
        if self.queue_depth == 0 {
            return Err(crate::Error::invalid(
                "LiveConfig::queue_depth must be at least 1",
            ));
        }
        if self.connect_timeout.is_zero() {
            return Err(crate::Error::invalid(
                "LiveConfig::connect_timeout must be longer than zero",
            ));
        }
        Ok(())
    }
}
