//! Throughput: 8 threads sharing one `Client` (one connection), on 8
//! distinct codes and on one code, against the raw batching clients (8 in
//! flight; blocking, and busy-polling) and the raw threaded client (the
//! library's shape: 8 callers that each block for their reply, one reader).
//! One more figure: one thread pipelining 8 `submit`s, then waiting for
//! the 8 replies.
//!
//! The three take turns in short windows (a [`Gate`]), so a noisy
//! neighbour slows all of them alike; each has its own connection to the
//! same echo server, and only the one whose turn it is sends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use flamingo_client::codec::CommandCode;
use flamingo_client::{Client, ClientConfig};

use crate::raw::{self, CALLERS};
use crate::report::{done, median, percent, progress, rate, times, Report};
use crate::{sys, Run, TIMEOUT};

/// Whose turn it is.
pub struct Gate {
    phase: AtomicU64,
    lock: Mutex<()>,
    cv: Condvar,
}

const IDLE: u64 = 0;
const RAW: u64 = 1;
const DISTINCT: u64 = 2;
const SAME: u64 = 3;
const STOP: u64 = 4;
const RAW_BUSY: u64 = 5;
const RAW_THREADED: u64 = 6;
const PIPELINED: u64 = 7;

impl Gate {
    fn new() -> Gate {
        Gate {
            phase: AtomicU64::new(IDLE),
            lock: Mutex::new(()),
            cv: Condvar::new(),
        }
    }
    fn set(&self, phase: u64) {
        let _g = self.lock.lock().unwrap();
        self.phase.store(phase, Ordering::SeqCst);
        self.cv.notify_all();
    }
    /// True while it is `mine`'s turn (does not wait).
    pub fn is(&self, mine: u64) -> bool {
        self.phase.load(Ordering::Relaxed) == mine
    }
    /// Waits for `mine`'s turn: true then, false once the gate is stopped.
    pub fn pass(&self, mine: u64) -> bool {
        if self.is(mine) {
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

/// Spawns a named thread (names show in profilers and /proc).
fn named<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .expect("spawn a thread")
}

/// CALLERS threads calling `request` in a loop on `client` during `phase`;
/// caller `i` uses `code(i)`.
fn callers(
    client: &Client,
    gate: &Arc<Gate>,
    phase: u64,
    name: &str,
    done: &Arc<AtomicU64>,
    code: fn(usize) -> CommandCode,
) -> Vec<JoinHandle<()>> {
    (0..CALLERS)
        .map(|i| {
            let (client, gate, done) = (client.clone(), gate.clone(), done.clone());
            let msg = raw::request(code(i));
            named(name, move || {
                while gate.pass(phase) {
                    client.request(msg, TIMEOUT).expect("echo reply");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect()
}

/// One thread that submits a request on each of the CALLERS codes, then
/// waits for the CALLERS replies, in a loop during its turn: the way an
/// application pipelines over one connection from one thread.
fn pipeliner(client: &Client, gate: &Arc<Gate>, done: &Arc<AtomicU64>) -> JoinHandle<()> {
    let (client, gate, done) = (client.clone(), gate.clone(), done.clone());
    let msgs: Vec<_> = (0..CALLERS)
        .map(|i| raw::request(raw::distinct_code(i)))
        .collect();
    named("bench-pipelined", move || {
        while gate.pass(PIPELINED) {
            let ops: Vec<_> = msgs
                .iter()
                .map(|m| client.submit(*m, TIMEOUT).expect("submit"))
                .collect();
            for op in ops {
                op.wait().expect("echo reply");
            }
            done.fetch_add(CALLERS as u64, Ordering::Relaxed);
        }
    })
}

#[derive(Default)]
struct Totals {
    n: u64,
    secs: f64,
    cpu: Option<u64>,
    rates: Vec<f64>,
}

impl Totals {
    fn rate(&self) -> f64 {
        self.n as f64 / self.secs
    }
    fn cpu_per_req_us(&self) -> Option<f64> {
        self.cpu.map(|ns| ns as f64 / self.n.max(1) as f64 / 1e3)
    }
}

pub fn bench(run: &Run, out: &mut Report) {
    let t = progress(&run.fig("throughput"));
    let rounds = run.opts.pick(6, 3);
    let window = Duration::from_millis(run.opts.pick(300, 200));
    let gate = Arc::new(Gate::new());
    let counters: [Arc<AtomicU64>; 6] = Default::default();
    let addr = run.ports.echo;

    let raw_thread = {
        let (gate, done) = (gate.clone(), counters[0].clone());
        named("bench-raw", move || {
            raw::batched(addr, &gate, RAW, &done, false)
        })
    };
    let raw_busy_thread = {
        let (gate, done) = (gate.clone(), counters[3].clone());
        named("bench-raw-busy", move || {
            raw::batched(addr, &gate, RAW_BUSY, &done, true)
        })
    };
    let raw_threaded_thread = {
        let (gate, done) = (gate.clone(), counters[4].clone());
        named("bench-raw-thr", move || {
            raw::threaded(addr, &gate, RAW_THREADED, &done)
        })
    };
    let connect = || {
        Client::connect(&addr.to_string(), ClientConfig::default())
            .expect("client connects to the echo server")
    };
    let distinct = connect();
    let same = connect();
    let mut threads = callers(
        &distinct,
        &gate,
        DISTINCT,
        "bench-distinct",
        &counters[1],
        raw::distinct_code,
    );
    let pipelined = connect();
    threads.push(pipeliner(&pipelined, &gate, &counters[5]));
    threads.extend(callers(
        &same,
        &gate,
        SAME,
        "bench-same",
        &counters[2],
        |_| raw::distinct_code(7),
    ));

    // One window of `phase`: requests, seconds, and CPU time of this
    // process, the client side (the servers are in their own; the sides
    // whose turn it is not are blocked and use none).
    let window_of = |phase: u64, counter: &AtomicU64, tot: &mut Totals| {
        gate.set(phase);
        std::thread::sleep(window / 4); // ramp up; the other side's requests drain
        let (c0, t0, cpu0) = (
            counter.load(Ordering::Relaxed),
            std::time::Instant::now(),
            sys::cpu_ns(),
        );
        std::thread::sleep(window);
        let (c1, secs, cpu1) = (
            counter.load(Ordering::Relaxed),
            t0.elapsed().as_secs_f64(),
            sys::cpu_ns(),
        );
        tot.n += c1 - c0;
        tot.secs += secs;
        tot.rates.push((c1 - c0) as f64 / secs);
        let cpu = cpu0.zip(cpu1).map(|(a, b)| b.saturating_sub(a));
        tot.cpu = if tot.rates.len() == 1 {
            cpu
        } else {
            tot.cpu.zip(cpu).map(|(a, b)| a + b)
        };
    };
    let (mut r, mut d, mut s) = (Totals::default(), Totals::default(), Totals::default());
    let (mut rb, mut rt, mut p) = (Totals::default(), Totals::default(), Totals::default());
    for _ in 0..rounds {
        window_of(RAW, &counters[0], &mut r);
        window_of(RAW_BUSY, &counters[3], &mut rb);
        window_of(RAW_THREADED, &counters[4], &mut rt);
        window_of(PIPELINED, &counters[5], &mut p);
        window_of(DISTINCT, &counters[1], &mut d);
        window_of(SAME, &counters[2], &mut s);
    }
    gate.set(STOP);
    for h in threads {
        h.join().expect("a caller thread");
    }
    raw_thread.join().expect("the raw client thread");
    raw_busy_thread.join().expect("the busy raw client thread");
    raw_threaded_thread.join().expect("the threaded raw client");
    distinct.close();
    same.close();
    pipelined.close();
    done(t);

    let (rr, dr, sr, rbr) = (r.rate(), d.rate(), s.rate(), rb.rate());
    out.num(&run.key("tput_ratio"), dr / rr);
    out.num(&run.key("tput_same_key_ratio"), sr / rr);
    out.num(&run.key("tput_rps"), dr);
    out.num(&run.key("tput_same_key_rps"), sr);
    out.num(&run.key("raw_tput_rps"), rr);
    out.num(
        &run.key("tput_window_ratio_median"),
        median(d.rates.clone()) / median(r.rates.clone()),
    );
    out.opt(&run.key("tput_cpu_us_per_req"), d.cpu_per_req_us());
    out.opt(&run.key("tput_same_key_cpu_us_per_req"), s.cpu_per_req_us());
    out.opt(&run.key("raw_tput_cpu_us_per_req"), r.cpu_per_req_us());
    out.num(&run.key("tput_ratio_busy"), dr / rbr);
    out.num(&run.key("raw_busy_tput_rps"), rbr);
    out.opt(
        &run.key("raw_busy_tput_cpu_us_per_req"),
        rb.cpu_per_req_us(),
    );
    let rtr = rt.rate();
    out.num(&run.key("tput_ratio_threaded"), dr / rtr);
    out.num(&run.key("raw_threaded_tput_rps"), rtr);
    out.opt(&run.key("raw_threaded_cpu_us_per_req"), rt.cpu_per_req_us());
    out.opt(
        &run.key("tput_cpu_ratio"),
        d.cpu_per_req_us()
            .zip(r.cpu_per_req_us())
            .map(|(a, b)| a / b),
    );
    let pr = p.rate();
    out.num(&run.key("tput_pipelined_ratio"), pr / rr);
    out.num(&run.key("tput_pipelined_rps"), pr);
    out.opt(
        &run.key("tput_pipelined_cpu_us_per_req"),
        p.cpu_per_req_us(),
    );
    out.opt(
        &run.key("tput_cpu_ratio_threaded"),
        d.cpu_per_req_us()
            .zip(rt.cpu_per_req_us())
            .map(|(a, b)| a / b),
    );
    out.row(
        &run.fig(&format!(
            "throughput, {CALLERS} callers on {CALLERS} codes, 1 connection"
        )),
        rate(dr, "req/s"),
        rate(rr, "req/s"),
        percent(dr / rr),
        ">= 70 %",
        Some(dr / rr >= 0.70),
    );
    out.row(
        &run.fig(&format!(
            "  the same against the busy-polling raw client ({CALLERS} in flight)"
        )),
        rate(dr, "req/s"),
        rate(rbr, "req/s"),
        percent(dr / rbr),
        "",
        None,
    );
    out.row(
        &run.fig(&format!(
            "  the same against the raw threaded client ({CALLERS} callers, 1 reader)"
        )),
        rate(dr, "req/s"),
        rate(rtr, "req/s"),
        percent(dr / rtr),
        "",
        None,
    );
    out.row(
        &run.fig(&format!(
            "1 thread pipelining {CALLERS} submits on {CALLERS} codes, 1 connection"
        )),
        rate(pr, "req/s"),
        rate(rr, "req/s"),
        percent(pr / rr),
        "",
        None,
    );
    if let (Some(pc), Some(rc)) = (p.cpu_per_req_us(), r.cpu_per_req_us()) {
        out.row(
            &run.fig("  client-side CPU per request, pipelining"),
            format!("{pc:.1} µs"),
            format!("{rc:.1} µs"),
            times(pc / rc),
            "",
            None,
        );
    }
    out.row(
        &run.fig(&format!("throughput, {CALLERS} callers on 1 code")),
        rate(sr, "req/s"),
        rate(rr, "req/s"),
        percent(sr / rr),
        "",
        None,
    );
    if let (Some(dc), Some(sc), Some(rc)) =
        (d.cpu_per_req_us(), s.cpu_per_req_us(), r.cpu_per_req_us())
    {
        out.row(
            &run.fig("  client-side CPU per request, 8 codes / 1 code"),
            format!("{dc:.1} / {sc:.1} µs"),
            format!("{rc:.1} µs"),
            times(dc / rc),
            "<= 3x",
            Some(dc / rc <= 3.0),
        );
    }
    if let (Some(dc), Some(tc)) = (d.cpu_per_req_us(), rt.cpu_per_req_us()) {
        out.row(
            &run.fig("  client-side CPU per request, against the raw threaded client"),
            format!("{dc:.1} µs"),
            format!("{tc:.1} µs"),
            times(dc / tc),
            "",
            None,
        );
    }
}

/// `--only callers`: the 8 callers of the throughput figure alone for a few
/// seconds, nothing else in this process but the library's threads, for a
/// profiler (`perf record -g ... --only callers`). Reports their rate and
/// CPU per request.
pub fn callers_alone(run: &Run, out: &mut Report) {
    let t = progress(&run.fig("8 callers alone"));
    let secs = run.opts.pick(5.0, 3.0);
    let gate = Arc::new(Gate::new());
    let count = Arc::new(AtomicU64::new(0));
    let client = Client::connect(&run.ports.echo.to_string(), ClientConfig::default())
        .expect("client connects to the echo server");
    let threads = callers(
        &client,
        &gate,
        DISTINCT,
        "bench-distinct",
        &count,
        raw::distinct_code,
    );
    let mut tot = Totals::default();
    gate.set(DISTINCT);
    std::thread::sleep(Duration::from_millis(200));
    let (c0, t0, cpu0) = (
        count.load(Ordering::Relaxed),
        std::time::Instant::now(),
        sys::cpu_ns(),
    );
    std::thread::sleep(Duration::from_secs_f64(secs));
    let (c1, s, cpu1) = (
        count.load(Ordering::Relaxed),
        t0.elapsed().as_secs_f64(),
        sys::cpu_ns(),
    );
    gate.set(STOP);
    for h in threads {
        h.join().expect("a caller thread");
    }
    client.close();
    done(t);
    tot.n = c1 - c0;
    tot.secs = s;
    tot.cpu = cpu0.zip(cpu1).map(|(a, b)| b.saturating_sub(a));
    out.num(&run.key("callers_alone_rps"), tot.rate());
    out.opt(
        &run.key("callers_alone_cpu_us_per_req"),
        tot.cpu_per_req_us(),
    );
    out.row(
        &run.fig(&format!("{CALLERS} callers alone (for a profiler)")),
        rate(tot.rate(), "req/s"),
        String::new(),
        tot.cpu_per_req_us()
            .map_or(String::new(), |c| format!("{c:.1} µs CPU/req")),
        "",
        None,
    );
}
