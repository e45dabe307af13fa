//! [`LiveStream`]: the handle owning the live socket and its reader thread.

use std::fmt;
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;

use super::config::LiveConfig;
use super::frame::Frame;
use super::pool::Pools;
use super::reader::{self, Counters, End, Shared};
use super::turn::Turns;
use crate::{Error, Result};

/// Counters of a [`LiveStream`], from [`LiveStream::stats`].
///
/// ```
/// use flamingo_client::live::LiveStats;
///
/// let s = LiveStats::default();
/// assert_eq!(s.frames, 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LiveStats {
    /// Complete frames received (including those later dropped).
    pub frames: u64,
    /// Bytes of complete frames received, headers included.
    pub bytes: u64,
    /// Frames dropped because the consumer did not take them before newer
    /// ones filled the queue.
    pub dropped: u64,
    /// Frame headers rejected (inconsistent size or over the limit).
    pub bad_headers: u64,
    /// Times a connection stopped delivering frames on its own (bad header,
    /// closed by the instrument, read error). Closing the stream is not counted.
    pub disconnects: u64,
    /// Successful reconnections after a disconnect.
    pub reconnects: u64,
    /// Raw pixel buffers allocated. Stays constant in steady state: buffers
    /// are reused through the pool.
    pub buffers_allocated: u64,
    /// `u16` pixel buffers allocated by [`Frame::pixels`]. Stays constant in
    /// steady state.
    pub pixel_buffers_allocated: u64,
}

/// The live image stream: one TCP connection to the live port and one reader
/// thread. See the [module documentation](crate::live) for the behaviour.
///
/// All methods take `&self`; the stream can be shared between threads (for
/// example in an `Arc`). Dropping it closes it (see [`close`](LiveStream::close)).
/// Frames stay valid after the stream is closed or dropped.
pub struct LiveStream {
    shared: Arc<Shared>,
    frames: Receiver<Frame>,
    /// The reader's handle; taken (and joined) once by `close()`. The lock
    /// also makes concurrent `close()` calls wait for the join.
    reader: Mutex<Option<JoinHandle<()>>>,
    /// Dropped by `close()` to wake the reader from a reconnection pause or attempt.
    wake: Mutex<Option<Sender<()>>>,
    /// One triggered frame (snapshot) at a time.
    pub(crate) turns: Turns,
}

impl LiveStream {
    /// Connects to the live port at `addr` and starts the reader thread.
    ///
    /// Refused connections are retried until `deadline`, with the pauses of
    /// [`LiveConfig::reconnect_policy`], because the instrument may only
    /// start listening after `LIVE_VIEW_START`. The socket gets
    /// `TCP_NODELAY`, TCP keepalive, a receive buffer of
    /// [`LiveConfig::recv_buffer_bytes`] and an abortive close (a reset, so
    /// the instrument's `send` never stalls on a closed live client).
    ///
    /// # Errors
    ///
    /// - [`Error::InvalidArgument`] for a bad `config` (for example `queue_depth` 0).
    /// - [`Error::Connect`] when no connection is made before `deadline`.
    /// - [`Error::Io`] if the reader thread cannot be started.
    ///
    /// ```no_run
    /// use flamingo_client::live::{LiveConfig, LiveStream};
    /// use std::time::{Duration, Instant};
    ///
    /// let addr = "127.0.0.1:53718".parse().unwrap();
    /// let live = LiveStream::connect(addr, LiveConfig::default(), Instant::now() + Duration::from_secs(2))?;
    /// assert!(live.is_connected());
    /// # Ok::<(), flamingo_client::Error>(())
    /// ```
    pub fn connect(addr: SocketAddr, config: LiveConfig, deadline: Instant) -> Result<LiveStream> {
        config.check()?;
        let conn = reader::connect_until(addr, deadline, &config)?;
        let clone = conn.try_clone()?;
        let (tx, rx) = bounded(config.queue_depth);
        let (wake_tx, wake_rx) = bounded(0);
        let pools = Arc::new(Pools::new(config.pool_buffers));
        let shared = Arc::new(Shared {
            addr,
            config,
            pools,
            counters: Counters::default(),
            latest: Mutex::new(None),
            connected: true.into(),
            closing: false.into(),
            socket: Mutex::new(Some(clone)),
            ended: Mutex::new(None),
            wake: wake_rx,
        });
        let own_rx = rx.clone();
        let for_reader = shared.clone();
        let handle = thread::Builder::new()
            .name("flamingo-live".into())
            .spawn(move || reader::run(for_reader, conn, tx, own_rx))
            .map_err(|e| {
                if let Some(s) = shared.socket.lock().take() {
                    let _ = s.shutdown(Shutdown::Both);
                }
                Error::Io(e)
            })?;
        log::debug!("live: connected to {addr}");
        Ok(LiveStream {
            shared,
            frames: rx,
            reader: Mutex::new(Some(handle)),
            wake: Mutex::new(Some(wake_tx)),
            turns: Turns::default(),
        })
    }

