//! Live frames: 2048 x 2048 u16 frames through `LiveStream` against the
//! raw reader, rounds alternating raw / client so both see the same machine.

use std::hint::black_box;
use std::time::{Duration, Instant};

use flamingo_client::codec::LIVE_HEADER_LEN;
use flamingo_client::live::{Frame, LiveConfig, LiveStream};

use crate::raw::{self, Flow};
use crate::report::{done, median, percent, progress, Report};
use crate::{Run, TIMEOUT};

struct LiveRun {
    flow: Flow,
    dropped: u64,
    allocs: u64,
}

impl LiveRun {
    fn mb_s(&self) -> f64 {
        self.flow.bytes as f64 / self.flow.secs / 1e6
    }
    fn fps(&self) -> f64 {
        self.flow.frames as f64 / self.flow.secs
    }
}

/// Frames through `LiveStream::next_frame`; `convert` calls `pixels()` (a
/// converted u16 copy) on every frame, otherwise `as_bytes()` (zero copy)
/// and `pixel(x, y)` are used.
fn client(run: &Run, warm: Duration, window: Duration, convert: bool) -> LiveRun {
    let live = LiveStream::connect(
        run.ports.frames,
        LiveConfig::default(),
        Instant::now() + TIMEOUT,
    )
    .expect("live stream connects");
    let touch = |f: &Frame| -> u64 {
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
    live.close();
    LiveRun {
        flow: Flow {
            bytes,
            frames,
            secs,
        },
        dropped: s1.dropped - s0.dropped,
        allocs: (s1.buffers_allocated - s0.buffers_allocated)
            + (s1.pixel_buffers_allocated - s0.pixel_buffers_allocated),
    }
}

fn raw_run(run: &Run, warm: Duration, window: Duration, rcvbuf: bool) -> LiveRun {
    LiveRun {
        flow: raw::live(run.ports.frames, warm, window, rcvbuf),
        dropped: 0,
        allocs: 0,
    }
}

pub fn bench(run: &Run, out: &mut Report) {
    let t = progress(&run.fig("live stream"));
    let rounds = run.opts.pick(3, 1);
    let warm = Duration::from_millis(run.opts.pick(200, 200));
    let window = Duration::from_millis(run.opts.pick(700, 600));
    let (mut raw, mut raw1m, mut zc, mut conv) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        raw.push(raw_run(run, warm, window, false));
        zc.push(client(run, warm, window, false));
        conv.push(client(run, warm, window, true));
        if !run.opts.quick {
            raw1m.push(raw_run(run, warm, window, true));
        }
    }
    done(t);
    let med = |v: &[LiveRun], f: fn(&LiveRun) -> f64| median(v.iter().map(f).collect());
    let (r, r1, c, p) = (
        med(&raw, LiveRun::mb_s),
        med(&raw1m, LiveRun::mb_s),
        med(&zc, LiveRun::mb_s),
        med(&conv, LiveRun::mb_s),
    );
    let (rf, cf, pf) = (
        med(&raw, LiveRun::fps),
        med(&zc, LiveRun::fps),
        med(&conv, LiveRun::fps),
    );
    let frames: u64 = zc.iter().chain(&conv).map(|x| x.flow.frames).sum();
    let allocs: u64 = zc.iter().chain(&conv).map(|x| x.allocs).sum();
    let dropped: u64 = zc.iter().chain(&conv).map(|x| x.dropped).sum();
    out.num(&run.key("live_ratio"), c / r);
    out.num(&run.key("live_mb_s"), c);
    out.num(&run.key("raw_live_mb_s"), r);
    out.num(&run.key("live_fps"), cf);
    out.num(&run.key("raw_live_fps"), rf);
    out.num(&run.key("live_pixels_ratio"), p / r);
    out.num(&run.key("live_pixels_mb_s"), p);
    out.num(
        &run.key("live_allocs_per_frame"),
        allocs as f64 / frames as f64,
    );
    out.int(&run.key("live_allocs"), allocs);
    out.int(&run.key("live_dropped"), dropped);
    if !raw1m.is_empty() {
        out.num(&run.key("raw_live_rcvbuf_1m_mb_s"), r1);
    }
    out.row(
        &run.fig("live 2048x2048 u16, as_bytes() + pixel()"),
        format!("{c:.0} MB/s ({cf:.0} fps)"),
        format!("{r:.0} MB/s ({rf:.0} fps)"),
        percent(c / r),
        ">= 95 %",
        Some(c / r >= 0.95),
    );
    out.row(
        &run.fig("live, pixels() (u16 copy per frame)"),
        format!("{p:.0} MB/s ({pf:.0} fps)"),
        format!("{r:.0} MB/s"),
        percent(p / r),
        "",
        None,
    );
    if !raw1m.is_empty() {
        out.row(
            &run.fig("  raw reader with the library's 1 MiB SO_RCVBUF"),
            String::new(),
            format!("{r1:.0} MB/s"),
            percent(c / r1),
            "",
            None,
        );
    }
    out.row(
        &run.fig("live buffer allocations after warm-up"),
        format!("{allocs} in {frames} frames ({dropped} dropped, latest wins)"),
        String::new(),
        String::new(),
        "0 per frame",
        Some(allocs == 0),
    );
}
