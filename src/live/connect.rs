//! Opening the live socket so that `close()` can interrupt it.
//!
//! A blocking connect cannot be cancelled, and a connect to an instrument
//! that does not answer takes the whole [`LiveConfig::connect_timeout`]
//! (2 s by default): `close()`, which joins the reader, would wait for it.
//! So the socket connects in non-blocking mode and the attempt is checked
//! between short pauses; the reader's pauses end at once when the stream
//! is closed.
//!
//! [`LiveConfig::connect_timeout`]: super::LiveConfig::connect_timeout

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use socket2::{SockAddr, Socket};

use crate::transport::{self, SocketOptions};

/// The longest pause between two checks of a connect in progress.
const MAX_POLL: Duration = Duration::from_millis(5);

/// The error of an attempt ended because the stream is closing.
pub(crate) fn closing_error() -> io::Error {
    io::Error::new(io::ErrorKind::Interrupted, "the live stream was closed")
}

/// One connection attempt to `addr` with `options`, giving up at `deadline`
/// (`None`: when the OS does). Between checks it calls `pause` with the time
/// to wait; `pause` returns false to abandon the attempt (the stream is
/// closing), which then fails with [`closing_error`]. On failure nothing
/// stays open.
pub(crate) fn open(
    addr: SocketAddr,
    deadline: Option<Instant>,
    options: SocketOptions,
    mut pause: impl FnMut(Duration) -> bool,
) -> io::Result<TcpStream> {
    if deadline.is_some_and(|d| d <= Instant::now()) {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the connection deadline passed",
        ));
    }
    let socket = transport::new_socket(addr, options)?;
    socket.set_nonblocking(true)?;
    match socket.connect(&SockAddr::from(addr)) {
        Ok(()) => {}
        Err(e) if transport::connect_in_progress(&e) => {
            wait_connected(&socket, deadline, &mut pause)?
        }
        Err(e) => return Err(e),
    }
    socket.set_nonblocking(false)?;
    transport::finish(socket, options)
}

/// Waits for a non-blocking connect to finish, with pauses that grow from
/// 50 µs to [`MAX_POLL`] (never past `deadline`).
fn wait_connected(
    socket: &Socket,
    deadline: Option<Instant>,
    pause: &mut impl FnMut(Duration) -> bool,
) -> io::Result<()> {
    let mut next = Duration::from_micros(50);
    loop {
        if let Some(e) = socket.take_error()? {
            return Err(e);
        }
        if socket.peer_addr().is_ok() {
            return Ok(());
        }
        let now = Instant::now();
        let wait = match deadline {
            Some(d) if d <= now => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the connection attempt timed out",
                ))
            }
            Some(d) => next.min(d - now),
            None => next,
        };
        if !pause(wait) {
            return Err(closing_error());
        }
        next = (next * 2).min(MAX_POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn sleep(d: Duration) -> bool {
        std::thread::sleep(d);
        true
    }

    #[test]
    fn connects_with_the_live_options() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let s = open(addr, Some(deadline), SocketOptions::live(0), sleep).unwrap();
        assert!(s.nodelay().unwrap());
        assert_eq!(s.read_timeout().unwrap(), transport::CLOSE_POLL);
        let sock = socket2::SockRef::from(&s);
        assert_eq!(sock.linger().unwrap(), Some(Duration::ZERO));
    }

    #[test]
    fn refused_is_reported_as_refused() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let e = open(addr, None, SocketOptions::live(0), sleep).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
    }

    #[test]
    fn passed_deadline_is_a_timeout() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let e = open(
            l.local_addr().unwrap(),
            Some(Instant::now()),
            SocketOptions::live(0),
            sleep,
        )
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }
}
