//! Soak test: many threads issue mixed requests against the simulator while
//! it injects random faults (delays, late replies, garbage, fragmented
//! writes, stalls, trickled data, dropped links that the client's
//! reconnection policy repairs). Every request must end with the right value
//! or a typed error (`Timeout`, `Disconnected`) within its deadline plus a
//! small slack; no reply may reach the wrong caller; at the end the process
//! has as many threads and file descriptors as before.
//!
//! ```sh
//! cargo run --release --example soak -- --requests 1000000
//! cargo run --release --example soak -- --seconds 3600 --threads 16 --seed 7
//! ```
//!
//! The same scenario runs, bounded, as `tests/soak.rs`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, RecvTimeoutError};
use flamingo_client::codec::{CommandCode as C, Message};
use flamingo_client::sim::{Faults, SimConfig, SimCounters, Simulator};
use flamingo_client::{Client, ClientConfig, Error, ReconnectPolicy, Reply, Stats};
use parking_lot::Mutex;

/// Echoed by the simulator: carries a tag per request.
const ECHO: C = C(0x7777);
/// Start positions of X, Y, Z, R (the stage never moves in the soak).
const START: [f64; 4] = [2.5, 7.25, 12.125, 33.0];
const IMAGE: (i32, i32) = (64, 48);
/// Request deadlines, picked at random per request.
const TIMEOUTS_MS: [u64; 4] = [100, 250, 500, 1000];

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Requests to issue in all (the run also stops after `seconds`).
    pub requests: u64,
    /// Wall-clock bound on issuing requests.
    pub seconds: Option<f64>,
    /// Threads issuing requests.
    pub threads: usize,
    /// Seed of the request mix and of the fault schedule.
    pub seed: u64,
    /// Allowed lateness over a request's deadline.
    pub slack: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            requests: 100_000,
            seconds: None,
            threads: 8,
            seed: 1,
            slack: Duration::from_millis(50),
        }
    }
}

/// What happened.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Requests issued.
    pub requests: u64,
    /// Ok with the right value.
    pub ok: u64,
    /// Ok with a wrong value: a reply handed to the wrong caller.
    pub misroutes: u64,
    /// `Timeout` errors.
    pub timeouts: u64,
    /// `Disconnected` errors.
    pub disconnected: u64,
    /// Any other error (there should be none), with the first few texts.
    pub other_errors: u64,
    /// Examples of misroutes and other errors.
    pub examples: Vec<String>,
    /// Results (of any kind) that came later than deadline + slack.
    pub late_results: u64,
    /// The largest lateness over a deadline seen (zero if none was late).
    pub max_over_deadline: Duration,
    /// Faults applied by the schedule, by kind.
    pub schedule: Vec<(&'static str, u64)>,
    /// The simulator's counters at the end (faults actually injected).
    pub sim: SimCounters,
    /// The client's counters at the end.
    pub client: Stats,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
    /// (threads, fds) before the simulator and client were created, and
    /// after both were closed (Linux only).
    pub counts_before: Option<(usize, usize)>,
    /// See `counts_before`.
    pub counts_after: Option<(usize, usize)>,
}

impl Report {
    /// True if every request ended as the rules demand and nothing leaked.
    pub fn passed(&self) -> bool {
        self.misroutes == 0
            && self.other_errors == 0
            && self.late_results == 0
            && self.counts_before == self.counts_after
            && self.ok + self.timeouts + self.disconnected == self.requests
    }

    /// A human-readable summary.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} requests in {:.1} s: {} ok, {} timeouts, {} disconnected, {} other errors, {} misroutes\n\
             results later than deadline + slack: {} (largest lateness over a deadline: {:.1} ms)\n\
             faults injected by the simulator: {} (delayed {}, late {}, garbage {} ({} bytes), fragmented {}, \
             links closed {}, stalls {}, trickled {})\n\
             fault schedule: {}\n\
             client: {} replies matched, {} late replies discarded, {} resyncs ({} bytes skipped), \
             {} link resets for unanswered requests, {} disconnects, {} reconnects, p50 {} us, p99 {} us\n\
             (threads, fds) before {:?}, after {:?}",
            self.requests,
            self.elapsed.as_secs_f64(),
            self.ok,
            self.timeouts,
            self.disconnected,
            self.other_errors,
            self.misroutes,
            self.late_results,
            self.max_over_deadline.as_secs_f64() * 1e3,
            self.sim.faults_injected,
            self.sim.delayed_replies,
            self.sim.late_replies,
            self.sim.garbage_insertions,
            self.sim.garbage_bytes,
            self.sim.fragmented_messages,
            self.sim.closed_after_messages,
            self.sim.stop_reading_pauses,
            self.sim.trickled_payloads,
            self.schedule
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            self.client.replies_matched,
            self.client.late_replies_discarded,
            self.client.resyncs,
            self.client.bytes_skipped,
            self.client.link_resyncs,
            self.client.disconnects,
            self.client.reconnects,
            self.client.latency.p50_us,
            self.client.latency.p99_us,
            self.counts_before,
            self.counts_after,
        );
        for e in &self.examples {
            s.push_str("\n  ");
            s.push_str(e);
        }
        s
    }
}

