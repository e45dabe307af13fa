//! Benchmark: flamingo-client against raw std::net baselines, in one run.
//!
//! ```text
//! cargo run --release --example bench                  # full run, ~1-2 min
//! cargo run --release --example bench -- --quick --json # reduced, < 20 s, JSON last line
//! cargo run --release --example bench -- --only rtt,tput
//! ```
//!
//! Every figure is measured against a minimal responder thread in this
//! process over loopback, and compared with a baseline written here with
//! plain blocking std::net code doing the minimum work, measured in the same
//! run (raw and client alternate in short blocks), so the ratios hold on a
//! noisy machine.
//!
//! On Linux with `taskset` available, the server threads run on the last
//! CPU and everything else (the client side, the library's threads
//! included) on the others, as if the instrument were another machine: on a
//! small VM, where the scheduler happens to put the two ends of a loopback
//! connection changes latency tenfold, and that is not what is being
//! measured. `--no-pin` leaves placement to the OS. See BENCHMARKS.md for
//! what each figure means.

#[path = "bench/servers.rs"]
mod servers;
#[path = "bench/sys.rs"]
mod sys;

use std::fmt::Write as _;
use std::hint::black_box;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;
use flamingo_client::codec::{CommandCode, FrameReader, Message, LIVE_HEADER_LEN, MESSAGE_LEN};
use flamingo_client::live::{LiveConfig, LiveStream};
use flamingo_client::{Client, ClientConfig};

/// A code outside the catalogue: replies are matched by code, FIFO.
const ECHO: CommandCode = CommandCode(0x7777);
/// Callers sharing one client in the throughput figure (and requests in
/// flight on the raw baseline).
const CALLERS: usize = 8;
const TIMEOUT: Duration = Duration::from_secs(5);

static BASE: OnceLock<Instant> = OnceLock::new();

/// CPU the server threads pin themselves to (usize::MAX: none).
pub static SERVER_CPU: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(usize::MAX);

/// Where the benchmark's threads run. Scheduling placement decides loopback
/// latency on a small VM far more than any code does (a wake-up on an idle
/// vCPU costs tens of µs, a switch on the same vCPU ~1-2 µs), so where
/// possible the placement is fixed rather than left to chance.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Placement {
    /// Left to the OS (no taskset, one CPU, or --no-pin).
    Free,
    /// The server threads on the last CPU, the client side (main thread and
    /// every thread it starts, the library's included) on the others: as if
    /// the instrument were another machine.
    Split,
    /// Everything on CPU 0: pure software cost, every wake-up a context
    /// switch on one CPU.
    OneCpu,
}

impl Placement {
    /// Applies the placement to the calling (main) thread and the servers
    /// started from now on. Threads inherit their creator's CPU set.
    fn apply(self, cores: usize) -> bool {
        let last = cores.saturating_sub(1);
        match self {
            Placement::Free => {
                SERVER_CPU.store(usize::MAX, Ordering::Relaxed);
                sys::pin(None, None)
            }
            Placement::Split => {
                SERVER_CPU.store(last, Ordering::Relaxed);
                let client: Vec<usize> = (0..last).collect();
                sys::pin(None, Some(&client))
            }
            Placement::OneCpu => {
                SERVER_CPU.store(0, Ordering::Relaxed);
                sys::pin(None, Some(&[0]))
            }
        }
    }
}

