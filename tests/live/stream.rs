//! The live stream against a small in-test frame server on loopback.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver};
use flamingo_client::codec::LiveHeader;
use flamingo_client::live::{Frame, LiveConfig, LiveStream};
use flamingo_client::Error;

/// Generous bound for anything that should happen "now" (loaded CI machines).
const WAIT: Duration = Duration::from_secs(20);

/// Accepts connections on 127.0.0.1 and hands them to the test.
struct Server {
    addr: SocketAddr,
    conns: Option<Receiver<TcpStream>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start() -> Server {
        Server::on(TcpListener::bind("127.0.0.1:0").unwrap())
    }

    fn on(listener: TcpListener) -> Server {
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = unbounded();
        let thread = thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                if tx.send(conn).is_err() {
                    break;
                }
            }
        });
        Server {
            addr,
            conns: Some(rx),
            thread: Some(thread),
        }
    }

    /// The next client connection.
    fn accept(&self) -> TcpStream {
        self.conns
            .as_ref()
            .unwrap()
            .recv_timeout(WAIT)
            .expect("the live stream should have connected")
    }

    fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            drop(self.conns.take());
            // Wake the accept loop; its send then fails and it exits.
            let _ = TcpStream::connect(self.addr);
            thread.join().unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The test pattern: a deterministic function of frame number and position.
fn px(n: u32, x: u32, y: u32) -> u16 {
    (n.wrapping_mul(7919) ^ y.wrapping_mul(1031) ^ x.wrapping_mul(31).rotate_left(7)) as u16
}

fn pixels(w: u32, h: u32, n: u32) -> Vec<u16> {
    (0..h)
        .flat_map(|y| (0..w).map(move |x| px(n, x, y)))
        .collect()
}

fn header(w: u32, h: u32, n: u32) -> LiveHeader {
    LiveHeader {
        image_size: w * h * 2,
        width: w,
        height: h,
        scale_min: n,
        scale_max: 60_000 + n,
        timestamp_ms: 1_000 + 25 * n,
        frame_number: n,
        exposure_us: 10_000 + n,
        reserved: [0, 0],
    }
}

fn wire(w: u32, h: u32, n: u32) -> Vec<u8> {
    let mut out = header(w, h, n).to_bytes().to_vec();
    for p in pixels(w, h, n) {
        out.extend_from_slice(&p.to_le_bytes());
    }
    out
}

fn connect(server: &Server, config: LiveConfig) -> LiveStream {
    LiveStream::connect(server.addr, config, Instant::now() + WAIT).unwrap()
}

fn assert_frame(f: &Frame, w: u32, h: u32, n: u32) {
    assert_eq!(*f.header(), header(w, h, n));
    assert_eq!((f.width(), f.height(), f.frame_number()), (w, h, n));
    assert_eq!(f.timestamp_ms(), 1_000 + 25 * n);
    assert_eq!(f.exposure_us(), 10_000 + n);
    assert_eq!((f.scale_min(), f.scale_max()), (n, 60_000 + n));
    assert_eq!(f.as_bytes(), &wire(w, h, n)[40..]);
    assert_eq!(f.pixels(), pixels(w, h, n).as_slice());
    assert_eq!(f.pixel(w - 1, h - 1), px(n, w - 1, h - 1));
    assert_eq!(f.pixel(0, h / 2), px(n, 0, h / 2));
}

#[test]
fn frames_are_pixel_exact() {
    let server = Server::start();
    let live = connect(&server, LiveConfig::default());
    let mut conn = server.accept();
    assert!(live.latest_frame().is_none());
    let sizes = [(64, 48), (64, 48), (17, 5), (1, 1), (640, 480), (64, 48)];
    let mut bytes = 0;
    for (i, &(w, h)) in sizes.iter().enumerate() {
        let n = i as u32 + 1;
        conn.write_all(&wire(w, h, n)).unwrap();
        bytes += 40 + u64::from(w * h * 2);
        let f = live.next_frame(WAIT).unwrap();
        assert_frame(&f, w, h, n);
        assert_eq!(f.sequence(), u64::from(n));
        assert_eq!(live.latest_frame().unwrap().frame_number(), n);
    }
    let stats = live.stats();
    assert_eq!(stats.frames, 6);
    assert_eq!(stats.bytes, bytes);
    assert_eq!(
        (stats.dropped, stats.bad_headers, stats.disconnects),
        (0, 0, 0)
    );
    assert!(live.is_connected());
}

