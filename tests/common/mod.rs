//! A scripted loopback server for client tests: it accepts connections on
//! 127.0.0.1:0 and hands every message it reads to a handler.
#![allow(dead_code)]

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;

use flamingo_client::codec::{FrameReader, Message};
use parking_lot::Mutex;

/// The server's side of one connection.
pub struct Conn {
    pub stream: TcpStream,
}

impl Conn {
    pub fn send(&mut self, m: &Message) {
        let _ = self.stream.write_all(&m.to_bytes());
    }
    pub fn send_with_data(&mut self, m: &Message, data: &[u8]) {
        let mut m = *m;
        m.additional_data_len = data.len() as u32;
        let mut buf = m.to_bytes().to_vec();
        buf.extend_from_slice(data);
        let _ = self.stream.write_all(&buf);
    }
    pub fn send_raw(&mut self, b: &[u8]) {
        let _ = self.stream.write_all(b);
    }
    pub fn close(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// The code the tests' servers echo: unknown to the catalogue, so the
/// client treats its replies as replies and the simulator echoes it.
pub const ECHO: flamingo_client::codec::CommandCode = flamingo_client::codec::CommandCode(0x7777);

/// The one generous timeout of the tests: long enough for a loaded CI
/// machine, short enough that a hang fails the test instead of the run.
pub const LONG: std::time::Duration = std::time::Duration::from_secs(20);

/// What the handler asks the server to do next.
pub enum Next {
    Continue,
    Close,
}

pub struct TestServer {
    pub addr: SocketAddr,
    accept: Option<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl TestServer {
    /// Starts a server; `make` builds one handler per accepted connection.
    pub fn start<H, F>(make: F) -> TestServer
    where
        F: Fn() -> H + Send + 'static,
        H: FnMut(Message, Vec<u8>, &mut Conn) -> Next + Send + 'static,
    {
        TestServer::start_on("127.0.0.1:0", make)
    }

    /// Like `start`, on a given address (to restart a server on the same port).
    pub fn start_on<H, F>(addr: &str, make: F) -> TestServer
    where
        F: Fn() -> H + Send + 'static,
        H: FnMut(Message, Vec<u8>, &mut Conn) -> Next + Send + 'static,
    {
        let listener = TcpListener::bind(addr).unwrap();
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (c2, s2) = (conns.clone(), stop.clone());
        let accept = std::thread::spawn(move || {
            let mut workers = Vec::new();
            for s in listener.incoming() {
                if s2.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = s else { continue };
                stream.set_nodelay(true).unwrap();
                c2.lock().push(stream.try_clone().unwrap());
                let mut handler = make();
                workers.push(std::thread::spawn(move || {
                    let mut conn = Conn {
                        stream: stream.try_clone().unwrap(),
                    };
                    let mut r = stream;
                    let mut framer = FrameReader::new(u32::MAX);
                    let mut data = Vec::new();
                    while let Ok(m) = framer.read_frame(&mut r, &mut data) {
                        if let Next::Close = handler(m, std::mem::take(&mut data), &mut conn) {
                            conn.close();
                            break;
                        }
                    }
                }));
            }
            for w in workers {
                let _ = w.join();
            }
        });
        TestServer {
            addr,
            accept: Some(accept),
            conns,
            stop,
        }
    }

    /// An echo server: answers every message by sending it back.
    pub fn echo() -> TestServer {
        TestServer::echo_on("127.0.0.1:0")
    }

    /// An echo server on a given address.
    pub fn echo_on(addr: &str) -> TestServer {
        TestServer::start_on(addr, || {
            |m: Message, _d: Vec<u8>, c: &mut Conn| {
                c.send(&m);
                Next::Continue
            }
        })
    }

    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Closes every accepted connection from the server side, first waiting
    /// (up to 10 s) until there is at least one: the client's connect can
    /// return before this server's accept loop has registered the socket.
    pub fn drop_connections(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.conns.lock().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        self.close_all();
    }

    fn close_all(&self) {
        for s in self.conns.lock().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.close_all();
        let _ = TcpStream::connect(self.addr);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

// ---------------------------------------------------------------------------
// Helpers for the reliability tests (appended; nothing above depends on them).

/// (threads, open file descriptors) of this process, where the OS tells us
/// (Linux: /proc/self/task and /proc/self/fd); `None` elsewhere.
pub fn proc_counts() -> Option<(usize, usize)> {
    #[cfg(target_os = "linux")]
    {
        let count = |dir: &str| std::fs::read_dir(dir).ok().map(|d| d.count());
        Some((count("/proc/self/task")?, count("/proc/self/fd")?))
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// Names of this process's threads (Linux), for "which threads are left".
pub fn thread_names() -> Vec<String> {
    #[cfg(target_os = "linux")]
    {
        let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
            return Vec::new();
        };
        dir.filter_map(|e| e.ok())
            .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
            .map(|s| s.trim().to_string())
            .collect()
    }
    #[cfg(not(target_os = "linux"))]
    {
        Vec::new()
    }
}

/// Waits (bounded) until [`proc_counts`] equals `base`: threads that were
/// joined are gone at once, but the kernel may take a moment to reap a
/// server-side thread that just returned. Panics with the figures otherwise.
pub fn wait_for_counts(base: Option<(usize, usize)>, what: &str) {
    let Some(base) = base else { return };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = proc_counts().expect("counts available");
        if now == base {
            return;
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "{what}: (threads, fds) = {now:?}, baseline {base:?}; threads: {:?}",
                thread_names()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Polls `cond` every millisecond until it holds; panics after `limit`
/// (a failure bound only, never a timing assertion).
pub fn poll_until(what: &str, limit: std::time::Duration, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !cond() {
        if std::time::Instant::now() > deadline {
            panic!("gave up waiting for {what} after {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// A field of /proc/self/status in KiB (VmPeak, VmHWM, VmRSS...), Linux only.
pub fn vm_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// Distinct start positions, so a position reply names its axis.
pub const RELIABILITY_START: [f64; 4] = [2.5, 7.25, 12.125, 33.0];

/// A simulator with a small camera and distinct start positions.
pub fn small_sim(cfg: flamingo_client::sim::SimConfig) -> flamingo_client::sim::Simulator {
    flamingo_client::sim::Simulator::start(cfg.image_size(64, 48).start_position(RELIABILITY_START))
        .unwrap()
}

/// Connects and waits until the simulator has registered the connection
/// (the client's connect can return before the simulator's accept), so an
/// event broadcast right after reaches it.
pub fn connect_registered(
    sim: &flamingo_client::sim::Simulator,
    cfg: flamingo_client::ClientConfig,
) -> flamingo_client::Client {
    let before = sim.counters().connections;
    let c = flamingo_client::Client::connect(&sim.addr().to_string(), cfg).unwrap();
    poll_until(
        "the simulator to accept",
        std::time::Duration::from_secs(20),
        || sim.counters().connections > before,
    );
    c
}

// ---------------------------------------------------------------------------
// A scripted instrument the test drives message by message (appended; nothing
// above depends on it).

/// A listener on 127.0.0.1 whose connections the test accepts and drives
/// itself, one message at a time: it decides when to read (or to stop
/// reading, so the client's writes fill the TCP window), what to answer and
/// when, and when to drop a link.
pub struct Instrument {
    listener: TcpListener,
}

impl Instrument {
    /// A listener on an ephemeral port.
    pub fn new() -> Instrument {
        Instrument::on(TcpListener::bind("127.0.0.1:0").unwrap())
    }

    /// Wraps a listener the test bound itself (for example on a chosen port).
    pub fn on(listener: TcpListener) -> Instrument {
        listener.set_nonblocking(true).unwrap();
        Instrument { listener }
    }

    pub fn addr(&self) -> String {
        self.listener.local_addr().unwrap().to_string()
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().unwrap().port()
    }

    /// Accepts the next connection; panics if none comes within [`LONG`].
    pub fn accept(&self) -> Link {
        let deadline = std::time::Instant::now() + LONG;
        loop {
            match self.listener.accept() {
                Ok((s, _)) => return Link::new(s),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "no connection to accept within {LONG:?}"
                    );
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(e) => panic!("accept failed: {e}"),
            }
        }
    }
}

/// The instrument's side of one connection.
pub struct Link {
    stream: TcpStream,
    framer: FrameReader,
}

impl Link {
    pub fn new(stream: TcpStream) -> Link {
        stream.set_nonblocking(false).unwrap();
        stream.set_nodelay(true).unwrap();
        // A test that waits for a message that never comes fails instead of hanging.
        stream.set_read_timeout(Some(LONG)).unwrap();
        Link {
            stream,
            framer: FrameReader::new(u32::MAX),
        }
    }

    /// The next message and its additional data; `None` once the link ended.
    pub fn read(&mut self) -> Option<(Message, Vec<u8>)> {
        let mut data = Vec::new();
        let m = self.framer.read_frame(&mut self.stream, &mut data).ok()?;
        Some((m, data))
    }

    /// The next message; its additional data is read and thrown away (no
    /// buffer of its size is kept). `None` once the link ended.
    pub fn read_discarding(&mut self) -> Option<(Message, u64)> {
        let m = self.framer.read_message(&mut self.stream).ok()?;
        let want = u64::from(m.additional_data_len);
        let got = std::io::copy(
            &mut std::io::Read::take(&mut self.stream, want),
            &mut std::io::sink(),
        )
        .ok()?;
        (got == want).then_some((m, got))
    }

    pub fn send(&mut self, m: &Message) {
        let _ = self.stream.write_all(&m.to_bytes());
    }

    pub fn send_with_data(&mut self, m: &Message, data: &[u8]) {
        let mut m = *m;
        m.additional_data_len = data.len() as u32;
        let mut buf = m.to_bytes().to_vec();
        buf.extend_from_slice(data);
        let _ = self.stream.write_all(&buf);
    }

    /// Ends the link from the instrument's side.
    pub fn close(&self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }
}

/// Reads messages from `link` and answers each with itself (its additional
/// data dropped) until the link ends.
pub fn echo_headers(mut link: Link) {
    while let Some((m, _)) = link.read_discarding() {
        link.send(&m.with_additional_data_len(0));
    }
}

/// True while some socket of this machine is trying to connect (SYN sent,
/// no answer yet) to 127.0.0.1:`port` (Linux: /proc/net/tcp).
#[cfg(target_os = "linux")]
pub fn connecting_to(port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let remote = format!("0100007F:{port:04X}");
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && f[2] == remote && f[3] == "02"
    })
}
