//! The write side of one link: what the send path needs from a socket.
//!
//! Each link gets its own [`Wire`], so everything a write leaves behind (the
//! send timeout in force on the socket) belongs to that link and can never
//! leak into the next one. The send path sees only this trait, which keeps
//! it testable with an in-memory link.

use std::io::{self, Write};
use std::net::TcpStream;
use std::time::Duration;

use parking_lot::Mutex;

use super::deadline::Deadline;

/// The write side of a link.
pub(crate) trait Wire: Send + Sync {
    /// Writes all of `buf` by `deadline`, adding what it wrote to `written`.
    /// Blocks (at most until the deadline); only the connection's sender
    /// thread calls it, for the writer role it holds.
    fn write_by(&self, buf: &[u8], written: &mut usize, deadline: Deadline) -> io::Result<()>;

    /// Writes what the socket takes at once, never waiting: `Ok(n)` with
    /// `n < buf.len()` when the socket's buffer is full (`n` may be 0).
    /// Where a write that never waits is not available, `Ok(0)`.
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;

    /// True if [`try_write`](Wire::try_write) can write at all on this platform.
    fn can_try_write(&self) -> bool;

    /// Shuts the link down both ways: wakes its reader and any blocked write.
    fn shutdown(&self);
}

/// A TCP link's write side.
pub(crate) struct TcpWire {
    stream: TcpStream,
    /// The send timeout in force on this socket (`None`: none set yet).
    timeout: Mutex<Option<Option<Duration>>>,
}

impl TcpWire {
    pub(crate) fn new(stream: TcpStream) -> TcpWire {
        TcpWire {
            stream,
            timeout: Mutex::new(None),
        }
    }
}

use crate::transport::DONTWAIT;

impl Wire for TcpWire {
    fn write_by(&self, mut buf: &[u8], written: &mut usize, deadline: Deadline) -> io::Result<()> {
        let mut cached = self.timeout.lock();
        while !buf.is_empty() {
            match deadline.remaining() {
                Some(left) if left.is_zero() => return Err(io::ErrorKind::TimedOut.into()),
                Some(left) => {
                    // Setting the timeout is a system call: the value in
                    // force is kept while it lies within [left - left/16,
                    // left], so a blocked write gives up at most 1/16 of
                    // the time left before the deadline, never after it.
                    let keep = cached
                        .flatten()
                        .is_some_and(|t| t <= left && t >= left - left / 16);
                    if !keep {
                        let t = (left - left / 32).max(Duration::from_micros(1));
                        self.stream.set_write_timeout(Some(t))?;
                        *cached = Some(Some(t));
                    }
                }
                None => {
                    if *cached != Some(None) {
                        self.stream.set_write_timeout(None)?;
                        *cached = Some(None);
                    }
                }
            }
            match (&self.stream).write(buf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    *written += n;
                    buf = &buf[n..];
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        let Some(flags) = DONTWAIT else {
            return Ok(0);
        };
        let sock = socket2::SockRef::from(&self.stream);
        let mut done = 0;
        while done < buf.len() {
            match sock.send_with_flags(&buf[done..], flags) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    fn can_try_write(&self) -> bool {
        DONTWAIT.is_some()
    }

    fn shutdown(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// True for the errors a write reports when its time ran out.
pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
