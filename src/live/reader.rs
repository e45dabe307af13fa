//! The live socket's reader thread: reads header + pixels into pooled
//! buffers, delivers frames latest-wins, and reconnects (with
//! [`ReconnectPolicy`](crate::ReconnectPolicy)) when the link is lost. The
//! socket itself is set up by [`crate::transport`].

use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::Mutex;

use super::config::LiveConfig;
use super::connect;
use super::frame::Frame;
use super::pool::Pools;
use crate::codec::{LiveHeader, LiveHeaderError, LIVE_HEADER_LEN};
use crate::transport::{self, SocketOptions};
use crate::Delays;
use crate::Error;

/// Counters shared by the reader and the handle.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) frames: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) bad_headers: AtomicU64,
    pub(crate) disconnects: AtomicU64,
    pub(crate) reconnects: AtomicU64,
}

/// Why the stream ended (kept so every waiter gets the same error).
#[derive(Clone, Debug)]
pub(crate) enum End {
    /// Closed by the user.
    Closed,
    Disconnected(String),
    Protocol(String),
    TooLarge {
        size: u64,
        limit: u64,
    },
}

impl End {
    pub(crate) fn to_error(&self) -> Error {
        match self {
            End::Closed => {
                Error::disconnected(crate::DisconnectReason::ClosedByUser, "live stream closed")
            }
            End::Disconnected(reason) => {
                Error::disconnected(crate::DisconnectReason::ClosedByPeer, reason.clone())
            }
            End::Protocol(detail) => Error::protocol(detail.clone()),
            End::TooLarge { size, limit } => Error::TooLarge {
                what: "live frame",
                size: *size,
                limit: *limit,
            },
        }
    }
}

/// State shared by the [`LiveStream`](super::LiveStream) handle and its reader thread.
pub(crate) struct Shared {
    pub(crate) addr: SocketAddr,
    pub(crate) config: LiveConfig,
    pub(crate) pools: Arc<Pools>,
    pub(crate) counters: Counters,
    pub(crate) latest: Mutex<Option<Frame>>,
    pub(crate) connected: AtomicBool,
    /// Set by `close()` before it shuts the socket down.
    pub(crate) closing: AtomicBool,
    /// A clone of the current socket, for `close()` to shut down; `None`
    /// while not connected. `close()` sets `closing` before locking this, and
    /// the reader checks `closing` under this lock before installing a new
    /// socket, so no socket escapes the shutdown.
    pub(crate) socket: Mutex<Option<TcpStream>>,
    pub(crate) ended: Mutex<Option<End>>,
    /// Disconnected by `close()`: wakes the reader from a backoff pause or
    /// a connection attempt in progress.
    pub(crate) wake: Receiver<()>,
}

impl Shared {
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// Waits `d`, or less if the stream is closing (`close()` disconnects
    /// `wake`). False when it is closing.
    fn pause(&self, d: Duration) -> bool {
        let _ = self.wake.recv_timeout(d);
        !self.is_closing()
    }

    /// Makes `stream` the current socket. `Ok(false)` if the stream is closing.
    fn install(&self, stream: &TcpStream) -> io::Result<bool> {
        let clone = stream.try_clone()?;
        let mut slot = self.socket.lock();
        if self.is_closing() {
            return Ok(false);
        }
        *slot = Some(clone);
        self.connected.store(true, Ordering::SeqCst);
        Ok(true)
    }

