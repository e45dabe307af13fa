//! Request latency: sequential `Client::request` against two raw ping-pong
//! clients, the busy-polling one (the floor: it never parks) and the
//! blocking one.

use std::hint::black_box;
use std::time::Instant;

use flamingo_client::{Client, ClientConfig};

use crate::raw::{self, BusyPingPong, PingPong};
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

/// Request latencies (sorted, ns) of one run.
struct Samples {
    /// The blocking raw ping-pong.
    raw: Vec<u64>,
    /// The busy-polling raw ping-pong.
    busy: Vec<u64>,
    /// The library.
    client: Vec<u64>,
}

/// p50, p99 and p99.9 of sorted samples, in µs.
#[derive(Clone, Copy)]
struct Pcts {
    p50: f64,
    p99: f64,
    p999: f64,
}

impl Pcts {
    fn of(sorted: &[u64]) -> Pcts {
        Pcts {
            p50: pct_us(sorted, 50.0),
            p99: pct_us(sorted, 99.0),
            p999: pct_us(sorted, 99.9),
        }
    }
}

/// The three clients' request latencies, in alternating blocks of 250 so
/// all see the same machine (a noisy neighbour slows each alike). Each uses
/// its own connection to the same echo server.
fn rtt_samples(run: &Run, total: usize, warm: usize) -> Samples {
    let block = 250;
    let mut raw = PingPong::new(run.ports.echo);
    let mut busy = BusyPingPong::new(run.ports.echo);
    let client = Client::connect(&run.ports.echo.to_string(), ClientConfig::default())
        .expect("client connects to the echo server");
    let msg = raw::request(raw::distinct_code(7));
    let mut request = || {
        black_box(client.request(msg, TIMEOUT).expect("echo reply"));
    };
    let mut out = Samples {
        raw: Vec::with_capacity(total),
        busy: Vec::with_capacity(total),
        client: Vec::with_capacity(total),
    };
    timed(warm, &mut Vec::new(), || raw.once());
    timed(warm, &mut Vec::new(), || busy.once());
    timed(warm, &mut Vec::new(), &mut request);
    while out.raw.len() < total {
        timed(block, &mut out.raw, || raw.once());
        timed(block, &mut out.busy, || busy.once());
        timed(block, &mut out.client, &mut request);
    }
    client.close();
    for v in [&mut out.raw, &mut out.busy, &mut out.client] {
        v.sort_unstable();
    }
    out
}

pub fn bench(run: &Run, out: &mut Report) {
    let t = progress(&run.fig("request latency"));
    let total = run.opts.pick(20_000, 6_000);
    let warm = run.opts.pick(2_000, 1_000);
    let s = rtt_samples(run, total, warm);
    done(t);
    report(run, total, &s, out);
}

fn report(run: &Run, total: usize, s: &Samples, out: &mut Report) {
    let (c, r, b) = (Pcts::of(&s.client), Pcts::of(&s.raw), Pcts::of(&s.busy));
    // Against the blocking raw client, as before the busy floor existed.
    out.num(&run.key("rtt_ratio"), c.p50 / r.p50);
    out.num(&run.key("rtt_p99_ratio"), c.p99 / r.p99);
    out.num(&run.key("rtt_p50_us"), c.p50);
    out.num(&run.key("raw_rtt_p50_us"), r.p50);
    out.num(&run.key("rtt_p99_us"), c.p99);
    out.num(&run.key("raw_rtt_p99_us"), r.p99);
    out.num(&run.key("rtt_p999_us"), c.p999);
    out.num(&run.key("raw_rtt_p999_us"), r.p999);
    // Against the busy-polling floor: the targets apply here.
    out.num(&run.key("rtt_ratio_busy"), c.p50 / b.p50);
    out.num(&run.key("rtt_p99_ratio_busy"), c.p99 / b.p99);
    out.num(&run.key("raw_busy_rtt_p50_us"), b.p50);
    out.num(&run.key("raw_busy_rtt_p99_us"), b.p99);
    out.num(&run.key("raw_busy_rtt_p999_us"), b.p999);
    out.row(
        &run.fig(&format!(
            "request latency p50 ({total} sequential), busy-polling floor"
        )),
        us(c.p50),
        us(b.p50),
        times(c.p50 / b.p50),
        "<= 1.15x",
        Some(c.p50 / b.p50 <= 1.15),
    );
    out.row(
        &run.fig("request latency p99, busy-polling floor"),
        us(c.p99),
        us(b.p99),
        times(c.p99 / b.p99),
        "<= 1.5x",
        Some(c.p99 / b.p99 <= 1.5),
    );
    out.row(
        &run.fig("request latency p99.9, busy-polling floor"),
        us(c.p999),
        us(b.p999),
        times(c.p999 / b.p999),
        "",
        None,
    );
    out.row(
        &run.fig("  request latency p50 / p99, blocking raw client"),
        format!("{:.1} / {:.1} µs", c.p50, c.p99),
        format!("{:.1} / {:.1} µs", r.p50, r.p99),
        format!("{} / {}", times(c.p50 / r.p50), times(c.p99 / r.p99)),
        "",
        None,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::servers::Ports;
    use crate::Opts;

    #[test]
    fn keys_keep_their_meaning_and_add_the_busy_floor() {
        let opts = Opts {
            quick: true,
            json: false,
            pin: false,
            only: None,
        };
        let any: std::net::SocketAddr = ([127, 0, 0, 1], 1).into();
        let run = Run {
            opts: &opts,
            ports: Ports {
                echo: any,
                events: any,
                frames: any,
                silent: any,
            },
            prefix: "",
            label: "",
        };
        // Client 60 µs, blocking raw 120 µs, busy raw 50 µs at every percentile.
        let s = Samples {
            raw: vec![120_000; 10],
            busy: vec![50_000; 10],
            client: vec![60_000; 10],
        };
        let mut out = Report::default();
        report(&run, 10, &s, &mut out);
        let json = out.json();
        for kv in [
            r#""rtt_ratio":0.5"#,
            r#""rtt_p99_ratio":0.5"#,
            r#""raw_rtt_p50_us":120"#,
            r#""rtt_ratio_busy":1.2"#,
            r#""rtt_p99_ratio_busy":1.2"#,
            r#""raw_busy_rtt_p50_us":50"#,
        ] {
            assert!(json.contains(kv), "{kv} in {json}");
        }
        let table = out.table();
        assert!(
            table.contains("MISSED"),
            "1.2x misses the 1.15x target: {table}"
        );
    }
}
