//! Teardown of the live stream in every state: `close()` (and dropping the
//! stream, and closing the client that owns it) returns within the 50 ms
//! budget even while the reader is inside a reconnection attempt that the
//! instrument never answers, and every concurrent `close()` returns only
//! once the reader has ended.
//!
//! "Never answers": a listener whose accept queue is full drops new SYNs,
//! so a connect to it neither succeeds nor is refused until its timeout.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use flamingo_client::codec::LiveHeader;
use flamingo_client::live::{LiveConfig, LiveStream};
use flamingo_client::{Client, ClientConfig};
use socket2::{Domain, Socket, Type};

use crate::common::{poll_until, LONG};

/// The budget is 50 ms; the assertion is generous so a loaded machine
/// does not fail it, while a close that waits for a connect attempt (2 s)
/// still does.
const CLOSE_BOUND: Duration = Duration::from_millis(500);

/// A listener with a backlog of 0 on `addr`, that accepts nothing by itself.
fn small_listener(addr: SocketAddr) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.bind(&addr.into())?;
    s.listen(0)?;
    Ok(s)
}

/// Fills `listener`'s accept queue, so further connects hang.
fn fill_backlog(listener: &Socket) -> Vec<TcpStream> {
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    (0..4)
        .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_millis(100)).ok())
        .collect()
}

fn one_frame(n: u32) -> Vec<u8> {
    let (w, h) = (4u32, 2u32);
    let header = LiveHeader {
        image_size: w * h * 2,
        width: w,
        height: h,
        scale_min: 0,
        scale_max: 100,
        timestamp_ms: n,
        frame_number: n,
        exposure_us: 1,
        reserved: [0, 0],
    };
    let mut out = header.to_bytes().to_vec();
    out.resize(out.len() + (w * h * 2) as usize, 7);
    out
}

/// A live "instrument" whose link the test drops, after which every
/// reconnection attempt hangs.
struct Hanging {
    listener: Socket,
    server_side: Option<TcpStream>,
    _fillers: Vec<TcpStream>,
}

impl Hanging {
    /// Accepts the stream's connection (already queued) and sends a frame.
    fn serve(listener: Socket) -> Hanging {
        let (conn, _) = listener.accept().unwrap();
        let mut conn: TcpStream = conn.into();
        conn.write_all(&one_frame(1)).unwrap();
        let fillers = fill_backlog(&listener);
        Hanging {
            listener,
            server_side: Some(conn),
            _fillers: fillers,
        }
    }

    /// Drops the link: the reader starts reconnecting at once (its last
    /// link delivered a frame) into the full backlog.
    fn drop_link(&mut self) {
        drop(self.server_side.take());
    }
}

/// A live stream on a fresh backlog-0 listener, with its first frame taken.
fn hanging_stream() -> (Hanging, LiveStream) {
    let listener = small_listener(([127, 0, 0, 1], 0).into()).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let live = LiveStream::connect(addr, LiveConfig::default(), Instant::now() + LONG).unwrap();
    let hanging = Hanging::serve(listener);
    live.next_frame(LONG).unwrap();
    (hanging, live)
}

fn wait_reconnecting(live: &LiveStream) {
    poll_until("the live link is lost", LONG, || {
        live.stats().disconnects == 1 && !live.is_connected()
    });
}

/// Closes the stream at several points after the link was lost (before,
/// during and well into the reconnection attempt): each close returns
/// within the bound, with the reader ended.
#[test]
fn close_during_a_hanging_reconnect_returns_promptly() {
    let mut worst = Duration::ZERO;
    for after_ms in [0u64, 1, 5, 20, 100, 300] {
        let (mut hanging, live) = hanging_stream();
        hanging.drop_link();
        wait_reconnecting(&live);
        // Not a synchronisation: varies the state the close meets.
        thread::sleep(Duration::from_millis(after_ms));
        let t = Instant::now();
        live.close();
        let took = t.elapsed();
        println!("live close {after_ms} ms into a hanging reconnect: {took:?}");
        assert!(live.is_finished(), "close returned before the reader ended");
        assert!(took < CLOSE_BOUND, "close took {took:?}");
        assert!(live.error().is_none(), "closing is not an error");
        worst = worst.max(took);
        drop(hanging.listener);
    }
    println!("live close during a hanging reconnect: worst {worst:?}");
}

/// Dropping the stream is closing it: just as prompt.
#[test]
fn drop_during_a_hanging_reconnect_returns_promptly() {
    let (mut hanging, live) = hanging_stream();
    hanging.drop_link();
    wait_reconnecting(&live);
    thread::sleep(Duration::from_millis(20)); // into the attempt
    let t = Instant::now();
    drop(live);
    let took = t.elapsed();
    println!("live drop during a hanging reconnect: {took:?}");
    assert!(took < CLOSE_BOUND, "drop took {took:?}");
}

/// Two threads close at once: both return promptly, and neither before
/// the reader has ended.
#[test]
fn concurrent_closes_both_wait_for_the_end_of_the_reader() {
    for round in 0..5 {
        let (mut hanging, live) = hanging_stream();
        let live = Arc::new(live);
        hanging.drop_link();
        wait_reconnecting(&live);
        thread::sleep(Duration::from_millis(10)); // into the attempt
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let closers: Vec<_> = (0..2)
            .map(|_| {
                let live = live.clone();
                let barrier = barrier.clone();
                thread::spawn(move || {
                    barrier.wait();
                    let t = Instant::now();
                    live.close();
                    (t.elapsed(), live.is_finished())
                })
            })
            .collect();
        for c in closers {
            let (took, finished) = c.join().unwrap();
            println!("round {round}: concurrent live close: {took:?}");
            assert!(finished, "a close returned before the reader ended");
            assert!(took < CLOSE_BOUND, "close took {took:?}");
        }
    }
}

/// The client's `close()` closes its live stream: it too returns promptly
/// while the live reader is inside a hanging reconnection attempt.
#[test]
fn client_close_during_a_hanging_live_reconnect_returns_promptly() {
    // A command port P, and on P + 1 a backlog-0 listener.
    let (command, live_listener) = loop {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if port == u16::MAX {
            continue;
        }
        if let Ok(s) = small_listener(([127, 0, 0, 1], port + 1).into()) {
            break (l, s);
        }
    };
    let addr = command.local_addr().unwrap().to_string();
    let accept = thread::spawn(move || command.accept().map(|(s, _)| s));
    let c = Client::connect(&addr, ClientConfig::default()).unwrap();
    let _command_side = accept.join().unwrap().unwrap();
    let live = c.live(LONG).unwrap();
    let mut hanging = Hanging::serve(live_listener);
    live.next_frame(LONG).unwrap();
    hanging.drop_link();
    wait_reconnecting(&live);
    thread::sleep(Duration::from_millis(20)); // into the attempt
    let t = Instant::now();
    c.close();
    let took = t.elapsed();
    println!("client close during a hanging live reconnect: {took:?}");
    assert!(live.is_finished(), "the live reader still runs");
    assert!(took < CLOSE_BOUND, "client close took {took:?}");
}
