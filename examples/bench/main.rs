//! Benchmark: flamingo-client against the strongest simple raw clients, in
//! one run, against an instrument stand-in in another process.
//!
//! ```text
//! cargo run --release --example bench                    # full run, ~35 s
//! cargo run --release --example bench -- --quick --json # reduced, ~12 s, JSON last line
//! cargo run --release --example bench -- --pin          # adds the pinned rows (pinned_*), ~60 s
//! cargo run --release --example bench -- --only rtt,tput
//! cargo run --release --example bench -- --only record  # the recording proxy's added latency
//! cargo run --release --example bench -- --quick --repeat 5 # five runs, then the medians (~75 s)
//! perf record -g ./target/release/examples/bench --only callers # the 8 callers alone, for a profiler
//! ```
//!
//! The servers (echo, events, frames, a silent live port) run in a child
//! process: the benchmark re-executes itself with `--serve` (see
//! `servers.rs`). Every library figure is compared with a raw client written
//! here with plain `std::net` code (`raw.rs`: blocking, and busy-polling for
//! the latency floor), measured in the same run in alternating blocks, so
//! the ratios hold on a noisy machine.
//!
//! Thread placement is left to the OS, as on a lab PC. `--pin` adds a
//! second set of latency, throughput and event rows with the server process
//! on the last CPU and the client side on the others (Linux, `taskset`),
//! reported as `pinned_*`. See BENCHMARKS.md for what each figure means.

#[path = "../support/cli_json.rs"]
mod cli_json;
mod codec;
mod events;
mod idle;
mod latency;
mod live;
mod raw;
mod record;
mod repeat;
mod report;
mod servers;
mod sys;
mod throughput;

use std::time::{Duration, Instant};

use report::Report;
use servers::{Ports, ServerProcess};

/// Deadline of every blocking call: a lost reply fails the run, never hangs it.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Figures `--only` accepts.
const PARTS: [&str; 8] = [
    "codec", "rtt", "tput", "events", "live", "idle", "record", "callers",
];

pub struct Opts {
    pub quick: bool,
    json: bool,
    pin: bool,
    only: Option<Vec<String>>,
}

impl Opts {
    fn wants(&self, part: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|v| v.iter().any(|p| p == part))
    }
    /// Parts that run only when `--only` names them.
    fn names(&self, part: &str) -> bool {
        self.only
            .as_ref()
            .is_some_and(|v| v.iter().any(|p| p == part))
    }
    /// Full-run value or quick-run value.
    pub fn pick<T>(&self, full: T, quick: T) -> T {
        if self.quick {
            quick
        } else {
            full
        }
    }
}

/// One set of figures against one server process: unpinned (the headline)
/// or pinned (keys prefixed `pinned_`, rows labelled "pinned:").
pub struct Run<'a> {
    pub opts: &'a Opts,
    pub ports: Ports,
    prefix: &'static str,
    label: &'static str,
}

impl Run<'_> {
    /// The JSON key of this run's figure `k`.
    pub fn key(&self, k: &str) -> String {
        format!("{}{k}", self.prefix)
    }
    /// The table label of this run's figure `name`.
    pub fn fig(&self, name: &str) -> String {
        format!("{}{name}", self.label)
    }
}

fn usage() -> String {
    format!(
        "usage: bench [--quick] [--json] [--pin] [--only {}] [--repeat N]",
        PARTS.join(",")
    )
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut opts = Opts {
        quick: false,
        json: false,
        pin: false,
        only: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => opts.quick = true,
            "--json" => opts.json = true,
            "--pin" => opts.pin = true,
            "--only" => {
                let v = it.next().ok_or("--only needs a list, e.g. rtt,tput")?;
                let parts: Vec<String> = v.split(',').map(str::to_string).collect();
                if let Some(bad) = parts.iter().find(|p| !PARTS.contains(&p.as_str())) {
                    return Err(format!("unknown figure {bad:?}; {}", usage()));
                }
                opts.only = Some(parts);
            }
            "-h" | "--help" => {
                println!("{}", usage());
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}; {}", usage())),
        }
    }
    Ok(opts)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--serve") => servers::serve(&args[1..]),
        Some("--idle-child") => return idle::child(&args[1..]),
        _ => {}
    }
    if let Some(i) = args.iter().position(|a| a == "--repeat") {
        let n = args.get(i + 1).and_then(|v| v.parse::<usize>().ok());
        let Some(n) = n.filter(|&n| n > 0) else {
            eprintln!("bench: --repeat needs a number of runs; {}", usage());
            std::process::exit(2);
        };
        let rest: Vec<String> = args
            .iter()
            .enumerate()
            .filter(|&(j, a)| j != i && j != i + 1 && a != "--json")
            .map(|(_, a)| a.clone())
            .collect();
        if let Err(e) = repeat::run(n, &rest) {
            eprintln!("bench: {e}");
            std::process::exit(1);
        }
        return;
    }
    let opts = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&opts) {
        eprintln!("bench: {e}");
        std::process::exit(1);
    }
}

