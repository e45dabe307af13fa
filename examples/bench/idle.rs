//! Idle cost: a connected client with a subscriber and a live stream with
//! no frames, for a few seconds, in a child process of its own (so its CPU
//! time, threads and resident memory are the client's alone).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flamingo_client::live::{LiveConfig, LiveStream};
use flamingo_client::{Client, ClientConfig};

use crate::report::{done, progress, Report};
use crate::{sys, Run, TIMEOUT};

/// The child's entry point: `--idle-child <command addr> <live addr> <secs>`.
/// Prints one `IDLE key=value ...` line.
pub fn child(args: &[String]) {
    let cmd = &args[0];
    let live_addr: SocketAddr = args[1].parse().expect("live address");
    let secs: f64 = args[2].parse().expect("seconds");
    let threads0 = sys::threads();
    let client = Client::connect(cmd, ClientConfig::default()).expect("client connects");
    let sub = client.subscribe();
    let live = LiveStream::connect(live_addr, LiveConfig::default(), Instant::now() + TIMEOUT)
        .expect("live stream connects");
    std::thread::sleep(Duration::from_millis(200));
    let (cpu0, cs0) = (sys::cpu_ns(), sys::context_switches());
    std::thread::sleep(Duration::from_secs_f64(secs));
    let (cpu1, cs1) = (sys::cpu_ns(), sys::context_switches());
    let show = |v: Option<u64>| v.map_or("na".to_string(), |v| v.to_string());
    println!(
        "IDLE cpu_ns={} ctxsw={} threads0={} threads={} rss_kib={} secs={secs}",
        show(cpu0.zip(cpu1).map(|(a, b)| b - a)),
        show(cs0.zip(cs1).map(|(a, b)| b - a)),
        show(threads0.map(|v| v as u64)),
        show(sys::threads().map(|v| v as u64)),
        show(sys::rss_kib()),
    );
    drop(sub);
    live.close();
    client.close();
}

/// Kills and reaps the idle child if the parent leaves early.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn bench(run: &Run, out: &mut Report) {
    let secs = run.opts.pick(5.0, 3.0);
    let t = progress(&format!("idle cost ({secs} s, child process)"));
    let exe = std::env::current_exe().expect("path of this executable");
    let mut child = Reap(
        Command::new(exe)
            .args([
                "--idle-child".to_string(),
                run.ports.echo.to_string(),
                run.ports.silent.to_string(),
                secs.to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the idle child process"),
    );
    let mut line = String::new();
    let mut stdout = BufReader::new(child.0.stdout.take().expect("child stdout"));
    while stdout.read_line(&mut line).unwrap_or(0) > 0 && !line.starts_with("IDLE") {
        line.clear();
    }
    drop(stdout);
    let status = child.0.wait();
    if !status.as_ref().is_ok_and(|s| s.success()) {
        eprintln!("bench: the idle child process failed: {status:?}");
    }
    done(t);
    let field = |name: &str| -> Option<f64> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
    };
    // Normalised to 5 s so quick and full runs compare.
    let cpu_ms = field("cpu_ns").map(|ns| ns / 1e6 * 5.0 / secs);
    let lib_threads = field("threads").zip(field("threads0")).map(|(a, b)| a - b);
    let rss_mb = field("rss_kib").map(|k| k / 1024.0);
    let ctx = field("ctxsw");
    out.opt("idle_cpu_ms", cpu_ms);
    out.opt("idle_context_switches", ctx);
    out.opt("threads", lib_threads);
    out.opt("rss_mb", rss_mb);
    let na = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("n/a".to_string(), f);
    out.row(
        "idle CPU per 5 s (client + subscriber + live)",
        na(cpu_ms, &|v| format!("{v:.2} ms")),
        String::new(),
        String::new(),
        "< 1 ms",
        cpu_ms.map(|v| v < 1.0),
    );
    out.info(
        "  idle wake-ups (context switches) per window",
        na(ctx, &|v| format!("{v:.0}")),
    );
    out.info(
        "  threads started by the library / resident memory",
        format!(
            "{} / {}",
            na(lib_threads, &|v| format!("{v:.0}")),
            na(rss_mb, &|v| format!("{v:.1} MB"))
        ),
    );
}
