//! The minimal loopback servers the benchmark measures against: plain
//! blocking std::net threads doing as little as possible, so the figures are
//! dominated by the client side.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use flamingo_client::codec::{CommandCode, LiveHeader, Message, LIVE_HEADER_LEN, MESSAGE_LEN};

use crate::ns_since_base;

/// A server thread accepting exactly one connection.
pub struct Server {
    pub addr: SocketAddr,
    handle: Option<JoinHandle<()>>,
}

impl Server {
    fn spawn(name: &str, body: impl FnOnce(TcpStream) + Send + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let pin = crate::SERVER_CPU.load(std::sync::atomic::Ordering::Relaxed);
                if pin != usize::MAX {
                    crate::sys::pin(None, Some(&[pin]));
                }
                if let Ok((stream, _)) = listener.accept() {
                    let _ = stream.set_nodelay(true);
                    body(stream);
                }
            })
            .expect("spawn a server thread");
        Server {
            addr,
            handle: Some(handle),
        }
    }

    /// Waits for the server thread (it ends when its peer disconnects).
    pub fn join(mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Echo responder: reads 128-byte messages and writes each one back
/// unchanged (so a client request with code 0x7777 gets a reply with the
/// same code). Whatever whole messages one read returns are echoed with one
/// write, so the responder keeps up with 8 requests in flight.
pub fn echo() -> Server {
    Server::spawn("bench-echo", |mut s| {
        let mut buf = vec![0u8; 64 * 1024];
        let mut filled = 0;
        loop {
            match s.read(&mut buf[filled..]) {
                Ok(0) | Err(_) => return,
                Ok(n) => filled += n,
            }
            let whole = filled / MESSAGE_LEN * MESSAGE_LEN;
            if whole > 0 {
                if s.write_all(&buf[..whole]).is_err() {
                    return;
                }
                buf.copy_within(whole..filled, 0);
                filled -= whole;
            }
        }
    })
}

/// What the event server sends.
#[derive(Clone, Copy)]
pub enum EventPace {
    /// `count` events, each written as soon as the previous write returned.
    Flood { count: u32 },
    /// `count` events with a sleep of `gap_us` microseconds between writes
    /// (the OS makes the gap somewhat longer), so no queue builds up.
    Paced { count: u32, gap_us: u64 },
}

/// Unsolicited-event server: once `go` is set, writes UI_SET_GAUGE_VALUE
/// events (int32Data0 = index, doubleData = ns since the benchmark's base
/// instant, stamped just before the write), one message per write as the
/// instrument does. Then waits for the peer to close.
pub fn events(pace: EventPace, go: Arc<AtomicBool>) -> Server {
    Server::spawn("bench-events", move |mut s| {
        while !go.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        let (count, gap) = match pace {
            EventPace::Flood { count } => (count, None),
            EventPace::Paced { count, gap_us } => (count, Some(Duration::from_micros(gap_us))),
        };
        let mut bytes = [0u8; MESSAGE_LEN];
        for i in 0..count {
            if let Some(gap) = gap {
                std::thread::sleep(gap);
            }
            Message::new(CommandCode::UI_SET_GAUGE_VALUE)
                .with_int32_data0(i as i32)
                .with_int32_data1(count as i32)
                .with_double_data(ns_since_base() as f64)
                .encode(&mut bytes);
            if s.write_all(&bytes).is_err() {
                return;
            }
        }
        // Hold the connection until the client closes it.
        let mut sink = [0u8; 256];
        while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
    })
}

/// Frame size of the live benchmark.
pub const FRAME_W: u32 = 2048;
/// Frame size of the live benchmark.
pub const FRAME_H: u32 = 2048;

/// Live frame server: writes a pre-rendered 2048 x 2048 u16 frame with a
/// fresh [`LiveHeader`] over and over until the peer goes away or `stop` is
/// set.
pub fn frames(stop: Arc<AtomicBool>) -> Server {
    let image_size = FRAME_W * FRAME_H * 2;
    let mut pixels = vec![0u8; image_size as usize];
    for (i, px) in pixels.chunks_exact_mut(2).enumerate() {
        let v = ((i % 4093) as u16).wrapping_mul(16);
        px.copy_from_slice(&v.to_le_bytes());
    }
    Server::spawn("bench-frames", move |mut s| {
        let start = Instant::now();
        let mut head = [0u8; LIVE_HEADER_LEN];
        let mut n = 0u32;
        while !stop.load(Ordering::Relaxed) {
            n = n.wrapping_add(1);
            LiveHeader {
                image_size,
                width: FRAME_W,
                height: FRAME_H,
                scale_min: 0,
                scale_max: 65535,
                timestamp_ms: start.elapsed().as_millis() as u32,
                frame_number: n,
                exposure_us: 1000,
                reserved: [0, 0],
            }
            .encode(&mut head);
            if s.write_all(&head).is_err() || s.write_all(&pixels).is_err() {
                return;
            }
        }
    })
}

/// A live port with live view stopped: accepts, sends nothing, and waits
/// for the peer to close.
pub fn silent() -> Server {
    Server::spawn("bench-silent", |mut s| {
        let mut sink = [0u8; 256];
        while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
    })
}