/// xorshift64*: deterministic per seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// (threads, open file descriptors) of this process on Linux.
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

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    misroutes: AtomicU64,
    timeouts: AtomicU64,
    disconnected: AtomicU64,
    other: AtomicU64,
    late: AtomicU64,
    max_over_us: AtomicU64,
    examples: Mutex<Vec<String>>,
}

impl Tally {
    fn example(&self, s: String) {
        let mut e = self.examples.lock();
        if e.len() < 10 {
            e.push(s);
        }
    }
}

fn data_for(tag: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64).wrapping_mul(131).wrapping_add(tag) as u8)
        .collect()
}

/// One request of a random kind; `Ok(None)` if the reply was right,
/// `Ok(Some(why))` if it was someone else's.
fn one_request(
    c: &Client,
    rng: &mut Rng,
    tag: u64,
    timeout: Duration,
) -> Result<Option<String>, Error> {
    let t = (tag & 0x7FFF_FFFF) as i32;
    let echo = Message::new(ECHO)
        .with_int32_data2(t)
        .with_double_data(tag as f64);
    let check_echo = |r: &Reply| {
        (r.message.code != ECHO
            || r.message.int32_data2 != t
            || r.message.double_data != tag as f64)
            .then(|| {
                format!(
                    "echo {tag} got tag {} / {}",
                    r.message.int32_data2, r.message.double_data
                )
            })
    };
    match rng.below(100) {
        0..=44 => c.request(echo, timeout).map(|r| check_echo(&r)),
        45..=54 => {
            let data = data_for(tag, rng.below(4096) as usize + 1);
            c.request_with_data(echo, &data, timeout).map(|r| {
                check_echo(&r)
                    .or_else(|| (r.data != data).then(|| format!("echo {tag}: wrong data")))
            })
        }
        55..=74 => {
            let axis = rng.below(4) as i32 + 1;
            let m = Message::new(C::STAGE_POSITION_GET).with_int32_data0(axis);
            c.request(m, timeout).map(|r| {
                let want = START[axis as usize - 1];
                (r.message.int32_data0 != axis || r.message.double_data != want).then(|| {
                    format!(
                        "position of axis {axis} got axis {} = {}",
                        r.message.int32_data0, r.message.double_data
                    )
                })
            })
        }
        75..=84 => c
            .request(Message::new(C::CAMERA_IMAGE_SIZE_GET), timeout)
            .map(|r| {
                let got = (r.message.int32_data0, r.message.int32_data1);
                (got != IMAGE).then(|| format!("image size got {got:?}"))
            }),
        _ => {
            // The non-blocking API: submit, then poll in short waits.
            let mut p = c.submit(echo, timeout)?;
            loop {
                if let Some(r) = p.try_get() {
                    return r.map(|r| check_echo(&r));
                }
                if let Some(r) = p.wait_timeout(Duration::from_millis(3)) {
                    return r.map(|r| check_echo(&r));
                }
            }
        }
    }
}

