//! Opening the command socket so that `close()` can interrupt it.
//!
//! A blocking connect cannot be cancelled, and a connect to a host that
//! does not answer can take the whole connect timeout: `close()` would have
//! to wait for it (a GUI freezing on exit). So the socket connects in
//! non-blocking mode and the attempt waits on the connection's condition
//! variable between checks, where `close()` wakes it at once.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use socket2::{SockAddr, Socket};

use super::deadline::Deadline;
use super::shared::Shared;
use crate::{transport, DisconnectReason, Error, Result, TimeoutPhase};

/// The longest pause between two checks of a connect in progress.
const MAX_POLL: Duration = Duration::from_millis(5);

/// Connects to the client's address (every resolved address in turn) by
/// `deadline`, giving up at once when the client is closed. The name is
/// resolved by the first connect (`open()`, on the caller's thread) and the
/// addresses kept: a reconnect on the connection thread never waits for
/// name resolution, which `close()` could not interrupt.
pub(crate) fn connect(shared: &Shared, timeout: Duration) -> Result<TcpStream> {
    let deadline = Deadline::after(timeout);
    let known = shared.resolved.lock().clone();
    let addrs = match known {
        Some(a) => a,
        None => {
            let a = transport::resolve(&shared.addr)?;
            *shared.resolved.lock() = Some(a.clone());
            a
        }
    };
    let mut last = None;
    for a in addrs {
        match connect_one(shared, a, deadline) {
            Ok(s) => return Ok(s),
            Err(Error::Connect { source, .. }) => last = Some(source),
            Err(e) => return Err(e),
        }
    }
    let source = last.unwrap_or_else(|| io::ErrorKind::TimedOut.into());
    if source.kind() == io::ErrorKind::TimedOut {
        return Err(Error::timeout(
            TimeoutPhase::Connect,
            format!("the connection to {}", shared.addr),
            timeout,
        ));
    }
    Err(Error::Connect {
        addr: shared.addr.clone(),
        source,
    })
}

fn connect_one(shared: &Shared, addr: SocketAddr, deadline: Deadline) -> Result<TcpStream> {
    let fail = |source: io::Error| Error::Connect {
        addr: addr.to_string(),
        source,
    };
    let options = transport::SocketOptions::command(shared.config.keepalive);
    let socket = transport::new_socket(addr, options).map_err(fail)?;
    socket.set_nonblocking(true).map_err(fail)?;
    match socket.connect(&SockAddr::from(addr)) {
        Ok(()) => {}
        Err(e) if transport::connect_in_progress(&e) => {
            wait_connected(shared, &socket, deadline).map_err(fail)?
        }
        Err(e) => return Err(fail(e)),
    }
    socket.set_nonblocking(false).map_err(fail)?;
    transport::finish(socket, options).map_err(fail)
}

/// Waits for a non-blocking connect to finish: checks, then sleeps on the
/// connection's condition variable (woken by `close()`), with pauses that
/// grow from 50 µs to [`MAX_POLL`].
fn wait_connected(shared: &Shared, socket: &Socket, deadline: Deadline) -> io::Result<()> {
    let mut pause = Duration::from_micros(50);
    loop {
        if let Some(e) = socket.take_error()? {
            return Err(e);
        }
        if socket.peer_addr().is_ok() {
            return Ok(());
        }
        if deadline.expired() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let mut c = shared.conn.lock();
        if c.is_closed() {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                DisconnectReason::ClosedByUser.describe(),
            ));
        }
        let until = deadline
            .min(Deadline::at(Instant::now() + pause))
            .wait_slice();
        let _ = shared.cv.wait_until(&mut c, until);
        drop(c);
        pause = (pause * 2).min(MAX_POLL);
    }
}
