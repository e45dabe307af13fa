//! Socket set-up for both ports, with socket2, set portably (Linux, macOS,
//! Windows): connect with a deadline, `TCP_NODELAY`, keepalive, receive
//! buffer size, linger, and the read timeout that Windows needs for a
//! blocked reader to notice a close ([`CLOSE_POLL`]).
//!
//! The command port and the live port differ only in their
//! [`SocketOptions`]: [`SocketOptions::command`] and [`SocketOptions::live`].

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;
#[cfg(test)]
use std::time::Instant;

#[cfg(test)]
use socket2::SockAddr;
use socket2::{Domain, Protocol, Socket, TcpKeepalive, Type};

use crate::{Error, Result};

/// Receive buffer requested for the command socket, and the live socket's
/// default (1 MiB, as the vendor client uses): the instrument drops the link
/// if its writes stall, so give it room.
pub(crate) const RECV_BUFFER: usize = 1024 * 1024;

/// Windows may not wake a `recv` blocked in one thread when another thread
/// shuts the socket down (only closing the last handle does), so there a
/// socket's reader reads with this timeout and checks between reads whether
/// its owner is closing. Elsewhere readers block with no timeout (an idle
/// client uses no CPU) and a shutdown wakes them.
#[cfg(windows)]
pub(crate) const CLOSE_POLL: Option<Duration> = Some(Duration::from_millis(20));
/// See the Windows definition: no read timeout is needed elsewhere.
#[cfg(not(windows))]
pub(crate) const CLOSE_POLL: Option<Duration> = None;

/// True for the errors a read returns when [`CLOSE_POLL`]'s timeout expired
/// (`WouldBlock` on Unix, `TimedOut` on Windows): not a failure of the link.
pub(crate) fn is_poll_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The options one port's sockets get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SocketOptions {
    /// TCP keepalive: first probe after 30 s idle, then every 10 s, 3 probes
    /// (where the OS lets the count be set), so a dead peer is noticed even
    /// when nothing flows.
    pub(crate) keepalive: bool,
    /// `SO_RCVBUF` in bytes; 0 leaves the OS default (and, on Linux, its
    /// automatic tuning). The OS may cap it; a smaller buffer is not an error.
    pub(crate) recv_buffer: usize,
    /// Close with a reset (`SO_LINGER` 0) instead of a FIN. For the live
    /// port: with a FIN, a socket closed while its receive window is full
    /// may keep advertising a zero window (Linux sends no window update
    /// after the close), leaving the instrument blocked in `send` until the
    /// FIN_WAIT2 timeout (60 s) and unable to serve the next live client. A
    /// reset makes its `send` fail at once.
    pub(crate) abortive_close: bool,
    /// Give the socket [`CLOSE_POLL`] as read timeout (a no-op except on
    /// Windows).
    pub(crate) close_poll: bool,
}

impl SocketOptions {
    /// The command port: keepalive as asked, a 1 MiB receive buffer, an
    /// orderly close; the reader sets [`CLOSE_POLL`] itself.
    pub(crate) const fn command(keepalive: bool) -> SocketOptions {
        SocketOptions {
            keepalive,
            recv_buffer: RECV_BUFFER,
            abortive_close: false,
            close_poll: false,
        }
    }

    /// The live port: keepalive on, the given receive buffer, closed with a
    /// reset, and [`CLOSE_POLL`] set.
    pub(crate) const fn live(recv_buffer: usize) -> SocketOptions {
        SocketOptions {
            keepalive: true,
            recv_buffer,
            abortive_close: true,
            close_poll: true,
        }
    }
}

/// Keepalive: first probe after 30 s idle, then every 10 s, 3 probes.
fn keepalive() -> TcpKeepalive {
    let ka = TcpKeepalive::new()
        .with_time(Duration::from_secs(30))
        .with_interval(Duration::from_secs(10));
    #[cfg(not(any(
        windows,
        target_os = "openbsd",
        target_os = "redox",
        target_os = "solaris"
    )))]
    let ka = ka.with_retries(3);
    ka
}

#[cfg(test)]
/// `now + timeout`, or `None` (no deadline) for a timeout too large to add.
pub(crate) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// Resolves `addr` ("host:port") to socket addresses, as an [`Error::Connect`] on failure.
pub(crate) fn resolve(addr: &str) -> Result<Vec<SocketAddr>> {
    match addr.to_socket_addrs() {
        Ok(list) => {
            let v: Vec<SocketAddr> = list.collect();
            if v.is_empty() {
                Err(Error::Connect {
                    addr: addr.to_string(),
                    source: io::Error::new(
                        io::ErrorKind::NotFound,
                        "the name resolved to no address",
                    ),
                })
            } else {
                Ok(v)
            }
        }
        Err(source) => Err(Error::Connect {
            addr: addr.to_string(),
            source,
        }),
    }
}

#[cfg(test)]
/// One blocking connection attempt to `addr` with `options`, giving up at
/// `deadline` (`None`: wait as long as the OS does). On failure nothing
/// stays open. The library's own connects are interruptible instead (see
/// `client::connect` and `live::connect`).
pub(crate) fn open(
    addr: SocketAddr,
    deadline: Option<Instant>,
    options: SocketOptions,
) -> io::Result<TcpStream> {
    let socket = new_socket(addr, options)?;
    let to = SockAddr::from(addr);
    match deadline {
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the connection deadline passed",
                ));
            }
            socket.connect_timeout(&to, left)?;
        }
        None => socket.connect(&to)?,
    }
    finish(socket, options)
}