fn worker(
    c: Client,
    id: u64,
    seed: u64,
    opts: Options,
    issued: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) {
    let mut rng = Rng::new(seed ^ (id + 1).wrapping_mul(0xA24B_AED4_963E_E407));
    let mut n = 0u64;
    while !stop.load(Relaxed) && issued.fetch_add(1, Relaxed) < opts.requests {
        n += 1;
        let tag = (id << 40) | n;
        let timeout = Duration::from_millis(TIMEOUTS_MS[rng.below(4) as usize]);
        let t0 = Instant::now();
        let r = one_request(&c, &mut rng, tag, timeout);
        let took = t0.elapsed();
        if let Some(over) = took.checked_sub(timeout) {
            tally
                .max_over_us
                .fetch_max(over.as_micros() as u64, Relaxed);
            if over > opts.slack {
                tally.late.fetch_add(1, Relaxed);
                tally.example(format!(
                    "request {tag} took {took:?} with a {timeout:?} deadline: {r:?}"
                ));
            }
        }
        match r {
            Ok(None) => tally.ok.fetch_add(1, Relaxed),
            Ok(Some(why)) => {
                tally.example(format!("misroute: {why}"));
                tally.misroutes.fetch_add(1, Relaxed)
            }
            Err(Error::Timeout { .. }) => tally.timeouts.fetch_add(1, Relaxed),
            Err(Error::Disconnected { .. }) => tally.disconnected.fetch_add(1, Relaxed),
            Err(e) => {
                tally.example(format!("unexpected error: {e:?}"));
                tally.other.fetch_add(1, Relaxed)
            }
        };
    }
}

/// The fault schedule: every 20-150 ms one random change.
fn fault_schedule(
    sim: &Simulator,
    seed: u64,
    stop: crossbeam_channel::Receiver<()>,
) -> Vec<(&'static str, u64)> {
    const KINDS: [&str; 10] = [
        "delay",
        "no delay",
        "late reply",
        "garbage",
        "fragmenting",
        "link drop",
        "stall",
        "trickle",
        "lost reply",
        "calm",
    ];
    let mut rng = Rng::new(seed.wrapping_add(0xFA17));
    let mut counts = [0u64; KINDS.len()];
    let codes = [ECHO, C::STAGE_POSITION_GET, C::CAMERA_IMAGE_SIZE_GET];
    let mut last_drop = Instant::now();
    while let Err(RecvTimeoutError::Timeout) =
        stop.recv_timeout(Duration::from_millis(20 + rng.below(130)))
    {
        let mut k = rng.below(KINDS.len() as u64) as usize;
        // Link drops at most every half second: the soak is about requests.
        if k == 5 && last_drop.elapsed() < Duration::from_millis(500) {
            k = 9;
        }
        counts[k] += 1;
        let code = codes[rng.below(3) as usize];
        let ms = |lo: u64, hi: u64, rng: &mut Rng| Duration::from_millis(lo + rng.below(hi - lo));
        match k {
            0 => {
                let d = ms(1, 80, &mut rng);
                sim.update_faults(|f| {
                    f.delay.insert(code, d);
                });
            }
            1 => sim.update_faults(|f| {
                f.delay.clear();
                f.never_answer.clear();
            }),
            2 => {
                let d = ms(150, 1200, &mut rng);
                sim.update_faults(|f| f.answer_late = Some((code, d)));
            }
            3 => {
                let on = rng.below(2) == 0;
                let n = 1 + rng.below(64) as usize;
                sim.update_faults(|f| f.garbage_between = on.then_some(n));
            }
            4 => {
                let on = rng.below(2) == 0;
                let n = 1 + rng.below(64) as usize;
                sim.update_faults(|f| f.fragment_writes = on.then_some(n));
            }
            5 => {
                last_drop = Instant::now();
                let n = rng.below(30);
                sim.update_faults(|f| f.close_after_messages = Some(n));
            }
            6 => {
                let d = ms(10, 200, &mut rng);
                sim.update_faults(|f| f.stop_reading = Some(d));
            }
            7 => {
                let on = rng.below(2) == 0;
                sim.update_faults(|f| {
                    f.trickle_additional = on.then_some((512, Duration::from_millis(1)))
                });
            }
            8 => {
                // Requests of this code go unanswered until the next calm
                // or "no delay": the client must block the key, then reset
                // the link after the late-reply window, never misroute.
                sim.update_faults(|f| {
                    f.never_answer.insert(code);
                });
            }
            _ => sim.set_faults(Faults::none()),
        }
    }
    sim.set_faults(Faults::none());
    KINDS.iter().copied().zip(counts).collect()
}