fn run(opts: &Opts) -> Result<(), String> {
    let started = Instant::now();
    let base = sys::epoch_ns();
    sys::set_clock_base(base);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut out = Report::default();
    out.int("cores", cores as u64);
    out.str("placement", "os");
    out.bool("quick", opts.quick);
    let load0 = sys::load_average();
    out.opt("load_average_start", load0);
    println!(
        "flamingo-client benchmark ({} run) on {cores} core(s), {} {}, load average {}; servers \
         in a child process, thread placement left to the OS{}",
        if opts.quick { "quick" } else { "full" },
        std::env::consts::OS,
        std::env::consts::ARCH,
        load0.map_or("n/a".into(), |l| format!("{l:.2}")),
        if opts.pin { "; then pinned rows" } else { "" },
    );

    // The guard kills and reaps the server process on every way out.
    let server = ServerProcess::start(base, None)?;
    let unpinned = Run {
        opts,
        ports: server.ports,
        prefix: "",
        label: "",
    };
    if opts.wants("codec") {
        codec::bench(opts, &mut out);
    }
    if opts.wants("rtt") {
        latency::bench(&unpinned, &mut out);
    }
    if opts.wants("tput") {
        throughput::bench(&unpinned, &mut out);
    }
    if opts.wants("events") {
        events::bench(&unpinned, &mut out);
    }
    if opts.wants("live") {
        live::bench(&unpinned, &mut out);
    }
    if opts.wants("idle") {
        idle::bench(&unpinned, &mut out);
    }
    if opts.wants("record") {
        record::bench(&unpinned, &mut out);
    }
    if opts.names("callers") {
        throughput::callers_alone(&unpinned, &mut out);
    }
    drop(server);

    if opts.pin {
        pinned(opts, base, cores, &mut out)?;
    }

    let load1 = sys::load_average();
    out.opt("load_average_end", load1);
    println!("\n{}", out.table());
    println!(
        "\ntotal time {:.1} s, load average at the end {}",
        started.elapsed().as_secs_f64(),
        load1.map_or("n/a".into(), |l| format!("{l:.2}"))
    );
    if opts.json {
        println!("{}", out.json());
    }
    Ok(())
}

/// The secondary rows: the server process on the last CPU, this process
/// (the callers and every thread the library starts, which inherit the main
/// thread's CPU set) on the others, as if the instrument were another
/// machine with a free CPU of its own.
fn pinned(opts: &Opts, base: u64, cores: usize, out: &mut Report) -> Result<(), String> {
    let last = cores.saturating_sub(1);
    let client_cpus: Vec<usize> = (0..last).collect();
    if cores < 2 || !sys::pin(None, Some(&client_cpus)) {
        eprintln!("bench: --pin needs Linux, taskset and 2 CPUs; no pinned rows");
        out.bool("pinned", false);
        return Ok(());
    }
    out.bool("pinned", true);
    let result = (|| {
        let server = ServerProcess::start(base, Some(last))?;
        let run = Run {
            opts,
            ports: server.ports,
            prefix: "pinned_",
            label: "pinned: ",
        };
        if opts.wants("rtt") {
            latency::bench(&run, out);
        }
        if opts.wants("tput") {
            throughput::bench(&run, out);
        }
        if opts.wants("events") {
            events::bench(&run, out);
        }
        Ok(())
    })();
    sys::pin(None, None);
    result
}