/// Nanoseconds since the benchmark's base instant (shared by all threads).
pub fn ns_since_base() -> u64 {
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

#[derive(Clone)]
struct Opts {
    quick: bool,
    json: bool,
    only: Option<Vec<String>>,
    /// The placement used for every figure (Split when possible).
    placement: Placement,
    cores: usize,
}

impl Opts {
    fn wants(&self, part: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|v| v.iter().any(|p| p == part))
    }
    /// Full-run value or quick-run value.
    fn pick<T>(&self, full: T, quick: T) -> T {
        if self.quick {
            quick
        } else {
            full
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--idle-child") {
        idle_child(&args[1..]);
        return;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut opts = Opts {
        quick: false,
        json: false,
        only: None,
        placement: Placement::Split,
        cores,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => opts.quick = true,
            "--no-pin" => opts.placement = Placement::Free,
            "--json" => opts.json = true,
            "--only" => {
                let v = it.next().expect("--only needs a list, e.g. rtt,tput");
                opts.only = Some(v.split(',').map(str::to_string).collect());
            }
            "-h" | "--help" => {
                println!(
                    "usage: bench [--quick] [--json] [--no-pin] [--only codec,rtt,tput,events,live,idle]"
                );
                return;
            }
            other => {
                eprintln!("unknown argument {other:?}; try --help");
                std::process::exit(2);
            }
        }
    }
    BASE.get_or_init(Instant::now);
    let started = Instant::now();
    let mut out = Report::default();
    out.num("cores", cores as f64);
    if opts.placement == Placement::Split && (cores < 2 || !Placement::Split.apply(cores)) {
        opts.placement = Placement::Free;
    }
    println!(
        "flamingo-client benchmark ({} run) on {cores} core(s), {} {}",
        if opts.quick { "quick" } else { "full" },
        std::env::consts::OS,
        std::env::consts::ARCH
    );
    match opts.placement {
        Placement::Split => println!(
            "placement: servers on CPU {}, client side on CPU 0{} (taskset)",
            cores - 1,
            if cores > 2 {
                format!("-{}", cores - 2)
            } else {
                String::new()
            }
        ),
        _ => println!("placement: left to the OS"),
    }
    out.set(
        "placement",
        format!("\"{}\"", format!("{:?}", opts.placement).to_lowercase()),
    );
    println!("(each figure vs. a raw std::net baseline measured in the same run)\n");

    if opts.wants("codec") {
        bench_codec(&opts, &mut out);
    }
    if opts.wants("rtt") {
        bench_rtt(&opts, &mut out);
    }
    if opts.wants("tput") {
        bench_tput(&opts, &mut out);
    }
    if opts.wants("events") {
        bench_events(&opts, &mut out);
    }
    if opts.wants("live") {
        bench_live(&opts, &mut out);
    }
    if opts.wants("idle") {
        bench_idle(&opts, &mut out);
    }

    out.print_table();
    println!("\ntotal time {:.1} s", started.elapsed().as_secs_f64());
    if opts.json {
        println!("{}", out.json());
    }
}

// ---------------------------------------------------------------- report

#[derive(Default)]
struct Report {
    /// JSON key/value pairs in insertion order (value already JSON).
    keys: Vec<(String, String)>,
    /// Table rows: figure, ours, raw, ratio, target, verdict.
    rows: Vec<[String; 6]>,
}

impl Report {
    fn num(&mut self, key: &str, v: f64) {
        let s = if !v.is_finite() {
            "null".to_string()
        } else if v.fract() == 0.0 && v.abs() < 1e15 {
            format!("{v:.0}")
        } else if v.abs() >= 100.0 {
            format!("{v:.1}")
        } else {
            format!("{v:.3}")
        };
        self.set(key, s);
    }
    fn opt(&mut self, key: &str, v: Option<f64>) {
        match v {
            Some(v) => self.num(key, v),
            None => self.set(key, "null".into()),
        }
    }
    fn set(&mut self, key: &str, v: String) {
        self.keys.retain(|(k, _)| k != key);
        self.keys.push((key.to_string(), v));
    }
    fn row(
        &mut self,
        fig: &str,
        ours: String,
        raw: String,
        ratio: String,
        target: &str,
        ok: Option<bool>,
    ) {
        let verdict = match ok {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "",
        };
        self.rows
            .push([fig.into(), ours, raw, ratio, target.into(), verdict.into()]);
    }
    fn print_table(&self) {
        let head = [
            "figure",
            "flamingo-client",
            "raw baseline",
            "ratio",
            "target",
            "",
        ];
        let mut w = head.map(|h| h.chars().count());
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::from("|");
            for (i, c) in cells.iter().enumerate() {
                let pad = w[i] - c.chars().count();
                if i == 0 || i == 4 || i == 5 {
                    let _ = write!(s, " {c}{} |", " ".repeat(pad));
                } else {
                    let _ = write!(s, " {}{c} |", " ".repeat(pad));
                }
            }
            s
        };
        println!();
        println!("{}", line(&head.map(String::from)));
        let sep: Vec<String> = w
            .iter()
            .enumerate()
            .map(|(i, n)| {
                if i == 0 || i >= 4 {
                    "-".repeat(*n)
                } else {
                    format!("{}:", "-".repeat(n - 1))
                }
            })
            .collect();
        println!(
            "|{}",
            sep.iter().map(|s| format!(" {s} |")).collect::<String>()
        );
        for r in &self.rows {
            println!("{}", line(r));
        }
    }
    fn json(&self) -> String {
        let body: Vec<String> = self
            .keys
            .iter()
            .map(|(k, v)| format!("\"{k}\":{v}"))
            .collect();
        format!("{{{}}}", body.join(", "))
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Nearest-rank percentile of sorted nanosecond samples, in µs.
fn pct_us(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1] as f64 / 1000.0
}

fn us(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.1} µs")
    } else {
        "n/a".into()
    }
}