    fn uninstall(&self) {
        self.connected.store(false, Ordering::SeqCst);
        if let Some(s) = self.socket.lock().take() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// Connects to the live port, retrying refused connections (the instrument
/// may only listen once live view has started) with the pauses of
/// `config.reconnect_policy` until `deadline`.
pub(crate) fn connect_until(
    addr: SocketAddr,
    deadline: Instant,
    config: &LiveConfig,
) -> crate::Result<TcpStream> {
    let fail = |source: io::Error| Error::Connect {
        addr: addr.to_string(),
        source,
    };
    let options = SocketOptions::live(config.recv_buffer_bytes);
    let mut delays = config.reconnect_policy.delays();
    // The caller's own thread: nothing can close the stream yet.
    let sleep = |d: Duration| {
        thread::sleep(d);
        true
    };
    loop {
        match connect::open(addr, Some(deadline), options, sleep) {
            Ok(stream) => return Ok(stream),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                let left = deadline.saturating_duration_since(Instant::now());
                match delays.next() {
                    Some(pause) if pause < left => {
                        log::debug!("live: {addr} refused the connection, retrying");
                        thread::sleep(pause);
                    }
                    _ => return Err(fail(e)),
                }
            }
            Err(e) => return Err(fail(e)),
        }
    }
}

/// Why a connection stopped delivering frames.
enum Lost {
    /// The instrument closed the socket; `mid_frame` if inside a frame.
    Eof {
        mid_frame: bool,
    },
    Io(io::Error),
    /// The header was rejected; the raw bytes are kept for the log.
    BadHeader(LiveHeaderError, [u8; LIVE_HEADER_LEN]),
}

impl Lost {
    fn describe(&self, addr: SocketAddr) -> String {
        match self {
            Lost::Eof { mid_frame: false } => {
                format!("the instrument closed the live socket {addr}")
            }
            Lost::Eof { mid_frame: true } => {
                format!("the instrument closed the live socket {addr} in the middle of a frame")
            }
            Lost::Io(e) => format!("reading the live socket {addr} failed: {e}"),
            Lost::BadHeader(e, _) => format!("bad frame on the live socket {addr}: {e}"),
        }
    }

    fn into_end(self, addr: SocketAddr) -> End {
        match self {
            Lost::BadHeader(LiveHeaderError::TooLarge { image_size, limit }, _) => End::TooLarge {
                size: image_size.into(),
                limit: limit.into(),
            },
            Lost::BadHeader(e, _) => End::Protocol(e.to_string()),
            other => End::Disconnected(other.describe(addr)),
        }
    }
}

/// Reads until `buf` is full, with reads as large as the rest of `buf`.
/// `Ok(false)`: clean end of stream before the first byte.
fn fill(shared: &Shared, conn: &mut TcpStream, buf: &mut [u8]) -> Result<bool, Lost> {
    let mut got = 0;
    while got < buf.len() {
        match conn.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(Lost::Eof { mid_frame: true }),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Only with the CLOSE_POLL read timeout: keep reading unless closing.
            Err(e) if transport::is_poll_timeout(&e) && !shared.is_closing() => {}
            Err(e) => return Err(Lost::Io(e)),
        }
    }
    Ok(true)
}

/// Marks the stream ended even if the reader unwinds, so waiters get an
/// error that says what happened instead of "closed".
struct EndGuard<'a>(&'a Shared);

impl Drop for EndGuard<'_> {
    fn drop(&mut self) {
        self.0.uninstall();
        let mut ended = self.0.ended.lock();
        if ended.is_none() {
            *ended = Some(End::Disconnected(
                "the live reader thread failed unexpectedly (a bug: please report it)".into(),
            ));
        }
    }
}

/// The reader thread's body. Ends the stream (sets `ended`, drops `tx`) on
/// exit, also if it unwinds.
pub(crate) fn run(
    shared: Arc<Shared>,
    conn: TcpStream,
    tx: Sender<Frame>,
    own_rx: Receiver<Frame>,
) {
    let guard = EndGuard(&shared);
    let end = serve(&shared, conn, &tx, &own_rx);
    if !matches!(end, End::Closed) {
        log::warn!(
            "live: stream from {} ended: {}",
            shared.addr,
            end.to_error()
        );
    }
    *shared.ended.lock() = Some(end);
    drop(guard);
    // Dropping the senders now (before the thread ends) wakes waiters with
    // "disconnected"; they then read `ended`.
    drop(tx);
    drop(own_rx);
}