#[test]
fn steady_state_allocates_nothing_per_frame() {
    let server = Server::start();
    let live = connect(&server, LiveConfig::default());
    let mut conn = server.accept();
    let body = wire(128, 96, 1);
    for n in 1..=100u32 {
        let mut msg = header(128, 96, n).to_bytes().to_vec();
        msg.extend_from_slice(&body[40..]);
        conn.write_all(&msg).unwrap();
        let f = live.next_frame(WAIT).unwrap();
        assert_eq!(f.frame_number(), n);
        assert_eq!(f.pixels()[5], px(1, 5, 0));
    }
    let stats = live.stats();
    assert!(stats.buffers_allocated <= 3, "{stats:?}");
    assert!(stats.pixel_buffers_allocated <= 3, "{stats:?}");
}

#[test]
fn stalled_consumer_keeps_memory_bounded_and_counts_drops() {
    const FRAMES: u32 = 200;
    let (w, h) = (256, 256);
    let server = Server::start();
    let config = LiveConfig::default();
    let (depth, pool) = (config.queue_depth, config.pool_buffers);
    let live = connect(&server, config);
    let mut conn = server.accept();
    let (go_tx, go_rx) = unbounded::<()>();
    let (done_tx, done_rx) = unbounded::<()>();
    let writer = thread::spawn(move || {
        let body = wire(w, h, 7);
        conn.write_all(&wire(w, h, 1)).unwrap();
        go_rx.recv_timeout(WAIT).unwrap();
        for n in 2..=FRAMES {
            conn.write_all(&header(w, h, n).to_bytes()).unwrap();
            conn.write_all(&body[40..]).unwrap();
        }
        done_tx.send(()).unwrap();
        conn
    });
    // Hold the first frame for the whole stall, as a slow GUI would.
    let held = live.next_frame(WAIT).unwrap();
    assert_frame(&held, w, h, 1);
    go_tx.send(()).unwrap();
    done_rx.recv_timeout(WAIT).unwrap();
    assert!(live.frames().len() <= depth);
    let mut delivered = 1;
    loop {
        let f = live.next_frame(WAIT).unwrap();
        delivered += 1;
        assert!(live.frames().len() <= depth);
        if f.frame_number() == FRAMES {
            assert_eq!(f.pixels(), pixels(w, h, 7).as_slice());
            break;
        }
    }
    let stats = live.stats();
    assert_eq!(stats.frames, u64::from(FRAMES));
    assert_eq!(stats.dropped + delivered, u64::from(FRAMES), "{stats:?}");
    assert!(stats.dropped > 0, "{stats:?}");
    let bound = (depth + pool + 2) as u64;
    assert!(stats.buffers_allocated <= bound, "{stats:?}");
    assert_eq!(held.frame_number(), 1);
    drop(held);
    drop(writer.join().unwrap());
}