fn rate(v: f64, unit: &str) -> String {
    if v >= 1e6 {
        format!("{:.2} M{unit}", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k{unit}", v / 1e3)
    } else {
        format!("{v:.1} {unit}")
    }
}

/// Limit for any one figure: a hang (which would be a bug) ends the run with
/// a message instead of blocking forever.
const PHASE_LIMIT: Duration = Duration::from_secs(120);

static WATCHDOG: OnceLock<crossbeam_channel::Sender<Option<String>>> = OnceLock::new();

/// Starts a phase: prints it and arms the watchdog.
fn progress(what: &str) {
    eprint!("  {what} ...");
    let _ = std::io::stderr().flush();
    let tx = WATCHDOG.get_or_init(|| {
        let (tx, rx) = crossbeam_channel::unbounded::<Option<String>>();
        std::thread::Builder::new()
            .name("bench-watchdog".into())
            .spawn(move || {
                let mut phase: Option<String> = None;
                loop {
                    let got = match &phase {
                        Some(_) => rx.recv_timeout(PHASE_LIMIT).map_err(|e| e.is_timeout()),
                        None => rx.recv().map_err(|_| false),
                    };
                    match got {
                        Ok(p) => phase = p,
                        Err(true) => {
                            eprintln!(
                                "\nbench: {:?} did not finish within {PHASE_LIMIT:?}; giving up",
                                phase.unwrap_or_default()
                            );
                            std::process::exit(3);
                        }
                        Err(false) => return,
                    }
                }
            })
            .expect("spawn the watchdog");
        tx
    });
    let _ = tx.send(Some(what.to_string()));
}

/// Ends a phase: prints its time and disarms the watchdog.
fn done(t: Instant) {
    eprintln!(" {:.1} s", t.elapsed().as_secs_f64());
    if let Some(tx) = WATCHDOG.get() {
        let _ = tx.send(None);
    }
}

// ---------------------------------------------------------------- 6. codec

fn bench_codec(opts: &Opts, out: &mut Report) {
    let t = Instant::now();
    progress("codec");
    let window = Duration::from_millis(opts.pick(250, 120));
    let reps = 3;
    let msg = Message::new(CommandCode::STAGE_POSITION_SET)
        .with_int32_data0(3)
        .with_double_data(12.5)
        .with_text("bench")
        .unwrap();
    // Encode: Message -> 128 bytes.
    let enc = median(
        (0..reps)
            .map(|_| {
                per_second(window, |i| {
                    let mut b = [0u8; MESSAGE_LEN];
                    black_box(msg).with_int32_data1(i as i32).encode(&mut b);
                    black_box(&b);
                })
            })
            .collect(),
    );
    // Decode: 128 bytes -> Message (both markers validated).
    let bytes = msg.to_bytes();
    let dec = median(
        (0..reps)
            .map(|_| {
                per_second(window, |_| {
                    let m = Message::decode(black_box(&bytes)).unwrap();
                    black_box(m);
                })
            })
            .collect(),
    );
    // Framed decode: FrameReader over an in-memory stream of 1024 messages.
    let mut stream = Vec::with_capacity(1024 * MESSAGE_LEN);
    for i in 0..1024 {
        stream.extend_from_slice(&msg.with_int32_data1(i).to_bytes());
    }
    let framed = median(
        (0..reps)
            .map(|_| {
                let mut fr = FrameReader::new(1 << 20);
                let mut src = &stream[..];
                per_second(window, |_| {
                    if src.is_empty() {
                        src = &stream[..];
                    }
                    let m = fr.read_message(&mut src).unwrap();
                    black_box(m);
                })
            })
            .collect(),
    );
    done(t);
    out.num("encode_msgs_per_s", enc);
    out.num("decode_msgs_per_s", dec);
    out.num("framed_decode_msgs_per_s", framed);
    out.row(
        "codec: encode (1 core)",
        rate(enc, "msg/s"),
        String::new(),
        String::new(),
        "",
        None,
    );
    out.row(
        "codec: decode (1 core)",
        rate(dec, "msg/s"),
        String::new(),
        String::new(),
        "",
        None,
    );
    out.row(
        "codec: FrameReader over a byte slice",
        rate(framed, "msg/s"),
        String::new(),
        String::new(),
        "",
        None,
    );
}

/// Calls `f` in batches until `window` has passed; calls per second.
fn per_second(window: Duration, mut f: impl FnMut(u64)) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    loop {
        for _ in 0..4096 {
            f(n);
            n += 1;
        }
        let e = start.elapsed();
        if e >= window {
            return n as f64 / e.as_secs_f64();
        }
    }
}

// ---------------------------------------------------------------- 1. latency

fn request_msg() -> Message {
    Message::new(ECHO).with_int32_data0(1)
}

/// Raw blocking ping-pong of 128-byte messages: write_all, read_exact.
struct RawPingPong {
    stream: TcpStream,
    msg: [u8; MESSAGE_LEN],
    server: servers::Server,
}

impl RawPingPong {
    fn new() -> RawPingPong {
        let server = servers::echo();
        let stream = TcpStream::connect(server.addr).expect("connect to the echo server");
        stream.set_nodelay(true).unwrap();
        RawPingPong {
            stream,
            msg: request_msg().to_bytes(),
            server,
        }
    }
    fn once(&mut self) {
        let mut buf = [0u8; MESSAGE_LEN];
        self.stream.write_all(&self.msg).unwrap();
        self.stream.read_exact(&mut buf).unwrap();
        black_box(&buf);
    }
    fn close(self) {
        drop(self.stream);
        self.server.join();
    }
}

/// Times `n` calls of `f` into `out` (ns).
fn timed(n: usize, out: &mut Vec<u64>, mut f: impl FnMut()) {
    for _ in 0..n {
        let t0 = Instant::now();
        f();
        out.push(t0.elapsed().as_nanos() as u64);
    }
}

/// Raw and client request latencies (sorted, ns), measured in alternating
/// blocks so both see the same machine (a noisy neighbour slows both alike).
fn rtt_pair(total: usize, warm: usize) -> (Vec<u64>, Vec<u64>) {
    let block = 250;
    let mut raw = RawPingPong::new();
    let srv = servers::echo();
    let client = Client::connect(&srv.addr.to_string(), ClientConfig::default())
        .expect("client connects to the echo server");
    let mut request = || {
        black_box(client.request(request_msg(), TIMEOUT).expect("echo reply"));
    };
    let (mut r, mut c) = (Vec::with_capacity(total), Vec::with_capacity(total));
    timed(warm, &mut Vec::new(), || raw.once());
    timed(warm, &mut Vec::new(), &mut request);
    while r.len() < total {
        timed(block, &mut r, || raw.once());
        timed(block, &mut c, &mut request);
    }
    client.close();
    srv.join();
    raw.close();
    r.sort_unstable();
    c.sort_unstable();
    (r, c)
}