/// A socket for `addr` with `options` applied, not connected yet (for a
/// caller that connects it in its own way, such as the command client's
/// interruptible connect).
pub(crate) fn new_socket(addr: SocketAddr, options: SocketOptions) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nodelay(true)?;
    if options.keepalive {
        if let Err(e) = socket.set_tcp_keepalive(&keepalive()) {
            log::debug!("cannot enable TCP keepalive on a socket to {addr}: {e}");
        }
    }
    if options.recv_buffer > 0 {
        if let Err(e) = socket.set_recv_buffer_size(options.recv_buffer) {
            log::debug!(
                "cannot set a {}-byte receive buffer on a socket to {addr}: {e}",
                options.recv_buffer
            );
        }
    }
    if options.abortive_close {
        if let Err(e) = socket.set_linger(Some(Duration::ZERO)) {
            log::debug!("cannot set SO_LINGER 0 on a socket to {addr}: {e}");
        }
    }
    Ok(socket)
}

/// Turns a connected socket into a stream with the options that apply
/// after the connect.
pub(crate) fn finish(socket: Socket, options: SocketOptions) -> io::Result<TcpStream> {
    // Connected sockets are blocking; readers block on them (woken by
    // shutdown) except for the CLOSE_POLL timeout where it is needed.
    if options.close_poll && CLOSE_POLL.is_some() {
        socket.set_read_timeout(CLOSE_POLL)?;
    }
    Ok(socket.into())
}

#[cfg(test)]
/// [`open`] with the command port's options, the failure as an [`Error::Connect`].
pub(crate) fn connect(
    addr: SocketAddr,
    deadline: Option<Instant>,
    keepalive_on: bool,
) -> Result<TcpStream> {
    open(addr, deadline, SocketOptions::command(keepalive_on)).map_err(|source| Error::Connect {
        addr: addr.to_string(),
        source,
    })
}

#[cfg(test)]
/// Opens the command connection: tries every resolved address of `addr` in
/// turn until one connects or `timeout` has passed (`Duration::MAX`: no
/// deadline of its own).
pub(crate) fn connect_any(addr: &str, timeout: Duration, keepalive_on: bool) -> Result<TcpStream> {
    let deadline = deadline_after(timeout);
    let mut last = None;
    for a in resolve(addr)? {
        match connect(a, deadline, keepalive_on) {
            Ok(s) => return Ok(s),
            Err(Error::Connect { source, .. }) => last = Some(source),
            Err(e) => return Err(e),
        }
    }
    Err(Error::Connect {
        addr: addr.to_string(),
        source: last.unwrap_or_else(|| io::ErrorKind::TimedOut.into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_names_address() {
        // Bind then drop to get a port that is (almost certainly) closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let e = connect_any(&addr, Duration::from_secs(2), true).unwrap_err();
        assert!(matches!(e, Error::Connect { .. }), "{e}");
        assert!(e.to_string().contains(&addr));
    }

    #[test]
    fn bad_address() {
        let e = connect_any("not an address", Duration::from_secs(1), true).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot connect to not an address"),
            "{e}"
        );
    }

    #[test]
    fn connects_with_any_timeout() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        for timeout in [Duration::from_secs(2), Duration::MAX] {
            let s = connect_any(&addr, timeout, true).unwrap();
            assert!(s.nodelay().unwrap());
            assert_eq!(s.read_timeout().unwrap(), None, "command: reader sets it");
        }
    }

    #[test]
    fn live_options() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let s = open(
            addr,
            deadline_after(Duration::from_secs(2)),
            SocketOptions::live(0),
        )
        .unwrap();
        assert!(s.nodelay().unwrap());
        assert_eq!(s.read_timeout().unwrap(), CLOSE_POLL);
        let sock = socket2::SockRef::from(&s);
        assert_eq!(sock.linger().unwrap(), Some(Duration::ZERO));
        assert!(sock.keepalive().unwrap());
    }

    #[test]
    fn passed_deadline_is_a_timeout() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let e = open(
            l.local_addr().unwrap(),
            Some(Instant::now()),
            SocketOptions::command(false),
        )
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }
}

/// Socket numbers that have no portable name in `std`, per platform family.
#[cfg(any(target_os = "linux", target_os = "android"))]
mod os {
    /// EINPROGRESS: a non-blocking connect is under way.
    pub const EINPROGRESS: Option<i32> = Some(115);
    /// `send()` flags for a write that never waits and raises no SIGPIPE
    /// (MSG_DONTWAIT | MSG_NOSIGNAL).
    pub const DONTWAIT: Option<i32> = Some(0x40 | 0x4000);
}
#[cfg(any(
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "openbsd",
    target_os = "netbsd",
    target_os = "dragonfly"
))]
mod os {
    pub const EINPROGRESS: Option<i32> = Some(36);
    /// MSG_DONTWAIT (SIGPIPE is off for the socket).
    pub const DONTWAIT: Option<i32> = Some(0x80);
}
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "openbsd",
    target_os = "netbsd",
    target_os = "dragonfly"
)))]
mod os {
    pub const EINPROGRESS: Option<i32> = None;
    /// None (e.g. Windows): the sender thread writes everything.
    pub const DONTWAIT: Option<i32> = None;
}

pub(crate) use os::DONTWAIT;

/// True for the error a non-blocking connect returns while it proceeds
/// (EINPROGRESS has no stable `ErrorKind`; its number is per platform).
pub(crate) fn connect_in_progress(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock
        || (os::EINPROGRESS.is_some() && e.raw_os_error() == os::EINPROGRESS)
}