fn serve(
    shared: &Shared,
    mut conn: TcpStream,
    tx: &Sender<Frame>,
    own_rx: &Receiver<Frame>,
) -> End {
    // The pauses before the next reconnection attempts. `None`: the next
    // attempt is immediate (the stream is new, or its last link delivered
    // frames); the policy's pauses then grow while links keep failing.
    let mut delays: Option<Delays> = None;
    loop {
        let mut delivered = false;
        let lost = read_frames(shared, &mut conn, tx, own_rx, &mut delivered);
        shared.uninstall();
        drop(conn);
        if shared.is_closing() {
            return End::Closed;
        }
        if delivered {
            delays = None;
        }
        let c = &shared.counters;
        c.disconnects.fetch_add(1, Ordering::Relaxed);
        let what = lost.describe(shared.addr);
        if let Lost::BadHeader(_, raw) = &lost {
            c.bad_headers.fetch_add(1, Ordering::Relaxed);
            log::warn!("live: {what}; header bytes {raw:02x?}");
        } else {
            log::warn!("live: {what}");
        }
        if !shared.config.reconnect_on_error {
            return lost.into_end(shared.addr);
        }
        log::info!("live: reconnecting to {}", shared.addr);
        match reconnect(shared, &mut delays, &what) {
            Ok(new) => conn = new,
            Err(end) => return end,
        }
    }
}

fn read_frames(
    shared: &Shared,
    conn: &mut TcpStream,
    tx: &Sender<Frame>,
    own_rx: &Receiver<Frame>,
    delivered: &mut bool,
) -> Lost {
    let pools = &shared.pools;
    let c = &shared.counters;
    let limit = shared.config.max_image_bytes;
    let mut head = [0u8; LIVE_HEADER_LEN];
    loop {
        match fill(shared, conn, &mut head) {
            Ok(true) => {}
            Ok(false) => return Lost::Eof { mid_frame: false },
            Err(lost) => return lost,
        }
        let header = LiveHeader::decode(&head);
        let len = match header.validate(limit) {
            Ok(len) => len,
            Err(e) => return Lost::BadHeader(e, head),
        };
        let mut pixels = pools.bytes.take(len);
        match fill(shared, conn, &mut pixels) {
            Ok(true) => {}
            Ok(false) => {
                pools.bytes.put(pixels);
                return Lost::Eof { mid_frame: true };
            }
            Err(lost) => {
                pools.bytes.put(pixels);
                return lost;
            }
        }
        let sequence = c.frames.fetch_add(1, Ordering::Relaxed) + 1;
        c.bytes
            .fetch_add((LIVE_HEADER_LEN + len) as u64, Ordering::Relaxed);
        let frame = Frame::new(header, sequence, pixels, Some(pools.clone()));
        let previous = shared.latest.lock().replace(frame.clone());
        drop(previous); // outside the lock: may return buffers to the pool
        deliver(frame, tx, own_rx, &c.dropped);
        *delivered = true;
    }
}