fn bench_rtt(opts: &Opts, out: &mut Report) {
    let t = Instant::now();
    progress("request latency");
    let total = opts.pick(20_000, 6_000);
    let warm = opts.pick(2_000, 1_000);
    let (r, c) = rtt_pair(total, warm);
    // The same with every thread on one CPU: no cross-CPU wake-up anywhere,
    // so the difference is the software cost of the reader-to-caller hand-off.
    let one =
        (opts.placement == Placement::Split && Placement::OneCpu.apply(opts.cores)).then(|| {
            let pair = rtt_pair(total / 2, warm / 2);
            opts.placement.apply(opts.cores);
            pair
        });
    done(t);
    let (r50, r99, r999) = (pct_us(&r, 50.0), pct_us(&r, 99.0), pct_us(&r, 99.9));
    let (c50, c99, c999) = (pct_us(&c, 50.0), pct_us(&c, 99.0), pct_us(&c, 99.9));
    out.num("rtt_p50_us", c50);
    out.num("raw_rtt_p50_us", r50);
    out.num("rtt_ratio", c50 / r50);
    out.num("rtt_p99_us", c99);
    out.num("raw_rtt_p99_us", r99);
    out.num("rtt_p99_ratio", c99 / r99);
    out.num("rtt_p999_us", c999);
    out.num("raw_rtt_p999_us", r999);
    out.row(
        &format!("request latency p50 ({total} req)"),
        us(c50),
        us(r50),
        format!("{:.2}x", c50 / r50),
        "<= 1.15x",
        Some(c50 / r50 <= 1.15),
    );
    out.row(
        "request latency p99",
        us(c99),
        us(r99),
        format!("{:.2}x", c99 / r99),
        "<= 1.5x",
        Some(c99 / r99 <= 1.5),
    );
    out.row(
        "request latency p99.9",
        us(c999),
        us(r999),
        format!("{:.2}x", c999 / r999),
        "",
        None,
    );
    if let Some((r, c)) = one {
        let (r50, c50, r99, c99) = (
            pct_us(&r, 50.0),
            pct_us(&c, 50.0),
            pct_us(&r, 99.0),
            pct_us(&c, 99.0),
        );
        out.num("one_cpu_rtt_p50_us", c50);
        out.num("one_cpu_raw_rtt_p50_us", r50);
        out.num("one_cpu_rtt_ratio", c50 / r50);
        out.num("one_cpu_rtt_p99_us", c99);
        out.num("one_cpu_raw_rtt_p99_us", r99);
        out.row(
            "  same, all threads on 1 CPU: p50",
            us(c50),
            us(r50),
            format!("{:.2}x", c50 / r50),
            "",
            None,
        );
        out.row(
            "  same, all threads on 1 CPU: p99",
            us(c99),
            us(r99),
            format!("{:.2}x", c99 / r99),
            "",
            None,
        );
    }
}

// ---------------------------------------------------------------- 2. throughput

/// Spawns a named thread (names let the benchmark read per-thread CPU time).
fn named<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .expect("spawn a thread")
}

/// Which side of the throughput benchmark may run: the two alternate in
/// short windows so both see the same machine.
struct Gate {
    phase: AtomicU64,
    lock: std::sync::Mutex<()>,
    cv: std::sync::Condvar,
}

const IDLE: u64 = 0;
const RAW: u64 = 1;
const CLIENT: u64 = 2;
const STOP: u64 = 3;

impl Gate {
    fn set(&self, phase: u64) {
        let _g = self.lock.lock().unwrap();
        self.phase.store(phase, Ordering::SeqCst);
        self.cv.notify_all();
    }
    /// True while `mine` may run; waits while the other side runs; false at STOP.
    fn pass(&self, mine: u64) -> bool {
        let p = self.phase.load(Ordering::Relaxed);
        if p == mine {
            return true;
        }
        let mut g = self.lock.lock().unwrap();
        loop {
            match self.phase.load(Ordering::SeqCst) {
                STOP => return false,
                p if p == mine => return true,
                _ => g = self.cv.wait(g).unwrap(),
            }
        }
    }
}