    /// The queue of frames, for `select!`, iteration or your own waiting.
    ///
    /// Bounded to [`LiveConfig::queue_depth`], latest-wins: when it is full,
    /// the reader drops the oldest waiting frame (counted in
    /// [`LiveStats::dropped`]), so a slow consumer always gets recent frames.
    /// The channel disconnects (after the frames still in it are taken) when
    /// the stream ends: closed, or failed for good (see
    /// [`error`](LiveStream::error)).
    ///
    /// ```no_run
    /// # let live: flamingo_client::live::LiveStream = unimplemented!();
    /// for frame in live.frames().iter().take(10) {
    ///     println!("frame {}", frame.frame_number());
    /// }
    /// ```
    pub fn frames(&self) -> &Receiver<Frame> {
        &self.frames
    }

    /// Waits up to `timeout` for the next frame in the queue.
    ///
    /// While the reader reconnects, this keeps waiting until the timeout.
    ///
    /// # Errors
    ///
    /// - [`Error::Timeout`] if no frame arrives in time.
    /// - [`Error::Disconnected`] with reason "live stream closed" once the
    ///   stream was closed and the queue is empty.
    /// - If the stream ended on its own: the error that ended it
    ///   ([`Error::Disconnected`] when reconnection failed or is disabled,
    ///   [`Error::Protocol`] or [`Error::TooLarge`] for a bad header with
    ///   [`LiveConfig::reconnect_on_error`] off).
    ///
    /// ```no_run
    /// # let live: flamingo_client::live::LiveStream = unimplemented!();
    /// use std::time::Duration;
    /// match live.next_frame(Duration::from_secs(1)) {
    ///     Ok(frame) => println!("got frame {}", frame.frame_number()),
    ///     Err(e) if e.is_timeout() => println!("no frame yet; is live view started?"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok::<(), flamingo_client::Error>(())
    /// ```
    pub fn next_frame(&self, timeout: Duration) -> Result<Frame> {
        match self.frames.recv_timeout(timeout) {
            Ok(frame) => Ok(frame),
            Err(RecvTimeoutError::Timeout) => Err(Error::timeout(
                crate::TimeoutPhase::Frame,
                "a live frame",
                timeout,
            )),
            Err(RecvTimeoutError::Disconnected) => Err(self.end_error()),
        }
    }

