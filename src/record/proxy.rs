//! The recording proxy: a transparent man-in-the-middle between clients and
//! the instrument, on both ports, that records what passes into a file.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Condvar, Mutex};

use super::format::{subsampled_len, Direction, EndCause, Entry, Port, Record};
use super::tee::{Subsampler, Tee};
use super::writer::RecordingWriter;
use crate::codec::{
    FrameError, FrameReader, LiveHeader, DEFAULT_ADDITIONAL_DATA_LIMIT, DEFAULT_MAX_IMAGE_BYTES,
    LIVE_HEADER_LEN,
};
use crate::transport::{self, SocketOptions};

/// How a [`Proxy`] listens, where it forwards to and what it records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyConfig {
    /// The command port clients connect to; the live port is the port
    /// above it. Port 0 picks a free pair. Listen on `0.0.0.0` to accept
    /// clients on other machines.
    pub listen: SocketAddr,
    /// The instrument's command port.
    pub upstream: SocketAddr,
    /// The instrument's live port. Default (`None`): `upstream`'s port + 1.
    pub upstream_live: Option<SocketAddr>,
    /// Pixels of live frames to record: 0 (default) records headers only;
    /// `s > 0` every `s`-th pixel of every `s`-th row (1: every pixel).
    pub pixels: u16,
    /// Additional-data bytes recorded per message (the first ones; the
    /// rest is forwarded, not recorded). Default 1 MiB: settings and
    /// workflow files are a few KiB.
    pub max_data: u32,
    /// Bytes of records waiting for the disk. When the disk falls this far
    /// behind, further records are dropped (and counted in the file) rather
    /// than slowing the forwarding down. Default 64 MiB.
    pub queue_bytes: usize,
    /// How long connecting to the instrument may take, per client
    /// connection. Default 3 s.
    pub connect_timeout: Duration,
}

impl ProxyConfig {
    /// Listens on `listen`, forwards to the instrument at `upstream`.
    pub fn new(listen: SocketAddr, upstream: SocketAddr) -> ProxyConfig {
        ProxyConfig {
            listen,
            upstream,
            upstream_live: None,
            pixels: 0,
            max_data: 1024 * 1024,
            queue_bytes: 64 * 1024 * 1024,
            connect_timeout: Duration::from_secs(3),
        }
    }
    /// Sets [`pixels`](ProxyConfig::pixels).
    #[must_use]
    pub fn pixels(mut self, subsample: u16) -> Self {
        self.pixels = subsample;
        self
    }
    /// Sets [`upstream_live`](ProxyConfig::upstream_live).
    #[must_use]
    pub fn upstream_live(mut self, addr: SocketAddr) -> Self {
        self.upstream_live = Some(addr);
        self
    }
    /// Sets [`max_data`](ProxyConfig::max_data).
    #[must_use]
    pub fn max_data(mut self, bytes: u32) -> Self {
        self.max_data = bytes;
        self
    }
    /// Sets [`queue_bytes`](ProxyConfig::queue_bytes).
    #[must_use]
    pub fn queue_bytes(mut self, bytes: usize) -> Self {
        self.queue_bytes = bytes;
        self
    }
    /// Sets [`connect_timeout`](ProxyConfig::connect_timeout).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    fn live_upstream(&self) -> SocketAddr {
        self.upstream_live.unwrap_or_else(|| {
            let mut a = self.upstream;
            a.set_port(a.port().wrapping_add(1));
            a
        })
    }
}

/// What a [`Proxy`] has seen and written so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Client connections accepted on either port.
    pub connections: u64,
    /// Client connections closed because the instrument could not be reached.
    pub upstream_failures: u64,
    /// Command-port messages recorded (both directions).
    pub messages: u64,
    /// Live frames recorded.
    pub frames: u64,
    /// Bytes forwarded from clients to the instrument.
    pub bytes_to_instrument: u64,
    /// Bytes forwarded from the instrument to clients.
    pub bytes_to_client: u64,
    /// Records written to the file.
    pub records: u64,
    /// Records dropped because the disk could not keep up.
    pub dropped_records: u64,
    /// Their payload bytes.
    pub dropped_bytes: u64,
    /// Bytes written to the file.
    pub file_bytes: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    upstream_failures: AtomicU64,
    messages: AtomicU64,
    frames: AtomicU64,
    to_instrument: AtomicU64,
    to_client: AtomicU64,
    records: AtomicU64,
    dropped_records: AtomicU64,
    dropped_bytes: AtomicU64,
    file_bytes: AtomicU64,
}

