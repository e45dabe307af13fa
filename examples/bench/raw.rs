//! The raw baselines: the strongest simple clients plain `std::net` allows,
//! measured in the same run against the same server process. Each is the
//! floor the library's figure is compared to; for request latency that is
//! the busy-polling ping-pong (it never parks, so it pays no wake-up), with
//! the blocking one beside it.

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::Thread;
use std::time::{Duration, Instant};

use flamingo_client::codec::{CommandCode, Message, LIVE_HEADER_LEN, MESSAGE_LEN};

use crate::servers::{Pace, BENCH_END, BENCH_START, FRAME_H, FRAME_W};
use crate::throughput::Gate;
use crate::TIMEOUT;

/// Requests in flight on the batching raw client, and callers sharing one
/// library client in the throughput figures.
pub const CALLERS: usize = 8;

/// Eight codes outside the catalogue: the echo server's replies to them are
/// matched by code, so each is its own correlation key.
pub fn distinct_code(i: usize) -> CommandCode {
    CommandCode(0x7770 + i as u32)
}

/// The request every figure sends (the echo server returns it unchanged).
pub fn request(code: CommandCode) -> Message {
    Message::new(code).with_int32_data0(1)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect to the bench server");
    s.set_nodelay(true).expect("TCP_NODELAY");
    s
}

/// Raw ping-pong: one thread, a blocking `write_all` of 128 bytes, then a
/// blocking `read_exact` of the 128-byte reply.
pub struct PingPong {
    stream: TcpStream,
    msg: [u8; MESSAGE_LEN],
}

impl PingPong {
    pub fn new(addr: SocketAddr) -> PingPong {
        PingPong {
            stream: connect(addr),
            msg: request(distinct_code(7)).to_bytes(),
        }
    }

    pub fn once(&mut self) {
        let mut buf = [0u8; MESSAGE_LEN];
        self.stream.write_all(&self.msg).expect("raw write");
        self.stream.read_exact(&mut buf).expect("raw read");
        black_box(&buf);
    }
}

/// Raw busy-polling ping-pong: one thread, a non-blocking socket, writes the
/// 128 bytes and then spins on `read` until the 128-byte reply is in. It
/// never parks, so it pays no wake-up: the latency floor of one request on
/// one connection (at the price of a CPU kept busy while it waits).
pub struct BusyPingPong {
    stream: TcpStream,
    msg: [u8; MESSAGE_LEN],
}

impl BusyPingPong {
    pub fn new(addr: SocketAddr) -> BusyPingPong {
        let stream = connect(addr);
        stream.set_nonblocking(true).expect("non-blocking socket");
        BusyPingPong {
            stream,
            msg: request(distinct_code(6)).to_bytes(),
        }
    }

    pub fn once(&mut self) {
        let mut buf = [0u8; MESSAGE_LEN];
        let start = Instant::now();
        let mut sent = 0;
        while sent < MESSAGE_LEN {
            match self.stream.write(&self.msg[sent..]) {
                Ok(n) => sent += n,
                Err(e) => spin_on(&e, start, "raw busy write"),
            }
        }
        let mut got = 0;
        while got < MESSAGE_LEN {
            match self.stream.read(&mut buf[got..]) {
                Ok(0) => panic!("raw busy read: the server closed the connection"),
                Ok(n) => got += n,
                Err(e) => spin_on(&e, start, "raw busy read"),
            }
        }
        black_box(&buf);
    }
}

/// After a non-blocking call failed with `e`: spins once if it would have
/// blocked (or was interrupted), panics on a real error or after [`TIMEOUT`].
fn spin_on(e: &std::io::Error, start: Instant, what: &str) {
    use std::io::ErrorKind::{Interrupted, WouldBlock};
    if !matches!(e.kind(), WouldBlock | Interrupted) {
        panic!("{what}: {e}");
    }
    assert!(start.elapsed() < TIMEOUT, "{what}: no reply in {TIMEOUT:?}");
    std::hint::spin_loop();
}