    /// Waits up to `timeout` for a frame whose [`Frame::sequence`] is greater
    /// than `sequence`, discarding older frames from the queue.
    ///
    /// Take `sequence` from [`stats().frames`](LiveStream::stats) just before
    /// triggering an image (for example sending `SNAPSHOT`), to get a frame
    /// taken after the trigger and not one that was already waiting.
    /// Errors as for [`next_frame`](LiveStream::next_frame).
    ///
    /// ```no_run
    /// # let live: flamingo_client::live::LiveStream = unimplemented!();
    /// use std::time::Duration;
    /// let mark = live.stats().frames;
    /// // ... send CAMERA_SNAPSHOT_GET on the command port ...
    /// let snapshot = live.next_frame_after(mark, Duration::from_secs(5))?;
    /// snapshot.save_tiff("snapshot.tif")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn next_frame_after(&self, sequence: u64, timeout: Duration) -> Result<Frame> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let got = match deadline {
                Some(d) => self.frames.recv_deadline(d),
                None => self
                    .frames
                    .recv()
                    .map_err(|_| RecvTimeoutError::Disconnected),
            };
            match got {
                Ok(frame) if frame.sequence() > sequence => return Ok(frame),
                Ok(_older) => {}
                Err(RecvTimeoutError::Timeout) => {
                    return Err(Error::timeout(
                        crate::TimeoutPhase::Frame,
                        format!("a live frame after frame #{sequence}"),
                        timeout,
                    ))
                }
                Err(RecvTimeoutError::Disconnected) => return Err(self.end_error()),
            }
        }
    }

    /// The newest frame received, whether or not it was taken from the queue;
    /// `None` before the first frame. Does not wait and does not consume:
    /// for a UI that just wants the current picture.
    ///
    /// ```no_run
    /// # let live: flamingo_client::live::LiveStream = unimplemented!();
    /// if let Some(frame) = live.latest_frame() {
    ///     println!("showing frame {}", frame.frame_number());
    /// }
    /// ```
    pub fn latest_frame(&self) -> Option<Frame> {
        self.shared.latest.lock().clone()
    }

    /// The stream's counters.
    pub fn stats(&self) -> LiveStats {
        let c = &self.shared.counters;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        LiveStats {
            frames: get(&c.frames),
            bytes: get(&c.bytes),
            dropped: get(&c.dropped),
            bad_headers: get(&c.bad_headers),
            disconnects: get(&c.disconnects),
            reconnects: get(&c.reconnects),
            buffers_allocated: self.shared.pools.bytes.allocated(),
            pixel_buffers_allocated: self.shared.pools.words.allocated(),
        }
    }

    /// True while the live socket is connected (false while reconnecting
    /// and after the stream ended).
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::SeqCst)
    }

    /// True once the reader has stopped: closed, or ended by an error.
    pub fn is_finished(&self) -> bool {
        self.shared.ended.lock().is_some()
    }

    /// The error that ended the stream on its own; `None` while it runs, and
    /// when it was ended by [`close`](LiveStream::close) rather than by a failure.
    pub fn error(&self) -> Option<Error> {
        match &*self.shared.ended.lock() {
            Some(End::Closed) | None => None,
            Some(end) => Some(end.to_error()),
        }
    }

    /// The live port address.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The settings the stream runs with.
    pub fn config(&self) -> &LiveConfig {
        &self.shared.config
    }

    /// Closes the live socket and joins the reader thread.
    ///
    /// Idempotent and callable from any thread; every call, concurrent ones
    /// included, returns only once the reader thread has ended. Returns
    /// promptly in every state: a read in progress is interrupted by
    /// shutting the socket down (on Windows, where shutdown does not wake a
    /// blocked read, within 20 ms), and
    /// a reconnection attempt or the pause before it ends at once (the
    /// reader connects without blocking and checks for the close between
    /// short waits). The socket is closed abortively
    /// (TCP reset), so an instrument still sending into it fails at once
    /// instead of stalling.
    /// Frames still in the queue can be taken afterwards; then
    /// [`next_frame`](LiveStream::next_frame) returns
    /// [`Error::Disconnected`] ("live stream closed").
    pub fn close(&self) {
        let mut reader = self.reader.lock();
        self.shared.closing.store(true, Ordering::SeqCst);
        if let Some(s) = self.shared.socket.lock().as_ref() {
            let _ = s.shutdown(Shutdown::Both);
        }
        drop(self.wake.lock().take());
        if let Some(handle) = reader.take() {
            if handle.thread().id() == thread::current().id() {
                return; // cannot join ourselves; the reader is exiting anyway
            }
            if handle.join().is_err() {
                log::error!("live: the reader thread panicked");
                let mut ended = self.shared.ended.lock();
                if ended.is_none() {
                    *ended = Some(End::Closed);
                }
            }
            log::debug!("live: stream from {} closed", self.shared.addr);
        }
    }

    fn end_error(&self) -> Error {
        match &*self.shared.ended.lock() {
            Some(end) => end.to_error(),
            None => {
                Error::disconnected(crate::DisconnectReason::ClosedByUser, "live stream closed")
            }
        }
    }
}

impl Drop for LiveStream {
    fn drop(&mut self) {
        self.close();
    }
}

impl fmt::Debug for LiveStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveStream")
            .field("addr", &self.shared.addr)
            .field("connected", &self.is_connected())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