/// Records waiting for the writer thread.
#[derive(Default)]
struct Queue {
    records: Vec<(Record, usize)>,
    /// Their payload bytes (with a fixed allowance per record).
    bytes: usize,
    /// The writer waits without a timeout: the next record must wake it.
    writer_idle: bool,
    finish: bool,
}

struct Shared {
    cfg: ProxyConfig,
    t0: Instant,
    stopping: AtomicBool,
    /// Sockets of open connections, to shut down when stopping.
    conns: Mutex<HashMap<u32, Vec<TcpStream>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    next_conn: AtomicU32,
    queue: Mutex<Queue>,
    queue_cv: Condvar,
    counters: Counters,
}

/// Read size of the forwarding threads: large enough for live frames to
/// flow at full rate, small enough that a command-port message is
/// forwarded the moment it arrives (a read returns what is there).
const CHUNK: usize = 256 * 1024;
/// How often the writer thread takes the queued records while they keep
/// coming. It is not woken for each record (on a small PC every wake-up
/// competes with the forwarding threads for a CPU), only for the first
/// after an idle spell, or when [`WAKE_BYTES`] have piled up.
const BATCH_EVERY: Duration = Duration::from_millis(20);
/// Queued bytes that wake the writer at once (live pixels).
const WAKE_BYTES: usize = 4 * 1024 * 1024;

impl Shared {
    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    fn time(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.t0)
    }

    /// Queues a record for the writer, or drops and counts it when the disk
    /// is too far behind: forwarding never waits for the disk.
    fn push(&self, time: Instant, conn: u32, entry: Entry) {
        let size = entry.payload_len() + 64;
        let record = Record {
            time: self.time(time),
            conn,
            entry,
        };
        let mut q = self.queue.lock();
        if q.bytes.saturating_add(size) > self.cfg.queue_bytes || q.finish {
            drop(q);
            self.counters
                .dropped_records
                .fetch_add(1, Ordering::Relaxed);
            self.counters
                .dropped_bytes
                .fetch_add(size as u64, Ordering::Relaxed);
            return;
        }
        q.records.push((record, size));
        q.bytes += size;
        let wake = std::mem::take(&mut q.writer_idle) || q.bytes >= WAKE_BYTES;
        drop(q);
        if wake {
            self.queue_cv.notify_one();
        }
    }

    /// True if `bytes` more would not fit the queue now (pixels are then
    /// not captured for this frame).
    fn crowded(&self, bytes: usize) -> bool {
        self.queue.lock().bytes.saturating_add(bytes) > self.cfg.queue_bytes
    }

    fn spawn(self: &Arc<Self>, name: String, f: impl FnOnce() + Send + 'static) -> bool {
        let mut threads = self.threads.lock();
        if self.is_stopping() {
            return false;
        }
        threads.retain(|h| !h.is_finished());
        match std::thread::Builder::new()
            .name(format!("flamingo-rec-{name}"))
            .spawn(f)
        {
            Ok(h) => {
                threads.push(h);
                true
            }
            Err(e) => {
                log::warn!("recorder: cannot start a thread: {e}");
                false
            }
        }
    }

    fn stats(&self) -> ProxyStats {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ProxyStats {
            connections: g(&c.connections),
            upstream_failures: g(&c.upstream_failures),
            messages: g(&c.messages),
            frames: g(&c.frames),
            bytes_to_instrument: g(&c.to_instrument),
            bytes_to_client: g(&c.to_client),
            records: g(&c.records),
            dropped_records: g(&c.dropped_records),
            dropped_bytes: g(&c.dropped_bytes),
            file_bytes: g(&c.file_bytes),
        }
    }
}

