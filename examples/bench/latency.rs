//! Request latency: sequential `Client::request` against the raw ping-pong.

use std::hint::black_box;
use std::time::Instant;

use flamingo_client::{Client, ClientConfig};

use crate::raw::{self, PingPong};
use crate::report::{done, pct_us, progress, times, us, Report};
use crate::{Run, TIMEOUT};

/// Times `n` calls of `f` into `out` (ns).
fn timed(n: usize, out: &mut Vec<u64>, mut f: impl FnMut()) {
    for _ in 0..n {
        let t0 = Instant::now();
        f();
        out.push(t0.elapsed().as_nanos() as u64);
    }
}

/// Raw and client request latencies (sorted, ns), in alternating blocks of
/// 250 so both see the same machine (a noisy neighbour slows both alike).
/// Each uses its own connection to the same echo server.
fn rtt_pair(run: &Run, total: usize, warm: usize) -> (Vec<u64>, Vec<u64>) {
    let block = 250;
    let mut raw = PingPong::new(run.ports.echo);
    let client = Client::connect(&run.ports.echo.to_string(), ClientConfig::default())
        .expect("client connects to the echo server");
    let msg = raw::request(raw::distinct_code(7));
    let mut request = || {
        black_box(client.request(msg, TIMEOUT).expect("echo reply"));
    };
    let (mut r, mut c) = (Vec::with_capacity(total), Vec::with_capacity(total));
    timed(warm, &mut Vec::new(), || raw.once());
    timed(warm, &mut Vec::new(), &mut request);
    while r.len() < total {
        timed(block, &mut r, || raw.once());
        timed(block, &mut c, &mut request);
    }
    client.close();
    r.sort_unstable();
    c.sort_unstable();
    (r, c)
}

pub fn bench(run: &Run, out: &mut Report) {
    let t = progress(&run.fig("request latency"));
    let total = run.opts.pick(20_000, 6_000);
    let warm = run.opts.pick(2_000, 1_000);
    let (r, c) = rtt_pair(run, total, warm);
    done(t);
    let (r50, r99, r999) = (pct_us(&r, 50.0), pct_us(&r, 99.0), pct_us(&r, 99.9));
    let (c50, c99, c999) = (pct_us(&c, 50.0), pct_us(&c, 99.0), pct_us(&c, 99.9));
    out.num(&run.key("rtt_ratio"), c50 / r50);
    out.num(&run.key("rtt_p99_ratio"), c99 / r99);
    out.num(&run.key("rtt_p50_us"), c50);
    out.num(&run.key("raw_rtt_p50_us"), r50);
    out.num(&run.key("rtt_p99_us"), c99);
    out.num(&run.key("raw_rtt_p99_us"), r99);
    out.num(&run.key("rtt_p999_us"), c999);
    out.num(&run.key("raw_rtt_p999_us"), r999);
    out.row(
        &run.fig(&format!("request latency p50 ({total} sequential)")),
        us(c50),
        us(r50),
        times(c50 / r50),
        "<= 1.15x",
        Some(c50 / r50 <= 1.15),
    );
    out.row(
        &run.fig("request latency p99"),
        us(c99),
        us(r99),
        times(c99 / r99),
        "<= 1.5x",
        Some(c99 / r99 <= 1.5),
    );
    out.row(
        &run.fig("request latency p99.9"),
        us(c999),
        us(r999),
        times(c999 / r999),
        "",
        None,
    );
}