#[test]
fn bad_header_then_good_frames_after_reconnect() {
    let server = Server::start();
    let live = connect(&server, LiveConfig::default());
    let mut first = server.accept();
    // Size does not match width x height x 2.
    let bad = LiveHeader {
        image_size: 1000,
        width: 10,
        height: 10,
        ..header(10, 10, 1)
    };
    first.write_all(&bad.to_bytes()).unwrap();
    // The client may already have reset the connection: ignore the outcome.
    let _ = first.write_all(&[0xAB; 1000]);
    let mut second = server.accept();
    // The client closed the bad connection (FIN or reset), not left it open.
    first.set_read_timeout(Some(WAIT)).unwrap();
    let mut sink = [0u8; 16];
    match first.read(&mut sink) {
        Ok(0) => {}
        Ok(n) => panic!("unexpected {n} bytes from the client"),
        Err(e) => assert!(
            !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "the client did not close the bad connection: {e}"
        ),
    }
    for n in 1..=3 {
        second.write_all(&wire(32, 8, n)).unwrap();
        assert_frame(&live.next_frame(WAIT).unwrap(), 32, 8, n);
    }
    let stats = live.stats();
    assert_eq!(
        (stats.bad_headers, stats.disconnects, stats.reconnects),
        (1, 1, 1)
    );
    assert_eq!(stats.frames, 3);
    assert!(live.is_connected());
}

#[test]
fn lying_headers_are_counted_and_never_allocated() {
    let server = Server::start();
    let live = connect(&server, LiveConfig::default());
    // Consistent, but claims 65535 x 32768 pixels: almost 4 GiB.
    let huge = header(65535, 32768, 1);
    assert_eq!(u64::from(huge.image_size), 65535 * 32768 * 2);
    server.accept().write_all(&huge.to_bytes()).unwrap();
    let mut next = server.accept();
    // Inconsistent and absurd.
    let absurd = LiveHeader {
        image_size: u32::MAX,
        width: u32::MAX,
        height: u32::MAX,
        ..LiveHeader::default()
    };
    next.write_all(&absurd.to_bytes()).unwrap();
    let mut good = server.accept();
    let stats = live.stats();
    assert_eq!(stats.bad_headers, 2);
    assert_eq!(stats.buffers_allocated, 0, "nothing allocated for a lie");
    good.write_all(&wire(16, 16, 9)).unwrap();
    assert_frame(&live.next_frame(WAIT).unwrap(), 16, 16, 9);
    assert_eq!(live.stats().buffers_allocated, 1);
    assert_eq!(live.stats().reconnects, 2);
}

#[test]
fn bad_header_ends_the_stream_when_reconnect_is_off() {
    let server = Server::start();
    let config = LiveConfig::default()
        .with_reconnect_on_error(false)
        .with_max_image_bytes(1 << 20);
    let live = connect(&server, config.clone());
    let mut conn = server.accept();
    conn.write_all(&wire(4, 4, 1)).unwrap();
    conn.write_all(&header(1024, 1024, 2).to_bytes()).unwrap(); // 2 MiB > 1 MiB
                                                                // The frame before the bad header is still delivered, then the error.
    assert_frame(&live.next_frame(WAIT).unwrap(), 4, 4, 1);
    match live.next_frame(WAIT) {
        Err(Error::TooLarge { size, limit, .. }) => assert_eq!((size, limit), (2 << 20, 1 << 20)),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(live.is_finished());
    assert!(!live.is_connected());
    assert!(matches!(live.error(), Some(Error::TooLarge { .. })));
    assert_eq!(live.stats().bad_headers, 1);

    let live = connect(&server, config);
    let bad = LiveHeader {
        image_size: 6,
        ..header(2, 2, 1)
    };
    server.accept().write_all(&bad.to_bytes()).unwrap();
    match live.next_frame(WAIT) {
        Err(Error::Protocol { detail }) => assert!(detail.contains("inconsistent"), "{detail}"),
        other => panic!("expected Protocol, got {other:?}"),
    }
    assert_eq!(live.stats().reconnects, 0);
}

#[test]
fn server_closing_mid_frame_then_recovering() {
    let server = Server::start();
    // Duration::MAX: keep trying for ever.
    let live = connect(
        &server,
        LiveConfig::default().with_reconnect_timeout(Duration::MAX),
    );
    let mut first = server.accept();
    for n in 1..=2 {
        first.write_all(&wire(50, 20, n)).unwrap();
        assert_frame(&live.next_frame(WAIT).unwrap(), 50, 20, n);
    }
    let partial = wire(50, 20, 3);
    first.write_all(&partial[..40 + 777]).unwrap();
    first.shutdown(Shutdown::Both).unwrap();
    drop(first);
    let mut second = server.accept();
    for n in 3..=4 {
        second.write_all(&wire(50, 20, n)).unwrap();
        assert_frame(&live.next_frame(WAIT).unwrap(), 50, 20, n);
    }
    let stats = live.stats();
    assert_eq!(stats.frames, 4, "the partial frame is not counted");
    assert_eq!(
        (stats.disconnects, stats.reconnects, stats.bad_headers),
        (1, 1, 0)
    );
}

#[test]
fn server_restarting_on_the_same_port_is_reconnected() {
    let mut server = Server::start();
    let addr = server.addr;
    let live = connect(&server, LiveConfig::default());
    let mut conn = server.accept();
    conn.write_all(&wire(8, 8, 1)).unwrap();
    assert_frame(&live.next_frame(WAIT).unwrap(), 8, 8, 1);
    // The instrument goes away mid-frame; reconnection attempts are refused.
    server.stop();
    conn.write_all(&wire(8, 8, 2)[..60]).unwrap();
    drop(conn);
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("skipped: cannot listen on {addr} again: {e}");
            return;
        }
    };
    let server = Server::on(listener);
    let mut conn = server.accept();
    conn.write_all(&wire(8, 8, 3)).unwrap();
    assert_frame(&live.next_frame(WAIT).unwrap(), 8, 8, 3);
    assert!(live.stats().reconnects >= 1);
}