fn bench_tput(opts: &Opts, out: &mut Report) {
    let t = Instant::now();
    progress("throughput");
    let rounds = opts.pick(8, 4);
    let window = Duration::from_millis(opts.pick(400, 250));
    let gate = Arc::new(Gate {
        phase: AtomicU64::new(IDLE),
        lock: std::sync::Mutex::new(()),
        cv: std::sync::Condvar::new(),
    });
    let raw_done = Arc::new(AtomicU64::new(0));
    let client_done = Arc::new(AtomicU64::new(0));

    // Raw: one connection, a writer and a reader thread, CALLERS requests in
    // flight (a bounded channel of tokens).
    let raw_srv = servers::echo();
    let s = TcpStream::connect(raw_srv.addr).expect("connect to the echo server");
    s.set_nodelay(true).unwrap();
    let (tok_tx, tok_rx) = bounded::<()>(CALLERS);
    let writer = {
        let gate = gate.clone();
        let mut s = s.try_clone().unwrap();
        named("bench-raw-w", move || {
            let msg = request_msg().to_bytes();
            while gate.pass(RAW) {
                if tok_tx.send(()).is_err() || s.write_all(&msg).is_err() {
                    break;
                }
            }
            let _ = s.shutdown(Shutdown::Write);
        })
    };
    let reader = {
        let done = raw_done.clone();
        let mut rs = s.try_clone().unwrap();
        named("bench-raw-r", move || {
            let mut buf = vec![0u8; 64 * 1024];
            let mut filled = 0usize;
            loop {
                match rs.read(&mut buf[filled..]) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => filled += n,
                }
                let whole = filled / MESSAGE_LEN;
                for _ in 0..whole {
                    let _ = tok_rx.recv();
                }
                done.fetch_add(whole as u64, Ordering::Relaxed);
                buf.copy_within(whole * MESSAGE_LEN..filled, 0);
                filled %= MESSAGE_LEN;
            }
        })
    };

    // Client: CALLERS threads calling request() on one shared client.
    let srv = servers::echo();
    let client = Client::connect(&srv.addr.to_string(), ClientConfig::default())
        .expect("client connects to the echo server");
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (client, gate, done) = (client.clone(), gate.clone(), client_done.clone());
            named("bench-caller", move || {
                while gate.pass(CLIENT) {
                    client.request(request_msg(), TIMEOUT).expect("echo reply");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    // Requests, seconds and CPU time of the client side's threads (not the
    // server's) over one window of `phase`.
    let run = |phase: u64, counter: &AtomicU64, threads: &[&str]| -> (u64, f64, Option<u64>) {
        gate.set(phase);
        std::thread::sleep(window / 4); // ramp up; in-flight work of the other side drains
        let (c0, t0, cpu0) = (
            counter.load(Ordering::Relaxed),
            Instant::now(),
            sys::cpu_ns_of(threads),
        );
        std::thread::sleep(window);
        let (c1, t1, cpu1) = (
            counter.load(Ordering::Relaxed),
            Instant::now(),
            sys::cpu_ns_of(threads),
        );
        let cpu = cpu0.zip(cpu1).map(|(a, b)| b.saturating_sub(a));
        (c1 - c0, (t1 - t0).as_secs_f64(), cpu)
    };
    let (mut rn, mut rt, mut cn, mut ct) = (0u64, 0f64, 0u64, 0f64);
    let (mut rcpu, mut ccpu) = (Some(0u64), Some(0u64));
    let (mut raw_rates, mut client_rates) = (vec![], vec![]);
    for _ in 0..rounds {
        let (n, secs, cpu) = run(RAW, &raw_done, &["bench-raw"]);
        rn += n;
        rt += secs;
        rcpu = rcpu.zip(cpu).map(|(a, b)| a + b);
        raw_rates.push(n as f64 / secs);
        let (n, secs, cpu) = run(CLIENT, &client_done, &["bench-caller", "flamingo-reader"]);
        cn += n;
        ct += secs;
        ccpu = ccpu.zip(cpu).map(|(a, b)| a + b);
        client_rates.push(n as f64 / secs);
    }
    gate.set(STOP);
    for c in callers {
        c.join().unwrap();
    }
    client.close();
    srv.join();
    writer.join().unwrap();
    reader.join().unwrap();
    drop(s);
    raw_srv.join();
    done(t);
    let (r, c) = (rn as f64 / rt, cn as f64 / ct);
    out.num("tput_rps", c);
    out.num("raw_tput_rps", r);
    out.num("tput_ratio", c / r);
    out.num(
        "tput_window_ratio_median",
        median(client_rates) / median(raw_rates),
    );
    let rcpu = rcpu.map(|ns| ns as f64 / rn as f64);
    let ccpu = ccpu.map(|ns| ns as f64 / cn as f64);
    out.opt("tput_cpu_ns_per_req", ccpu);
    out.opt("raw_tput_cpu_ns_per_req", rcpu);
    out.row(
        &format!("throughput, {CALLERS} callers / 1 connection"),
        rate(c, "req/s"),
        rate(r, "req/s"),
        format!("{:.0} %", 100.0 * c / r),
        ">= 70 %",
        Some(c / r >= 0.70),
    );
    if let (Some(cc), Some(rc)) = (ccpu, rcpu) {
        out.row(
            "  client-side CPU per request (not the server's)",
            format!("{:.1} µs", cc / 1e3),
            format!("{:.1} µs", rc / 1e3),
            format!("{:.2}x", cc / rc),
            "",
            None,
        );
    }
}

// ---------------------------------------------------------------- 3. events

struct EventRun {
    lat: Vec<u64>,
    /// Server write to the reader's receipt (Event::received_at).
    wire: Vec<u64>,
    max_queued: usize,
    received: u64,
    per_s: f64,
    dropped: u64,
    /// CPU time of the reader thread and of the subscriber, per event (ns).
    cpu_per_event: Option<f64>,
}

fn event_run(pace: servers::EventPace) -> EventRun {
    let count = match pace {
        servers::EventPace::Flood { count } | servers::EventPace::Paced { count, .. } => count,
    };
    let go = Arc::new(AtomicBool::new(false));
    let srv = servers::events(pace, go.clone());
    let cfg = ClientConfig::default().event_queue_depth(count as usize + 64);
    let client = Client::connect(&srv.addr.to_string(), cfg).expect("client connects");
    let sub = client.subscribe_to(&[CommandCode::UI_SET_GAUGE_VALUE]);
    let mut lat = Vec::with_capacity(count as usize);
    let mut wire = Vec::with_capacity(count as usize);
    let mut max_queued = 0;
    let base = *BASE.get().expect("base instant");
    let (mut first_sent, mut last_recv) = (None, 0u64);
    let cpu = || {
        sys::cpu_ns_of(&["flamingo-reader"])
            .zip(sys::thread_cpu_ns())
            .map(|(a, b)| a + b)
    };
    let cpu0 = cpu();
    go.store(true, Ordering::Release);
    while let Ok(ev) = sub.recv_timeout(Duration::from_secs(5)) {
        let now = ns_since_base();
        let Some(m) = ev.message else { continue };
        let sent = m.double_data as u64;
        lat.push(now.saturating_sub(sent));
        let at = ev.received_at.saturating_duration_since(base).as_nanos() as u64;
        wire.push(at.saturating_sub(sent));
        max_queued = max_queued.max(sub.len());
        first_sent.get_or_insert(sent);
        last_recv = now;
        if m.int32_data0 as u32 + 1 == count {
            break;
        }
    }
    let cpu1 = cpu();
    let dropped = sub.dropped() + client.stats().events_dropped;
    client.close();
    srv.join();
    let received = lat.len() as u64;
    let span = last_recv.saturating_sub(first_sent.unwrap_or(last_recv)) as f64 / 1e9;
    lat.sort_unstable();
    wire.sort_unstable();
    EventRun {
        cpu_per_event: cpu0
            .zip(cpu1)
            .map(|(a, b)| b.saturating_sub(a) as f64 / received.max(1) as f64),
        lat,
        wire,
        max_queued,
        received,
        per_s: received as f64 / span,
        dropped,
    }
}

fn bench_events(opts: &Opts, out: &mut Report) {
    let t = Instant::now();
    progress("events");
    let count = opts.pick(200_000, 50_000);
    let rounds = opts.pick(3, 1);
    let mut flood = Vec::new();
    for _ in 0..rounds {
        flood.push(event_run(servers::EventPace::Flood { count }));
    }
    let paced_n = opts.pick(10_000, 3_000);
    let paced = event_run(servers::EventPace::Paced {
        count: paced_n,
        gap_us: 100,
    });
    done(t);
    let per_s = median(flood.iter().map(|r| r.per_s).collect());
    let f50 = median(flood.iter().map(|r| pct_us(&r.lat, 50.0)).collect());
    let f99 = median(flood.iter().map(|r| pct_us(&r.lat, 99.0)).collect());
    let dropped: u64 = flood.iter().map(|r| r.dropped).sum::<u64>() + paced.dropped;
    let lost: u64 = flood
        .iter()
        .map(|r| u64::from(count) - r.received)
        .sum::<u64>()
        + (u64::from(paced_n) - paced.received);
    let (p50, p99) = (pct_us(&paced.lat, 50.0), pct_us(&paced.lat, 99.0));
    let w50 = median(flood.iter().map(|r| pct_us(&r.wire, 50.0)).collect());
    let w99 = median(flood.iter().map(|r| pct_us(&r.wire, 99.0)).collect());
    let maxq = flood.iter().map(|r| r.max_queued).max().unwrap_or(0);
    out.num("event_wire_p50_us", w50);
    out.num("event_wire_p99_us", w99);
    out.num("event_max_queued", maxq as f64);
    let cpu_ev = flood
        .iter()
        .map(|r| r.cpu_per_event)
        .collect::<Option<Vec<f64>>>()
        .map(median);
    out.opt("event_cpu_ns", cpu_ev);
    out.num("event_p50_us", f50);
    out.num("event_p99_us", f99);
    out.num("events_per_s", per_s);
    out.num("events_dropped", (dropped + lost) as f64);
    out.num("event_paced_p50_us", p50);
    out.num("event_paced_p99_us", p99);
    out.num("event_paced_per_s", paced.per_s);
    out.row(
        &format!("event latency p50, flood ({count} events)"),
        us(f50),
        String::new(),
        String::new(),
        "",
        None,
    );
    out.row(
        "event latency p99, flood",
        us(f99),
        String::new(),
        String::new(),
        "< 150 µs",
        Some(f99 < 150.0),
    );
    out.row(
        "  of which server write -> reader, p50 / p99",
        format!("{w50:.1} / {w99:.1} µs"),
        String::new(),
        String::new(),
        "",
        None,
    );
    out.row(
        "  subscriber queue, most events waiting",
        format!("{maxq}"),
        String::new(),
        String::new(),
        "",
        None,
    );
    if let Some(ns) = cpu_ev {
        out.row(
            "  client CPU per event (reader + subscriber)",
            format!("{ns:.0} ns"),
            String::new(),
            String::new(),
            "",
            None,
        );
    }
    out.row(
        "events/s, 1 subscriber, flood",
        rate(per_s, "ev/s"),
        String::new(),
        String::new(),
        "no drops",
        Some(dropped + lost == 0),
    );
    out.row(
        "event latency p50 / p99, paced (sleep 100 µs)",
        format!("{p50:.1} / {p99:.1} µs at {}", rate(paced.per_s, "ev/s")),
        String::new(),
        String::new(),
        "",
        None,
    );
}

// ---------------------------------------------------------------- 4. live

struct LiveRun {
    mb_s: f64,
    fps: f64,
    dropped: u64,
    byte_allocs: u64,
    pixel_allocs: u64,
    frames: u64,
}

/// Raw read loop: header with read_exact, then the pixels into one reused
/// buffer. `rcvbuf`: give the socket the library's 1 MiB SO_RCVBUF (which on
/// Linux also switches receive-buffer autotuning off) instead of the OS default.
fn live_raw(warm: Duration, window: Duration, rcvbuf: bool) -> LiveRun {
    let stop = Arc::new(AtomicBool::new(false));
    let srv = servers::frames(stop.clone());
    let mut s = if rcvbuf {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("a socket");
        sock.set_recv_buffer_size(1 << 20).expect("SO_RCVBUF");
        sock.connect(&srv.addr.into())
            .expect("connect to the frame server");
        TcpStream::from(sock)
    } else {
        TcpStream::connect(srv.addr).expect("connect to the frame server")
    };
    let _ = s.set_nodelay(true);
    let mut head = [0u8; LIVE_HEADER_LEN];
    let mut pixels = vec![0u8; (servers::FRAME_W * servers::FRAME_H * 2) as usize];
    let mut read_frame = |s: &mut TcpStream| {
        s.read_exact(&mut head).unwrap();
        let size = u32::from_le_bytes(head[..4].try_into().unwrap()) as usize;
        s.read_exact(&mut pixels[..size]).unwrap();
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
    let secs = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    drop(s);
    srv.join();
    LiveRun {
        mb_s: bytes as f64 / secs / 1e6,
        fps: frames as f64 / secs,
        dropped: 0,
        byte_allocs: 0,
        pixel_allocs: 0,
        frames,
    }
}

/// Frames through `LiveStream::next_frame`; `convert` calls `pixels()` (a
/// converted u16 copy) on every frame, otherwise `as_bytes()` (zero copy)
/// and `pixel(x, y)` are used.
fn live_client(warm: Duration, window: Duration, convert: bool) -> LiveRun {
    let stop = Arc::new(AtomicBool::new(false));
    let srv = servers::frames(stop.clone());
    let live = LiveStream::connect(
        srv.addr,
        LiveConfig::default(),
        Instant::now() + Duration::from_secs(5),
    )
    .expect("live stream connects");
    let touch = |f: &flamingo_client::live::Frame| -> u64 {
        if convert {
            let p = f.pixels();
            u64::from(p[p.len() / 2])
        } else {
            let b = f.as_bytes();
            u64::from(b[b.len() / 2]) + u64::from(f.pixel(1000, 1000))
        }
    };
    let start = Instant::now();
    let mut stalled = false;
    while start.elapsed() < warm {
        let f = live.next_frame(TIMEOUT).expect("a live frame");
        black_box(touch(&f));
        if !stalled && start.elapsed() > warm / 2 {
            // Let the queue fill once while holding a frame, so the pools
            // reach the most buffers ever in use before the counted window.
            stalled = true;
            std::thread::sleep(Duration::from_millis(30));
        }
    }
    let s0 = live.stats();
    let (t0, mut bytes, mut frames) = (Instant::now(), 0u64, 0u64);
    while t0.elapsed() < window {
        let f = live.next_frame(TIMEOUT).expect("a live frame");
        black_box(touch(&f));
        bytes += (LIVE_HEADER_LEN + f.as_bytes().len()) as u64;
        frames += 1;
    }
    let secs = t0.elapsed().as_secs_f64();
    let s1 = live.stats();
    stop.store(true, Ordering::Relaxed);
    live.close();
    srv.join();
    LiveRun {
        mb_s: bytes as f64 / secs / 1e6,
        fps: frames as f64 / secs,
        dropped: s1.dropped - s0.dropped,
        byte_allocs: s1.buffers_allocated - s0.buffers_allocated,
        pixel_allocs: s1.pixel_buffers_allocated - s0.pixel_buffers_allocated,
        frames,
    }
}

fn bench_live(opts: &Opts, out: &mut Report) {
    let t = Instant::now();
    progress("live stream");
    let rounds = opts.pick(3, 1);
    let warm = Duration::from_millis(opts.pick(300, 200));
    let window = Duration::from_millis(opts.pick(1500, 800));
    let (mut raw, mut raw1m, mut zc, mut conv) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        raw.push(live_raw(warm, window, false));
        zc.push(live_client(warm, window, false));
        conv.push(live_client(warm, window, true));
        raw1m.push(live_raw(warm, window, true));
    }
    done(t);
    let med = |v: &[LiveRun], f: fn(&LiveRun) -> f64| median(v.iter().map(f).collect());
    let mb = |x: &LiveRun| x.mb_s;
    let fps = |x: &LiveRun| x.fps;
    let (r, r1, c, p) = (med(&raw, mb), med(&raw1m, mb), med(&zc, mb), med(&conv, mb));
    let (rf, cf, pf) = (med(&raw, fps), med(&zc, fps), med(&conv, fps));
    let frames: u64 = zc.iter().chain(&conv).map(|x| x.frames).sum();
    let byte_allocs: u64 = zc.iter().chain(&conv).map(|x| x.byte_allocs).sum();
    let pixel_allocs: u64 = conv.iter().map(|x| x.pixel_allocs).sum();
    let dropped_zc: u64 = zc.iter().map(|x| x.dropped).sum();
    let dropped_conv: u64 = conv.iter().map(|x| x.dropped).sum();
    out.num("live_mb_s", c);
    out.num("raw_live_mb_s", r);
    out.num("live_ratio", c / r);
    out.num("live_fps", cf);
    out.num("raw_live_fps", rf);
    out.num("raw_live_rcvbuf_1m_mb_s", r1);
    out.num("live_vs_same_rcvbuf_ratio", c / r1);
    out.num("live_pixels_mb_s", p);
    out.num("live_pixels_ratio", p / r);
    out.num("live_allocs_steady", (byte_allocs + pixel_allocs) as f64);
    out.num(
        "live_allocs_per_frame",
        (byte_allocs + pixel_allocs) as f64 / frames as f64,
    );
    out.num("live_dropped", (dropped_zc + dropped_conv) as f64);
    out.row(
        "live 2048x2048 u16, as_bytes()+pixel()",
        format!("{c:.0} MB/s ({cf:.0} fps)"),
        format!("{r:.0} MB/s ({rf:.0} fps)"),
        format!("{:.0} %", 100.0 * c / r),
        ">= 95 %",
        Some(c / r >= 0.95),
    );
    out.row(
        "  raw loop with the library's 1 MiB SO_RCVBUF",
        String::new(),
        format!("{r1:.0} MB/s"),
        format!("{:.0} %", 100.0 * c / r1),
        "",
        None,
    );
    out.row(
        "live, pixels() (u16 copy per frame)",
        format!("{p:.0} MB/s ({pf:.0} fps)"),
        format!("{r:.0} MB/s"),
        format!("{:.0} %", 100.0 * p / r),
        "",
        None,
    );
    out.row(
        "live allocations after warm-up (bytes + pixels)",
        format!("{byte_allocs} + {pixel_allocs} in {frames} frames"),
        String::new(),
        String::new(),
        "0 per frame",
        Some(byte_allocs + pixel_allocs == 0),
    );
    out.row(
        "live frames dropped (latest-wins), bytes / pixels",
        format!("{dropped_zc} / {dropped_conv}"),
        String::new(),
        String::new(),
        "",
        None,
    );
}

// ---------------------------------------------------------------- 5. idle

/// Runs in a child process (so its figures are the client's alone): a
/// connected client with a subscriber and a live stream with no frames.
fn idle_child(args: &[String]) {
    let cmd = &args[0];
    let live_addr: SocketAddr = args[1].parse().expect("live address");
    let secs: f64 = args[2].parse().expect("seconds");
    let threads0 = sys::threads();
    let rss0 = sys::rss_kib();
    let client = Client::connect(cmd, ClientConfig::default()).expect("client connects");
    let sub = client.subscribe();
    let live = LiveStream::connect(
        live_addr,
        LiveConfig::default(),
        Instant::now() + Duration::from_secs(5),
    )
    .expect("live stream connects");
    std::thread::sleep(Duration::from_millis(200));
    let (cpu0, cs0) = (sys::cpu_ns(), sys::context_switches());
    std::thread::sleep(Duration::from_secs_f64(secs));
    let (cpu1, cs1) = (sys::cpu_ns(), sys::context_switches());
    let threads = sys::threads();
    let rss = sys::rss_kib();
    let peak = sys::peak_rss_kib();
    let show = |v: Option<u64>| v.map_or("na".to_string(), |v| v.to_string());
    println!(
        "IDLE cpu_ns={} ctxsw={} threads0={} threads={} rss0_kib={} rss_kib={} peak_kib={} secs={secs}",
        show(cpu0.zip(cpu1).map(|(a, b)| b - a)),
        show(cs0.zip(cs1).map(|(a, b)| b - a)),
        show(threads0.map(|v| v as u64)),
        show(threads.map(|v| v as u64)),
        show(rss0),
        show(rss),
        show(peak),
    );
    drop(sub);
    live.close();
    client.close();
}

fn bench_idle(opts: &Opts, out: &mut Report) {
    let t = Instant::now();
    let secs = opts.pick(5.0, 3.0);
    progress(&format!("idle cost ({secs} s, child process)"));
    let cmd = servers::echo();
    let live = servers::silent();
    let exe = std::env::current_exe().expect("path of this executable");
    let mut child = Command::new(exe)
        .args([
            "--idle-child".to_string(),
            cmd.addr.to_string(),
            live.addr.to_string(),
            secs.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the idle child process");
    let mut line = String::new();
    let mut stdout = BufReader::new(child.stdout.take().expect("child stdout"));
    while stdout.read_line(&mut line).unwrap_or(0) > 0 && !line.starts_with("IDLE") {
        line.clear();
    }
    drop(stdout);
    let status = child.wait();
    if !status.as_ref().is_ok_and(|s| s.success()) {
        eprintln!("bench: the idle child process failed: {status:?}");
    }
    cmd.join();
    live.join();
    done(t);
    let field = |name: &str| -> Option<f64> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
    };
    // Normalised to 5 s so quick and full runs compare.
    let cpu_ms = field("cpu_ns").map(|ns| ns / 1e6 * 5.0 / secs);
    let threads = field("threads");
    let lib_threads = field("threads").zip(field("threads0")).map(|(a, b)| a - b);
    let rss_mb = field("rss_kib").map(|k| k / 1024.0);
    let ctx = field("ctxsw");
    out.opt("idle_cpu_ms", cpu_ms);
    out.opt("threads", lib_threads);
    out.opt("process_threads", threads);
    out.opt("rss_mb", rss_mb);
    out.opt("idle_context_switches", ctx);
    let na = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("n/a".to_string(), f);
    out.row(
        "idle CPU per 5 s (client + subscriber + live)",
        na(cpu_ms, &|v| format!("{v:.2} ms")),
        String::new(),
        String::new(),
        "< 5 ms",
        cpu_ms.map(|v| v < 5.0),
    );
    out.row(
        "idle wake-ups (context switches) per window",
        na(ctx, &|v| format!("{v:.0}")),
        String::new(),
        String::new(),
        "",
        None,
    );
    out.row(
        "threads started by the library",
        na(lib_threads, &|v| {
            format!("{v:.0} (process {})", threads.unwrap_or(0.0))
        }),
        String::new(),
        String::new(),
        "",
        None,
    );
    out.row(
        "resident memory of the idle process",
        na(rss_mb, &|v| format!("{v:.1} MB")),
        String::new(),
        String::new(),
        "",
        None,
    );
}