/// Runs the soak and reports. Panics only on set-up failures.
pub fn run(opts: &Options) -> Report {
    let counts_before = proc_counts();
    let started = Instant::now();
    let sim = Simulator::start(
        SimConfig::default()
            .image_size(IMAGE.0 as u32, IMAGE.1 as u32)
            .start_position(START)
            .seed(opts.seed),
    )
    .expect("start the simulator");
    let policy = ReconnectPolicy::default()
        .initial_delay(Duration::from_millis(5))
        .max_delay(Duration::from_millis(100))
        .jitter(0.0);
    // A short late-reply window: a lost reply blocks its code for 1.5 s,
    // then the link is reset (the soak counts those resets).
    let client = Client::connect(
        &sim.addr().to_string(),
        ClientConfig::default()
            .reconnect(policy)
            .late_reply_window(Duration::from_millis(1500)),
    )
    .expect("connect to the simulator");
    let issued = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let workers: Vec<_> = (0..opts.threads as u64)
        .map(|id| {
            let (c, issued, stop, tally, o) = (
                client.clone(),
                issued.clone(),
                stop.clone(),
                tally.clone(),
                opts.clone(),
            );
            std::thread::Builder::new()
                .name(format!("soak-{id}"))
                .spawn(move || worker(c, id, o.seed, o, issued, stop, tally))
                .expect("spawn a worker")
        })
        .collect();
    let (stop_faults, faults_rx) = bounded::<()>(0);
    let schedule = std::thread::scope(|s| {
        let sim = &sim;
        let seed = opts.seed;
        let faults = s.spawn(move || fault_schedule(sim, seed, faults_rx));
        if let Some(secs) = opts.seconds {
            let end = started + Duration::from_secs_f64(secs);
            while Instant::now() < end && workers.iter().any(|w| !w.is_finished()) {
                std::thread::sleep(Duration::from_millis(20));
            }
            stop.store(true, Relaxed);
        }
        for w in workers {
            w.join().expect("a worker panicked");
        }
        drop(stop_faults);
        faults.join().expect("the fault thread panicked")
    });
    let client_stats = client.stats();
    client.close();
    drop(client);
    let sim_counters = sim.counters();
    drop(sim);
    // Joined threads can stay listed in /proc for a moment.
    let mut counts_after = proc_counts();
    let wait_until = Instant::now() + Duration::from_secs(10);
    while counts_after != counts_before && Instant::now() < wait_until {
        std::thread::sleep(Duration::from_millis(10));
        counts_after = proc_counts();
    }
    let t = &tally;
    let get = |a: &AtomicU64| a.load(Relaxed);
    let examples = t.examples.lock().clone();
    Report {
        requests: get(&t.ok)
            + get(&t.misroutes)
            + get(&t.timeouts)
            + get(&t.disconnected)
            + get(&t.other),
        ok: get(&t.ok),
        misroutes: get(&t.misroutes),
        timeouts: get(&t.timeouts),
        disconnected: get(&t.disconnected),
        other_errors: get(&t.other),
        examples,
        late_results: get(&t.late),
        max_over_deadline: Duration::from_micros(get(&t.max_over_us)),
        schedule,
        sim: sim_counters,
        client: client_stats,
        elapsed: started.elapsed(),
        counts_before,
        counts_after,
    }
}

fn main() {
    let _ = env_logger::try_init();
    let mut opts = Options {
        requests: u64::MAX,
        seconds: None,
        ..Options::default()
    };
    let mut args = std::env::args().skip(1);
    let mut requests_given = false;
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| panic!("{name} needs a value"))
        };
        match a.as_str() {
            "--requests" => {
                opts.requests = value("--requests").parse().expect("--requests N");
                requests_given = true;
            }
            "--seconds" => opts.seconds = Some(value("--seconds").parse().expect("--seconds S")),
            "--threads" => opts.threads = value("--threads").parse().expect("--threads T"),
            "--seed" => opts.seed = value("--seed").parse().expect("--seed X"),
            "--slack-ms" => {
                opts.slack =
                    Duration::from_millis(value("--slack-ms").parse().expect("--slack-ms MS"))
            }
            "-h" | "--help" => {
                println!(
                    "usage: soak [--requests N] [--seconds S] [--threads T] [--seed X] [--slack-ms MS]\n\
                     Runs until N requests (default 100000 if --seconds is not given) or S seconds."
                );
                return;
            }
            other => panic!("unknown argument {other} (try --help)"),
        }
    }
    if !requests_given && opts.seconds.is_none() {
        opts.requests = 100_000;
    }
    println!("soak: {opts:?}");
    let report = run(&opts);
    println!("{}", report.summary());
    if report.passed() {
        println!("PASSED");
    } else {
        println!("FAILED");
        std::process::exit(1);
    }
}