/// A running recording proxy.
///
/// It listens on a command port and the port above it, as the instrument
/// does. Each client connection is matched by a connection to the
/// instrument's same port, and two threads (one reader per socket) forward
/// the bytes each way: unchanged and in order, each chunk written on as
/// soon as it has been parsed (with the codec's framing) into records, a
/// matter of microseconds, so a reply is always recorded after its
/// request. The records are every
/// command-port message in both directions, every live frame header (and,
/// if asked, subsampled pixels), each with the time it arrived and its
/// connection. A writer thread puts the records on disk; when the disk
/// falls [`queue_bytes`](ProxyConfig::queue_bytes) behind, records are
/// dropped and counted instead of slowing the instrument's traffic.
/// Back-pressure passes through: a client that stops reading stops the
/// proxy reading from the instrument, as it would without the proxy.
///
/// [`stop`](Proxy::stop) (or dropping the proxy) closes every connection,
/// writes the end record and flushes the file.
///
/// ```
/// use flamingo_client::record::{Proxy, ProxyConfig, RecordingReader, Entry};
/// use flamingo_client::sim::{SimConfig, Simulator};
/// use flamingo_client::Client;
///
/// let sim = Simulator::start(SimConfig::default().image_size(64, 48))?;
/// let path = std::env::temp_dir().join(format!("doc-proxy-{}.flrec", std::process::id()));
/// let proxy = Proxy::create(ProxyConfig::new("127.0.0.1:0".parse()?, sim.addr()), &path)?;
///
/// let client = Client::connect(&proxy.addr().to_string(), Default::default())?;
/// let size = client.camera().image_size()?;
/// assert_eq!((size.width, size.height), (64, 48));
/// client.close();
/// let stats = proxy.stop()?;
/// assert_eq!(stats.messages, 2); // the request and its reply
///
/// let mut reader = RecordingReader::open(&path)?;
/// let messages = reader.by_ref().filter(|r| matches!(r.as_ref().map(|r| &r.entry), Ok(Entry::Message { .. }))).count();
/// assert_eq!(messages, 2);
/// assert!(reader.finished());
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Proxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    live_addr: SocketAddr,
    control: Mutex<Option<Control>>,
}

struct Control {
    accept: Vec<JoinHandle<()>>,
    writer: JoinHandle<io::Result<()>>,
    sync: Option<File>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("addr", &self.addr)
            .field("live_addr", &self.live_addr)
            .field("upstream", &self.shared.cfg.upstream)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// Starts recording into a new file at `path` (replaced if it exists);
    /// [`stop`](Proxy::stop) also syncs it to disk.
    pub fn create(config: ProxyConfig, path: impl AsRef<Path>) -> io::Result<Proxy> {
        let path = path.as_ref();
        let file = File::create(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot create the recording {}: {e}", path.display()),
            )
        })?;
        let sync = file.try_clone().ok();
        Proxy::start_inner(config, Box::new(file), sync)
    }

    /// Starts recording into `out` (buffered by the proxy).
    pub fn start(config: ProxyConfig, out: impl Write + Send + 'static) -> io::Result<Proxy> {
        Proxy::start_inner(config, Box::new(out), None)
    }

    fn start_inner(
        config: ProxyConfig,
        out: Box<dyn Write + Send>,
        sync: Option<File>,
    ) -> io::Result<Proxy> {
        let (cmd, live) = bind_pair(config.listen)?;
        let addr = cmd.local_addr()?;
        let live_addr = live.local_addr()?;
        let started_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let meta: Vec<(&str, String)> = vec![
            (
                "tool",
                format!("flamingo-client {}", env!("CARGO_PKG_VERSION")),
            ),
            ("started_unix_ms", started_ms.to_string()),
            ("listen", addr.to_string()),
            ("listen_live", live_addr.to_string()),
            ("upstream", config.upstream.to_string()),
            ("upstream_live", config.live_upstream().to_string()),
            ("pixels", config.pixels.to_string()),
            ("max_data", config.max_data.to_string()),
        ];
        let meta: Vec<(&str, &str)> = meta.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let writer = RecordingWriter::new(BufWriter::with_capacity(CHUNK, out), &meta)?;
        let shared = Arc::new(Shared {
            cfg: config,
            t0: Instant::now(),
            stopping: AtomicBool::new(false),
            conns: Mutex::new(HashMap::new()),
            threads: Mutex::new(Vec::new()),
            next_conn: AtomicU32::new(1),
            queue: Mutex::new(Queue::default()),
            queue_cv: Condvar::new(),
            counters: Counters::default(),
        });
        shared
            .counters
            .file_bytes
            .store(writer.bytes(), Ordering::Relaxed);
        shared.counters.records.store(1, Ordering::Relaxed);
        let sh = shared.clone();
        let writer = std::thread::Builder::new()
            .name("flamingo-rec-writer".into())
            .spawn(move || write_loop(writer, sh))?;
        let proxy = Proxy {
            shared: shared.clone(),
            addr,
            live_addr,
            control: Mutex::new(Some(Control {
                accept: Vec::new(),
                writer,
                sync,
            })),
        };
        for (listener, port) in [(cmd, Port::Command), (live, Port::Live)] {
            let sh = shared.clone();
            let h = std::thread::Builder::new()
                .name(format!("flamingo-rec-accept-{}", port.name()))
                .spawn(move || accept_loop(sh, listener, port))?;
            if let Some(c) = proxy.control.lock().as_mut() {
                c.accept.push(h);
            }
        }
        log::info!(
            "recorder: listening on {addr} (live {live_addr}), forwarding to {}",
            shared.cfg.upstream
        );
        Ok(proxy)
    }

    /// The command port clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The live port (command port + 1).
    pub fn live_addr(&self) -> SocketAddr {
        self.live_addr
    }

    /// The configuration.
    pub fn config(&self) -> &ProxyConfig {
        &self.shared.cfg
    }

    /// The counters so far.
    pub fn stats(&self) -> ProxyStats {
        self.shared.stats()
    }

    /// Stops: closes the listeners and every connection (clients and the
    /// instrument see their connection close), joins every thread, writes
    /// the end record and flushes (and, for [`create`](Proxy::create),
    /// syncs) the file. Returns the final counters, or the first error
    /// writing the file. Idempotent; later calls return the counters.
    pub fn stop(&self) -> io::Result<ProxyStats> {
        let Some(ctl) = self.control.lock().take() else {
            return Ok(self.stats());
        };
        let sh = &self.shared;
        {
            let _c = sh.conns.lock();
            let _t = sh.threads.lock();
            sh.stopping.store(true, Ordering::SeqCst);
        }
        let wake: Vec<_> = [self.addr, self.live_addr]
            .iter()
            .filter_map(|a| wake_connect(*a))
            .collect();
        for h in ctl.accept {
            let _ = h.join();
        }
        drop(wake);
        for (_, socks) in sh.conns.lock().drain() {
            for s in socks {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        loop {
            let threads = std::mem::take(&mut *sh.threads.lock());
            if threads.is_empty() {
                break;
            }
            for h in threads {
                let _ = h.join();
            }
        }
        sh.queue.lock().finish = true;
        sh.queue_cv.notify_one();
        let written = ctl
            .writer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the recording writer panicked")));
        let synced = match &ctl.sync {
            Some(f) => f.sync_all(),
            None => Ok(()),
        };
        written.and(synced)?;
        log::info!("recorder: stopped ({:?})", self.stats());
        Ok(self.stats())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            log::warn!("recorder: finishing the recording failed: {e}");
        }
    }
}