/// Latest-wins delivery: never waits. When the queue is full the oldest
/// waiting frame is taken out (through the reader's own receiver) and counted.
fn deliver(mut frame: Frame, tx: &Sender<Frame>, own_rx: &Receiver<Frame>, dropped: &AtomicU64) {
    loop {
        match tx.try_send(frame) {
            Ok(()) => return,
            Err(TrySendError::Full(back)) => {
                frame = back;
                if own_rx.try_recv().is_ok() {
                    dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            // Cannot happen while we hold `own_rx`; nothing to deliver to.
            Err(TrySendError::Disconnected(_)) => return,
        }
    }
}

/// Reconnects to the same address, pausing between attempts as
/// [`LiveConfig::reconnect_policy`] says (the first attempt after a link that
/// delivered frames is immediate). Gives up after `reconnect_timeout`
/// without a connection, when the policy's attempts run out, or when the
/// stream is closed.
fn reconnect(shared: &Shared, delays: &mut Option<Delays>, why: &str) -> Result<TcpStream, End> {
    let config = &shared.config;
    // None: a timeout too large to represent, i.e. never give up.
    let give_up = Instant::now().checked_add(config.reconnect_timeout);
    let mut last_error: Option<io::Error> = None;
    let mut tried: u32 = 0;
    let failed = |what: String, last_error: &Option<io::Error>| {
        let detail = match last_error {
            Some(e) => format!(": last attempt: {e}"),
            None => String::new(),
        };
        Err(End::Disconnected(format!("{why}, and {what}{detail}")))
    };
    loop {
        let pause = match delays {
            None => {
                *delays = Some(config.reconnect_policy.delays());
                Duration::ZERO
            }
            Some(d) => match d.next() {
                Some(pause) => pause,
                None => {
                    return failed(format!("{tried} reconnection attempts failed"), &last_error);
                }
            },
        };
        if !pause.is_zero() {
            shared.pause(pause);
        }
        if shared.is_closing() {
            return Err(End::Closed);
        }
        let now = Instant::now();
        if give_up.is_some_and(|g| g <= now) {
            let secs = config.reconnect_timeout.as_secs_f64();
            return failed(format!("reconnecting failed for {secs:.1} s"), &last_error);
        }
        // One attempt: at most connect_timeout, and never past give_up.
        let attempt_deadline = match (now.checked_add(config.connect_timeout), give_up) {
            (Some(a), Some(g)) => Some(a.min(g)),
            (a, g) => a.or(g),
        };
        tried += 1;
        let attempt = connect::open(
            shared.addr,
            attempt_deadline,
            SocketOptions::live(config.recv_buffer_bytes),
            |d| shared.pause(d),
        )
        .and_then(|stream| Ok((shared.install(&stream)?, stream)));
        match attempt {
            Ok((false, _closing)) => return Err(End::Closed),
            Ok((true, stream)) => {
                shared.counters.reconnects.fetch_add(1, Ordering::Relaxed);
                log::info!("live: reconnected to {}", shared.addr);
                return Ok(stream);
            }
            Err(_) if shared.is_closing() => return Err(End::Closed),
            Err(e) => {
                log::debug!("live: reconnecting to {} failed: {e}", shared.addr);
                last_error = Some(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::Write;
    use std::net::TcpListener;

    fn test_shared(addr: SocketAddr) -> Shared {
        Shared {
            addr,
            config: LiveConfig::default(),
            pools: Arc::new(Pools::new(1)),
            counters: Counters::default(),
            latest: Mutex::new(None),
            connected: AtomicBool::new(true),
            closing: AtomicBool::new(false),
            socket: Mutex::new(None),
            ended: Mutex::new(None),
            wake: crossbeam_channel::never(),
        }
    }

    /// The Windows path: reads time out periodically; `fill` keeps its
    /// progress across timeouts and gives up only once the stream is closing.
    #[test]
    fn fill_survives_read_timeouts_until_closing() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut conn = TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let writer = thread::spawn(move || {
            server.write_all(&[1, 2, 3]).unwrap();
            // A time gap only, longer than the read timeout.
            thread::sleep(Duration::from_millis(50));
            server.write_all(&[4, 5, 6, 7, 8]).unwrap();
            server
        });
        let shared = test_shared(addr);
        let mut buf = [0u8; 8];
        assert!(matches!(fill(&shared, &mut conn, &mut buf), Ok(true)));
        assert_eq!(buf, [1, 2, 3, 4, 5, 6, 7, 8]);
        let _server = writer.join().unwrap();
        shared.closing.store(true, Ordering::SeqCst);
        assert!(matches!(
            fill(&shared, &mut conn, &mut buf),
            Err(Lost::Io(_))
        ));
    }
}
