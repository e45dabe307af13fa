//! The recording proxy's added latency: the raw ping-pong client against
//! the echo server directly, and the same client through a recording
//! `Proxy` (writing its file to the temporary directory), in alternating
//! blocks of the same run. Both use the raw client, so the ratio is the
//! proxy's cost alone: two more loopback hops, the framing of each message
//! and its record.

use std::time::Instant;

use flamingo_client::record::{Proxy, ProxyConfig};

use crate::raw::PingPong;
use crate::report::{done, pct_us, progress, times, us, Report};
use crate::Run;

/// Times `n` round trips of `p` into `out` (ns).
fn timed(n: usize, out: &mut Vec<u64>, p: &mut PingPong) {
    for _ in 0..n {
        let t0 = Instant::now();
        p.once();
        out.push(t0.elapsed().as_nanos() as u64);
    }
}

pub fn bench(run: &Run, out: &mut Report) {
    let t = progress(&run.fig("recording proxy latency"));
    let total = run.opts.pick(20_000, 6_000);
    let warm = run.opts.pick(2_000, 1_000);
    let block = 250;
    let path = std::env::temp_dir().join(format!("flamingo-bench-{}.flrec", std::process::id()));
    let proxy = Proxy::create(
        ProxyConfig::new("127.0.0.1:0".parse().expect("address"), run.ports.echo),
        &path,
    )
    .expect("start the recording proxy");
    let mut direct = PingPong::new(run.ports.echo);
    let mut via = PingPong::new(proxy.addr());
    let (mut d, mut v) = (Vec::with_capacity(total), Vec::with_capacity(total));
    timed(warm, &mut Vec::new(), &mut direct);
    timed(warm, &mut Vec::new(), &mut via);
    while d.len() < total {
        timed(block, &mut d, &mut direct);
        timed(block, &mut v, &mut via);
    }
    // CPU of the recorder's threads, while its connections still exist.
    let cpu = recorder_cpu_ns();
    drop((direct, via));
    let stats = proxy.stop().expect("finish the recording");
    let _ = std::fs::remove_file(&path);
    done(t);
    d.sort_unstable();
    v.sort_unstable();
    let (d50, d99, d999) = (pct_us(&d, 50.0), pct_us(&d, 99.0), pct_us(&d, 99.9));
    let (v50, v99, v999) = (pct_us(&v, 50.0), pct_us(&v, 99.0), pct_us(&v, 99.9));
    out.num(&run.key("record_p50_ratio"), v50 / d50);
    out.num(&run.key("record_p99_ratio"), v99 / d99);
    out.num(&run.key("record_p50_us"), v50);
    out.num(&run.key("record_direct_p50_us"), d50);
    out.num(&run.key("record_p99_us"), v99);
    out.num(&run.key("record_direct_p99_us"), d99);
    out.num(&run.key("record_p999_us"), v999);
    out.num(&run.key("record_direct_p999_us"), d999);
    out.int(&run.key("record_messages"), stats.messages);
    let per_message = cpu.map(|ns| ns as f64 / 1e3 / stats.messages.max(1) as f64);
    out.opt(&run.key("record_cpu_us_per_message"), per_message);
    out.int(&run.key("record_dropped"), stats.dropped_records);
    out.row(
        &run.fig(&format!(
            "through the recorder vs direct, p50 ({total} raw round trips)"
        )),
        us(v50),
        us(d50),
        times(v50 / d50),
        "",
        None,
    );
    out.row(
        &run.fig("through the recorder vs direct, p99"),
        us(v99),
        us(d99),
        times(v99 / d99),
        "",
        None,
    );
    out.row(
        &run.fig("through the recorder vs direct, p99.9"),
        us(v999),
        us(d999),
        times(v999 / d999),
        "",
        None,
    );
    out.info(
        &run.fig("  recorder CPU per message (forwarding and recording)"),
        per_message.map_or("n/a".into(), |v| format!("{v:.1} µs")),
    );
}

/// CPU time of the recorder's threads (named `flamingo-rec-*`) so far, in
/// ns (Linux: /proc/self/task/*/schedstat; `None` elsewhere).
fn recorder_cpu_ns() -> Option<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = entry.ok()?.path();
        let Ok(name) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        if !name.starts_with("flamingo-rec") {
            continue;
        }
        if let Ok(s) = std::fs::read_to_string(dir.join("schedstat")) {
            total += s.split_whitespace().next()?.parse::<u64>().ok()?;
        }
    }
    Some(total)
}