#[test]
fn reconnecting_gives_up_after_the_reconnect_timeout() {
    let mut server = Server::start();
    let live = connect(
        &server,
        LiveConfig::default().with_reconnect_timeout(Duration::from_millis(300)),
    );
    let mut conn = server.accept();
    conn.write_all(&wire(8, 8, 1)).unwrap();
    assert_frame(&live.next_frame(WAIT).unwrap(), 8, 8, 1);
    // The instrument goes away for good.
    server.stop();
    drop(conn);
    match live.next_frame(WAIT) {
        Err(Error::Disconnected { detail: reason, .. }) => {
            assert!(reason.contains("closed the live socket"), "{reason}");
            assert!(reason.contains("reconnecting failed"), "{reason}");
        }
        other => panic!("expected Disconnected, got {other:?}"),
    }
    assert!(live.is_finished() && !live.is_connected());
    assert!(matches!(live.error(), Some(Error::Disconnected { .. })));
    let stats = live.stats();
    assert_eq!((stats.disconnects, stats.reconnects), (1, 0));
    // The last picture stays available.
    assert_eq!(live.latest_frame().unwrap().frame_number(), 1);
}

#[test]
fn close_from_another_thread_while_streaming() {
    let server = Server::start();
    let live = Arc::new(connect(&server, LiveConfig::default()));
    let mut conn = server.accept();
    let (ended_tx, ended_rx) = unbounded();
    let writer = thread::spawn(move || {
        let body = wire(200, 100, 1);
        let mut n = 0u32;
        loop {
            n += 1;
            let ok = conn.write_all(&header(200, 100, n).to_bytes()).is_ok()
                && conn.write_all(&body[40..]).is_ok();
            if !ok {
                break;
            }
        }
        ended_tx.send(n).unwrap();
    });
    for _ in 0..3 {
        live.next_frame(WAIT).unwrap();
    }
    let (closed_tx, closed_rx) = unbounded();
    let closers: Vec<_> = (0..2)
        .map(|_| {
            let live = live.clone();
            let closed_tx = closed_tx.clone();
            thread::spawn(move || {
                live.close();
                closed_tx.send(()).unwrap();
            })
        })
        .collect();
    for _ in 0..2 {
        closed_rx
            .recv_timeout(WAIT)
            .expect("close() returns promptly");
    }
    for c in closers {
        c.join().unwrap();
    }
    assert!(live.is_finished());
    assert!(!live.is_connected());
    assert!(live.error().is_none(), "closing is not an error");
    let mut drained = 0;
    let err = loop {
        match live.next_frame(WAIT) {
            Ok(_) => drained += 1,
            Err(e) => break e,
        }
    };
    assert!(drained <= live.config().queue_depth);
    match err {
        Error::Disconnected { detail: reason, .. } => assert_eq!(reason, "live stream closed"),
        other => panic!("expected Disconnected, got {other:?}"),
    }
    live.close(); // idempotent
    ended_rx
        .recv_timeout(WAIT)
        .expect("the server saw the close");
    writer.join().unwrap();
    assert_eq!(live.stats().disconnects, 0);
}