/// Writes queued records in batches until told to finish, flushing after
/// each batch: while records keep coming it takes them every
/// [`BATCH_EVERY`]; when none come it sleeps until the next one.
fn write_loop(
    mut w: RecordingWriter<BufWriter<Box<dyn Write + Send>>>,
    sh: Arc<Shared>,
) -> io::Result<()> {
    let mut error: Option<io::Error> = None;
    let mut noted_drops = 0u64;
    let mut batch = Vec::new();
    loop {
        let finish = {
            let mut q = sh.queue.lock();
            if q.records.is_empty() && !q.finish {
                q.writer_idle = true;
                while q.writer_idle && !q.finish {
                    sh.queue_cv.wait(&mut q);
                }
            } else if !q.finish && q.bytes < WAKE_BYTES {
                // Busy: let records gather rather than waking per record.
                let _ = sh.queue_cv.wait_for(&mut q, BATCH_EVERY);
            }
            std::mem::swap(&mut batch, &mut q.records);
            q.bytes = 0;
            q.finish
        };
        for (r, _) in batch.drain(..) {
            if error.is_some() {
                sh.counters.dropped_records.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if let Err(e) = w.write(&r) {
                log::error!(
                    "recorder: writing the recording failed: {e}; the proxy keeps forwarding"
                );
                error = Some(e);
            }
        }
        let dropped = sh.counters.dropped_records.load(Ordering::Relaxed);
        if dropped != noted_drops && error.is_none() {
            let note = Record {
                time: sh.time(Instant::now()),
                conn: 0,
                entry: Entry::Note(format!(
                    "{dropped} records dropped so far: the disk did not keep up"
                )),
            };
            if let Err(e) = w.write(&note) {
                error = Some(e);
            }
            noted_drops = dropped;
        }
        if error.is_none() {
            if let Err(e) = w.flush() {
                error = Some(e);
            }
        }
        sh.counters.records.store(w.records(), Ordering::Relaxed);
        sh.counters.file_bytes.store(w.bytes(), Ordering::Relaxed);
        if finish {
            break;
        }
    }
    if let Some(e) = error {
        return Err(e);
    }
    let c = &sh.counters;
    let mut out = w.finish(
        c.dropped_records.load(Ordering::Relaxed),
        c.dropped_bytes.load(Ordering::Relaxed),
    )?;
    c.records.fetch_add(1, Ordering::Relaxed);
    out.flush()?;
    Ok(())
}

fn accept_loop(sh: Arc<Shared>, listener: TcpListener, port: Port) {
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(x) => x,
            Err(e) => {
                if sh.is_stopping() {
                    return;
                }
                log::warn!("recorder: accept on the {} port failed: {e}", port.name());
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        if sh.is_stopping() {
            return;
        }
        let id = sh.next_conn.fetch_add(1, Ordering::Relaxed);
        sh.counters.connections.fetch_add(1, Ordering::Relaxed);
        log::debug!("recorder: connection {id} ({}) from {peer}", port.name());
        // Recorded as the client sees it: connected now, even though the
        // connection to the instrument is still to be made.
        sh.push(
            Instant::now(),
            id,
            Entry::Open {
                port,
                peer: peer.to_string(),
            },
        );
        let s2 = sh.clone();
        sh.spawn(format!("{id}-up"), move || {
            serve(s2, id, port, stream, peer)
        });
    }
}

/// Connects to the instrument for one client connection and forwards both
/// ways (the other direction on a thread of its own).
fn serve(sh: Arc<Shared>, id: u32, port: Port, client: TcpStream, peer: SocketAddr) {
    let _ = client.set_nodelay(true);
    let (target, options) = match port {
        Port::Command => (sh.cfg.upstream, SocketOptions::command(true)),
        Port::Live => (sh.cfg.live_upstream(), SocketOptions::live(0)),
    };
    let up = match connect(target, sh.cfg.connect_timeout, options) {
        Ok(s) => s,
        Err(e) => {
            sh.counters
                .upstream_failures
                .fetch_add(1, Ordering::Relaxed);
            log::warn!("recorder: cannot connect to the instrument at {target}: {e}");
            let now = Instant::now();
            sh.push(
                now,
                id,
                Entry::Note(format!(
                    "{} connection from {peer}: cannot connect to the instrument at {target}: {e}; the client's connection was closed",
                    port.name()
                )),
            );
            for direction in [Direction::ToClient, Direction::ToInstrument] {
                sh.push(
                    now,
                    id,
                    Entry::StreamEnd {
                        direction,
                        cause: EndCause::Failed,
                        bytes: 0,
                        detail: format!("cannot connect to the instrument at {target}: {e}"),
                    },
                );
            }
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
    };
    if let Some(t) = transport::CLOSE_POLL {
        let _ = client.set_read_timeout(Some(t));
        let _ = up.set_read_timeout(Some(t));
    }
    let clones = (|| Ok::<_, io::Error>((client.try_clone()?, up.try_clone()?)))();
    let Ok((client2, up2)) = clones else {
        let _ = client.shutdown(Shutdown::Both);
        let _ = up.shutdown(Shutdown::Both);
        return;
    };
    {
        let mut conns = sh.conns.lock();
        if sh.is_stopping() {
            let _ = client.shutdown(Shutdown::Both);
            let _ = up.shutdown(Shutdown::Both);
            return;
        }
        let (Ok(a), Ok(b)) = (client.try_clone(), up.try_clone()) else {
            return;
        };
        conns.insert(id, vec![a, b]);
    }
    let remaining = Arc::new(AtomicU32::new(2));
    let (s2, r2) = (sh.clone(), remaining.clone());
    let started = sh.spawn(format!("{id}-down"), move || {
        forward(&s2, id, port, Direction::ToClient, &up2, &client2);
        finish_conn(&s2, id, &r2);
    });
    if !started {
        remaining.fetch_sub(1, Ordering::SeqCst);
        let _ = up.shutdown(Shutdown::Both);
    }
    forward(&sh, id, port, Direction::ToInstrument, &client, &up);
    finish_conn(&sh, id, &remaining);
}

/// One blocking connection attempt with the client's socket options
/// (`TCP_NODELAY`, keepalive, receive buffer), within `timeout`.
fn connect(target: SocketAddr, timeout: Duration, options: SocketOptions) -> io::Result<TcpStream> {
    let socket = transport::new_socket(target, options)?;
    socket.connect_timeout(&target.into(), timeout.max(Duration::from_millis(1)))?;
    transport::finish(socket, options)
}

/// The last of a connection's two threads forgets its sockets.
fn finish_conn(sh: &Shared, id: u32, remaining: &AtomicU32) {
    if remaining.fetch_sub(1, Ordering::SeqCst) == 1 {
        if let Some(socks) = sh.conns.lock().remove(&id) {
            for s in socks {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

/// Forwards one direction until it ends, recording what it carries, then
/// records how it ended and passes the end on.
fn forward(sh: &Shared, id: u32, port: Port, dir: Direction, src: &TcpStream, dst: &TcpStream) {
    let counter = match dir {
        Direction::ToInstrument => &sh.counters.to_instrument,
        Direction::ToClient => &sh.counters.to_client,
    };
    let mut tee = Tee::new(src, dst, &sh.stopping, counter, CHUNK);
    let result = match (port, dir) {
        (Port::Command, _) => record_commands(sh, id, dir, &mut tee),
        (Port::Live, Direction::ToClient) => record_frames(sh, id, &mut tee),
        (Port::Live, Direction::ToInstrument) => tee.pass_through().map(|()| None),
    };
    // Whatever was read is delivered, even when parsing stopped early.
    let result = result.and_then(|note| tee.forward_pending().map(|()| note));
    let (cause, detail) = if sh.is_stopping() {
        (EndCause::Stopped, "the recorder was stopped".to_string())
    } else if let Some(e) = &tee.write_error {
        let to = match dir {
            Direction::ToInstrument => "instrument",
            Direction::ToClient => "client",
        };
        (
            EndCause::Failed,
            format!("forwarding to the {to} failed: {e}"),
        )
    } else {
        match result {
            Ok(note) => (EndCause::Closed, note.unwrap_or_default()),
            Err(e) => (EndCause::Failed, e.to_string()),
        }
    };
    log::debug!(
        "recorder: connection {id} {}: {} ({detail})",
        dir.name(),
        cause.name()
    );
    sh.push(
        Instant::now(),
        id,
        Entry::StreamEnd {
            direction: dir,
            cause,
            bytes: tee.total,
            detail,
        },
    );
    match cause {
        // An orderly end passes on as an orderly end: the other direction
        // keeps flowing until its sender closes too.
        EndCause::Closed => {
            let _ = dst.shutdown(Shutdown::Write);
        }
        _ => {
            let _ = dst.shutdown(Shutdown::Both);
            let _ = src.shutdown(Shutdown::Both);
        }
    }
}

/// Records every message of a command-port direction. `Ok(Some(note))`:
/// the stream ended inside a message.
fn record_commands(
    sh: &Shared,
    id: u32,
    dir: Direction,
    tee: &mut Tee<'_>,
) -> io::Result<Option<String>> {
    // The same limit a client applies: a larger length is refused and the
    // bytes after the message are framed anew (section 5 of protocol.md).
    let limit = DEFAULT_ADDITIONAL_DATA_LIMIT;
    let mut reader = FrameReader::new(limit);
    let mut skipped = 0u64;
    loop {
        let got = reader.read_message(tee);
        let s = reader.stats().bytes_skipped;
        if s != skipped {
            sh.push(
                tee.fill_time,
                id,
                Entry::Skipped {
                    direction: dir,
                    bytes: s - skipped,
                },
            );
            skipped = s;
        }
        let msg = match got {
            Ok(m) => m,
            Err(FrameError::Closed) => return Ok(None),
            Err(FrameError::EofMidMessage { got, expected }) => {
                return Ok(Some(format!(
                    "the stream ended inside a message ({got} of {expected} bytes)"
                )))
            }
            Err(FrameError::Io(e)) | Err(FrameError::Partial { source: e, .. }) => return Err(e),
            Err(e) => return Err(io::Error::other(e.to_string())),
        };
        let at = tee.fill_time;
        let len = msg.additional_data_len;
        let (data_seen, data) = if len == 0 || len > limit {
            (0, Vec::new())
        } else {
            let cap = len.min(sh.cfg.max_data) as usize;
            let mut data = Vec::with_capacity(cap.min(64 * 1024));
            let seen = tee.consume(u64::from(len), |chunk| {
                let room = cap - data.len();
                data.extend_from_slice(&chunk[..room.min(chunk.len())]);
            })?;
            (seen as u32, data)
        };
        sh.counters.messages.fetch_add(1, Ordering::Relaxed);
        sh.push(
            at,
            id,
            Entry::Message {
                direction: dir,
                message: msg,
                data_seen,
                data,
            },
        );
        if data_seen < len && len <= limit {
            return Ok(Some(format!(
                "the stream ended inside the additional data of a message ({data_seen} of {len} bytes)"
            )));
        }
    }
}

/// Records the frames of a live connection (instrument to client).
fn record_frames(sh: &Shared, id: u32, tee: &mut Tee<'_>) -> io::Result<Option<String>> {
    loop {
        let mut raw = [0u8; LIVE_HEADER_LEN];
        let got = tee.read_full(&mut raw)?;
        if got == 0 {
            return Ok(None);
        }
        if got < LIVE_HEADER_LEN {
            return Ok(Some(format!(
                "the stream ended inside a live header ({got} of {LIVE_HEADER_LEN} bytes)"
            )));
        }
        let at = tee.fill_time;
        let header = LiveHeader::decode(&raw);
        let n = match header.validate(DEFAULT_MAX_IMAGE_BYTES) {
            Ok(n) => n,
            Err(e) => {
                // No markers to resynchronise on: a client drops the
                // connection here; the bytes still pass.
                sh.push(
                    at,
                    id,
                    Entry::Unparsed {
                        direction: Direction::ToClient,
                        reason: e.to_string(),
                        bytes: raw.to_vec(),
                    },
                );
                tee.pass_through()?;
                return Ok(None);
            }
        };
        let mut s = sh.cfg.pixels;
        let want = subsampled_len(header.width, header.height, s) as usize;
        if s > 0 && sh.crowded(want) {
            s = 0;
            sh.counters
                .dropped_bytes
                .fetch_add(want as u64, Ordering::Relaxed);
        }
        let mut sub = (s > 0).then(|| Subsampler::new(header.width, s, want));
        let seen = tee.consume(n as u64, |chunk| {
            if let Some(sub) = sub.as_mut() {
                sub.feed(chunk);
            }
        })?;
        sh.counters.frames.fetch_add(1, Ordering::Relaxed);
        sh.push(
            at,
            id,
            Entry::Frame {
                header,
                subsample: s,
                pixels_seen: seen as u32,
                pixels: sub.map(|s| s.out).unwrap_or_default(),
            },
        );
        if seen < n as u64 {
            return Ok(Some(format!(
                "the stream ended inside a frame ({seen} of {n} pixel bytes)"
            )));
        }
    }
}

/// Binds the command listener and the one above it; with port 0, a free
/// pair.
fn bind_pair(listen: SocketAddr) -> io::Result<(TcpListener, TcpListener)> {
    let with_port = |p: u16| SocketAddr::new(listen.ip(), p);
    if listen.port() == u16::MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "listen port 65535 leaves no room for the live port (port + 1)",
        ));
    }
    if listen.port() != 0 {
        let cmd = bind(with_port(listen.port()))?;
        let live = bind(with_port(listen.port() + 1))?;
        return Ok((cmd, live));
    }
    let mut last = None;
    for _ in 0..64 {
        let cmd = bind(with_port(0))?;
        let p = cmd.local_addr()?.port();
        if p == u16::MAX {
            continue;
        }
        match bind(with_port(p + 1)) {
            Ok(live) => return Ok((cmd, live)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::ErrorKind::AddrInUse.into()))
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // A restarted recorder can bind a port whose old connections linger
    // in TIME_WAIT (on Windows this option would allow stealing a port).
    #[cfg(not(windows))]
    s.set_reuse_address(true)?;
    s.bind(&addr.into())
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    s.listen(128)?;
    Ok(s.into())
}

/// Starts a connection to a listener (to wake its blocked accept); a
/// wildcard address is reached through loopback.
fn wake_connect(addr: SocketAddr) -> Option<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let ip = match addr.ip() {
        IpAddr::V4(v) if v.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v) if v.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let to = SocketAddr::new(ip, addr.port());
    let s = Socket::new(Domain::for_address(to), Type::STREAM, Some(Protocol::TCP)).ok()?;
    s.set_nonblocking(true).ok()?;
    let _ = s.connect(&to.into());
    Some(s)
}