/// Raw batched client, run on one thread while `gate` gives turn `me`:
/// keeps up to [`CALLERS`] requests in flight, writes every request it may
/// send (one per free slot) in one `write`, reads whatever replies have
/// arrived with one `read` into a 64 KiB buffer, and counts completed
/// requests in `done`. No channel, no hand-off between threads: the floor
/// for 8 callers sharing one connection. Outside its turn it sends nothing
/// and drains what is in flight. `busy`: the socket is non-blocking and the
/// client spins instead of parking in `read` (no wake-up per batch, a CPU
/// kept busy).
pub fn batched(addr: SocketAddr, gate: &Gate, me: u64, done: &AtomicU64, busy: bool) {
    let mut s = connect(addr);
    if busy {
        s.set_nonblocking(true).expect("non-blocking socket");
    }
    let batch: Vec<u8> = (0..CALLERS)
        .flat_map(|i| request(distinct_code(i)).to_bytes())
        .collect();
    let mut buf = vec![0u8; 64 * 1024];
    let (mut filled, mut in_flight) = (0usize, 0usize);
    loop {
        if in_flight == 0 && !gate.pass(me) {
            return;
        }
        if in_flight < CALLERS && gate.is(me) {
            let free = CALLERS - in_flight;
            let bytes = &batch[..free * MESSAGE_LEN];
            let (start, mut sent) = (Instant::now(), 0);
            while sent < bytes.len() {
                match s.write(&bytes[sent..]) {
                    Ok(n) => sent += n,
                    Err(e) => spin_on(&e, start, "raw batched write"),
                }
            }
            in_flight += free;
        }
        match s.read(&mut buf[filled..]) {
            Ok(0) => return,
            Ok(n) => filled += n,
            Err(e) if busy && e.kind() == std::io::ErrorKind::WouldBlock => {
                std::hint::spin_loop();
                continue;
            }
            Err(_) => return,
        }
        let whole = filled / MESSAGE_LEN;
        in_flight -= whole;
        done.fetch_add(whole as u64, Ordering::Relaxed);
        buf.copy_within(whole * MESSAGE_LEN..filled, 0);
        filled -= whole * MESSAGE_LEN;
    }
}

