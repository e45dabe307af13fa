//! Socket set-up with socket2: connect timeout, TCP_NODELAY, keepalive and a
//! large receive buffer, set portably (Linux, macOS, Windows).

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, TcpKeepalive, Type};

use crate::{Error, Result};

/// Receive buffer requested for the command and live sockets (1 MiB): the
/// instrument drops the link if its writes stall, so give it room.
pub(crate) const RECV_BUFFER: usize = 1024 * 1024;

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

/// Applies the instrument's socket options (no delay, keepalive, a large
/// receive buffer) to a socket before it connects.
pub(crate) fn configure(socket: &Socket, keepalive_on: bool) -> std::io::Result<()> {
    socket.set_nodelay(true)?;
    if keepalive_on {
        socket.set_tcp_keepalive(&keepalive())?;
    }
    // A smaller buffer than asked for is not an error; the OS may cap it.
    if let Err(e) = socket.set_recv_buffer_size(RECV_BUFFER) {
        log::debug!("could not set a {RECV_BUFFER}-byte receive buffer: {e}");
    }
    Ok(())
}

/// Windows may not wake a blocked `recv` when another thread shuts the
/// socket down, so there readers wake this often to check whether their
/// client is closing. Elsewhere they block with no timeout (an idle client
/// uses no CPU).
#[cfg(windows)]
pub(crate) const CLOSE_POLL: Option<Duration> = Some(Duration::from_millis(20));
#[cfg(not(windows))]
pub(crate) const CLOSE_POLL: Option<Duration> = None;

/// Resolves `addr` ("host:port") to socket addresses, as an [`Error::Connect`] on failure.
pub(crate) fn resolve(addr: &str) -> Result<Vec<SocketAddr>> {
    match addr.to_socket_addrs() {
        Ok(list) => {
            let v: Vec<SocketAddr> = list.collect();
            if v.is_empty() {
                Err(Error::Connect {
                    addr: addr.to_string(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
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

/// Opens a TCP connection to `addr` with the instrument's socket options,
/// giving up at `deadline`. On failure nothing stays open.
pub(crate) fn connect(
    addr: SocketAddr,
    deadline: Instant,
    keepalive_on: bool,
) -> Result<TcpStream> {
    let fail = |source: std::io::Error| Error::Connect {
        addr: addr.to_string(),
        source,
    };
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(fail)?;
    socket.set_nodelay(true).map_err(fail)?;
    if keepalive_on {
        socket.set_tcp_keepalive(&keepalive()).map_err(fail)?;
    }
    // A smaller buffer than asked for is not an error; the OS may cap it.
    if let Err(e) = socket.set_recv_buffer_size(RECV_BUFFER) {
        log::debug!("could not set a {RECV_BUFFER}-byte receive buffer: {e}");
    }
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(fail(std::io::ErrorKind::TimedOut.into()));
    }
    socket
        .connect_timeout(&SockAddr::from(addr), left)
        .map_err(fail)?;
    Ok(socket.into())
}

/// Tries every resolved address of `addr` in turn until one connects or the deadline passes.
pub(crate) fn connect_any(addr: &str, timeout: Duration, keepalive_on: bool) -> Result<TcpStream> {
    let deadline = Instant::now() + timeout;
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
        source: last.unwrap_or_else(|| std::io::ErrorKind::TimedOut.into()),
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
    fn connects() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let s = connect_any(
            &l.local_addr().unwrap().to_string(),
            Duration::from_secs(2),
            true,
        )
        .unwrap();
        assert!(s.nodelay().unwrap());
    }
}