#[test]
fn frames_outlive_the_stream() {
    let server = Server::start();
    let live = connect(&server, LiveConfig::default());
    server.accept().write_all(&wire(30, 30, 5)).unwrap();
    let frame = live.next_frame(WAIT).unwrap();
    let latest = live.latest_frame().unwrap();
    drop(live);
    assert_frame(&frame, 30, 30, 5);
    assert_eq!(latest.pixels(), frame.pixels());
}

#[test]
fn next_frame_after_skips_older_frames() {
    let server = Server::start();
    let live = connect(&server, LiveConfig::default().with_queue_depth(4));
    let mut conn = server.accept();
    conn.write_all(&wire(4, 4, 1)).unwrap();
    conn.write_all(&wire(4, 4, 2)).unwrap();
    let f = live.next_frame_after(1, WAIT).unwrap();
    assert_eq!((f.sequence(), f.frame_number()), (2, 2));
    let mark = live.stats().frames;
    assert_eq!(mark, 2);
    conn.write_all(&wire(4, 4, 3)).unwrap();
    assert_eq!(live.next_frame_after(mark, WAIT).unwrap().frame_number(), 3);
    let err = live
        .next_frame_after(3, Duration::from_millis(30))
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
}

#[test]
fn next_frame_times_out_without_frames() {
    let server = Server::start();
    let live = connect(&server, LiveConfig::default());
    let _conn = server.accept();
    let err = live.next_frame(Duration::from_millis(30)).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(live.is_connected());
}

#[test]
fn connect_fails_with_connect_error_after_the_deadline() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let started = Instant::now();
    let err = LiveStream::connect(
        port,
        LiveConfig::default(),
        Instant::now() + Duration::from_millis(200),
    )
    .unwrap_err();
    assert!(started.elapsed() < WAIT);
    match &err {
        Error::Connect { addr, .. } => assert_eq!(addr, &port.to_string()),
        other => panic!("expected Connect, got {other:?}"),
    }
    let bad = LiveStream::connect(
        port,
        LiveConfig::default().with_queue_depth(0),
        Instant::now() + WAIT,
    );
    assert!(matches!(bad, Err(Error::InvalidArgument { .. })));
}

#[test]
fn connect_waits_for_a_late_listener() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (tx, rx) = unbounded();
    let late = thread::spawn(move || {
        // A time gap only: the listener appears after the first attempts.
        thread::sleep(Duration::from_millis(100));
        match TcpListener::bind(addr) {
            Ok(listener) => {
                let server = Server::on(listener);
                let mut conn = server.accept();
                conn.write_all(&wire(3, 3, 1)).unwrap();
                tx.send(true).unwrap();
                // Keep the connection until the test is done with it.
                let _ = conn.read(&mut [0u8; 1]);
            }
            Err(e) => {
                eprintln!("skipped: cannot listen on {addr}: {e}");
                tx.send(false).unwrap();
            }
        }
    });
    let live = LiveStream::connect(addr, LiveConfig::default(), Instant::now() + WAIT);
    if rx.recv_timeout(WAIT).unwrap() {
        let live = live.unwrap();
        assert_frame(&live.next_frame(WAIT).unwrap(), 3, 3, 1);
        drop(live);
    }
    late.join().unwrap();
}