/// Raw threaded client, the library's own shape with nothing else: one
/// connection, [`CALLERS`] caller threads and one reader thread. A caller
/// writes its 128-byte request under a mutex (one `write` each) and parks
/// until the reader, which reads whatever has arrived into a 64 KiB buffer,
/// finds the reply by code and unparks it. No deadline, no queue, no
/// bookkeeping: the floor of any client in which each caller blocks for its
/// own reply, i.e. what one wake-up and one park per request cost. Callers
/// send while `gate` gives turn `me`; returns once the gate stops.
pub fn threaded(addr: SocketAddr, gate: &Arc<Gate>, me: u64, done: &Arc<AtomicU64>) {
    let stream = connect(addr);
    let writer = Arc::new(Mutex::new(stream.try_clone().expect("clone the socket")));
    // Per caller: its thread (to unpark) and whether its reply is in.
    let slots: Arc<Vec<(Mutex<Option<Thread>>, AtomicBool)>> = Arc::new(
        (0..CALLERS)
            .map(|_| (Mutex::new(None), AtomicBool::new(false)))
            .collect(),
    );
    let reader = {
        let (slots, mut s) = (slots.clone(), stream.try_clone().expect("clone the socket"));
        std::thread::Builder::new()
            .name("bench-thr-reader".into())
            .spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                let mut filled = 0usize;
                loop {
                    match s.read(&mut buf[filled..]) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => filled += n,
                    }
                    let whole = filled / MESSAGE_LEN;
                    for m in buf[..whole * MESSAGE_LEN].chunks_exact(MESSAGE_LEN) {
                        let m = Message::decode(m.try_into().expect("128 bytes"))
                            .expect("an echoed request");
                        let i = (m.code.0 - distinct_code(0).0) as usize;
                        let (thread, ready) = &slots[i];
                        ready.store(true, Ordering::Release);
                        if let Some(t) = thread.lock().expect("slot lock").as_ref() {
                            t.unpark();
                        }
                    }
                    buf.copy_within(whole * MESSAGE_LEN..filled, 0);
                    filled -= whole * MESSAGE_LEN;
                }
            })
            .expect("spawn the reader")
    };
    let callers: Vec<_> = (0..CALLERS)
        .map(|i| {
            let (gate, done, slots, writer) =
                (gate.clone(), done.clone(), slots.clone(), writer.clone());
            let msg = request(distinct_code(i)).to_bytes();
            std::thread::Builder::new()
                .name("bench-thr-caller".into())
                .spawn(move || {
                    let (thread, ready) = &slots[i];
                    *thread.lock().expect("slot lock") = Some(std::thread::current());
                    while gate.pass(me) {
                        ready.store(false, Ordering::Relaxed);
                        writer
                            .lock()
                            .expect("writer lock")
                            .write_all(&msg)
                            .expect("raw threaded write");
                        let start = Instant::now();
                        while !ready.load(Ordering::Acquire) {
                            assert!(start.elapsed() < TIMEOUT, "raw threaded: no reply");
                            std::thread::park_timeout(TIMEOUT);
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .expect("spawn a caller")
        })
        .collect();
    for c in callers {
        c.join().expect("a raw threaded caller");
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    reader.join().expect("the raw threaded reader");
}

/// Bytes and frames read in a window.
pub struct Flow {
    pub bytes: u64,
    pub frames: u64,
    pub secs: f64,
}

/// Raw live reader: `read_exact` of the header, then of the pixels into one
/// reused buffer. `rcvbuf`: give the socket the library's 1 MiB `SO_RCVBUF`
/// (which on Linux also switches receive-buffer autotuning off) instead of
/// the OS default.
pub fn live(addr: SocketAddr, warm: Duration, window: Duration, rcvbuf: bool) -> Flow {
    let mut s = if rcvbuf {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("a socket");
        sock.set_recv_buffer_size(1 << 20).expect("SO_RCVBUF");
        sock.connect(&addr.into())
            .expect("connect to the frame server");
        TcpStream::from(sock)
    } else {
        TcpStream::connect(addr).expect("connect to the frame server")
    };
    let mut head = [0u8; LIVE_HEADER_LEN];
    let mut pixels = vec![0u8; (FRAME_W * FRAME_H * 2) as usize];
    let mut read_frame = |s: &mut TcpStream| {
        s.read_exact(&mut head).expect("raw live header");
        let size = u32::from_le_bytes(head[..4].try_into().unwrap()) as usize;
        s.read_exact(&mut pixels[..size]).expect("raw live pixels");
        black_box(pixels[size / 2]);
        (LIVE_HEADER_LEN + size) as u64
    };
    let start = Instant::now();
    while start.elapsed() < warm {
        read_frame(&mut s);
    }
    let (t0, mut bytes, mut frames) = (Instant::now(), 0u64, 0u64);
    while t0.elapsed() < window {
        bytes += read_frame(&mut s);
        frames += 1;
    }
    Flow {
        bytes,
        frames,
        secs: t0.elapsed().as_secs_f64(),
    }
}

/// What a raw event reader saw.
pub struct EventSamples {
    /// Server stamp to receipt, ns, in arrival order.
    pub lat: Vec<u64>,
    /// First stamp and last receipt on the shared clock (ns).
    pub first_sent: u64,
    pub last_recv: u64,
    /// How long the server took to write the events (ns).
    pub offered_ns: f64,
}

/// Raw event reader: sends the start request, then reads with one `read`
/// into a 64 KiB buffer whatever has arrived and takes the receipt time of
/// every whole message in it (they became readable together). The floor
/// for the library's reader thread plus subscriber.
pub fn events(addr: SocketAddr, pace: Pace) -> EventSamples {
    let mut s = connect(addr);
    s.write_all(&pace.start_message().to_bytes())
        .expect("raw event start");
    let mut out = EventSamples {
        lat: Vec::with_capacity(pace.count as usize),
        first_sent: 0,
        last_recv: 0,
        offered_ns: f64::NAN,
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut filled = 0usize;
    loop {
        match s.read(&mut buf[filled..]) {
            Ok(0) | Err(_) => return out,
            Ok(n) => filled += n,
        }
        let now = crate::sys::clock_ns();
        let whole = filled / MESSAGE_LEN;
        for chunk in buf[..whole * MESSAGE_LEN].chunks_exact(MESSAGE_LEN) {
            let m = Message::decode(chunk.try_into().expect("128 bytes")).expect("a valid event");
            if m.code == BENCH_END {
                out.offered_ns = m.double_data;
                return out;
            }
            if m.code == BENCH_START {
                continue;
            }
            let sent = m.double_data as u64;
            if out.lat.is_empty() {
                out.first_sent = sent;
            }
            out.lat.push(now.saturating_sub(sent));
            out.last_recv = now;
        }
        buf.copy_within(whole * MESSAGE_LEN..filled, 0);
        filled -= whole * MESSAGE_LEN;
    }
}
