//! Imaging figures for BENCHMARKS.md ("Imaging"): 16-bit to 8-bit display
//! conversion of a 2048 x 2048 frame on one thread, and writing TIFF stacks.
//!
//! ```sh
//! cargo run --release --example imaging_bench            # 2048 x 2048, 300 conversions
//! cargo run --release --example imaging_bench -- 1024 100  # size and repetitions
//! ```

use std::io::Cursor;
use std::time::{Duration, Instant};

use flamingo_client::codec::LiveHeader;
use flamingo_client::live::{DisplayLut, Frame, TiffMetadata, TiffStackWriter};

fn main() {
    let mut args = std::env::args().skip(1);
    let side: u32 = args.next().map_or(2048, |s| s.parse().expect("SIZE"));
    let reps: usize = args.next().map_or(300, |s| s.parse().expect("REPETITIONS"));

    // Camera-like values: a noisy 12-bit range, so look-ups spread over the table.
    let mut state = 0x1234_5678_u32;
    let pixels: Vec<u16> = (0..side * side)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            100 + (state >> 20) as u16
        })
        .collect();
    let mut bytes = Vec::with_capacity(pixels.len() * 2);
    for p in &pixels {
        bytes.extend_from_slice(&p.to_le_bytes());
    }
    // The header's display scale, as the instrument sends it.
    let header = LiveHeader {
        image_size: side * side * 2,
        width: side,
        height: side,
        scale_min: 100,
        scale_max: 4196,
        ..LiveHeader::default()
    };
    let frame = Frame::from_header_and_bytes(header, bytes).expect("frame");
    let mb = frame.as_bytes().len() as f64 / 1e6;
    println!("frame {side} x {side} ({mb:.1} MB), {reps} repetitions, one thread");

    let builds = 1000;
    let t = Instant::now();
    for i in 0..builds {
        std::hint::black_box(DisplayLut::new(100 + (i % 7) as u16, 4000));
    }
    let build = t.elapsed() / builds;
    println!("DisplayLut::new                 {:>8.1} µs", us(build));

    let lut = DisplayLut::new(100, 4196);
    let mut gray = Vec::new();
    let kept = time(reps, || frame.to_display_8bit_with(&lut, &mut gray));
    report("to_display_8bit_with (kept LUT)", kept);
    let fresh = time(reps, || frame.to_display_8bit(&mut gray));
    report("to_display_8bit (LUT per call)", fresh);
    // No scale in the header: the frame's own range, one extra pass.
    let auto = Frame::from_pixels(side, side, &pixels).expect("frame");
    let auto_t = time(reps, || auto.to_display_8bit(&mut gray));
    report("to_display_8bit (auto window)", auto_t);

    let pages = (reps / 10).clamp(1, 40) as u32;
    let meta = TiffMetadata::new()
        .with_pixel_size_um(0.65)
        .with_z_spacing_um(2.5);
    let mut file = Cursor::new(Vec::with_capacity(
        frame.as_bytes().len() * pages as usize + 65536,
    ));
    let t = Instant::now();
    let mut stack = TiffStackWriter::new(&mut file, meta).expect("writer");
    for _ in 0..pages {
        stack.push(&frame).expect("page");
    }
    stack.finish().expect("finish");
    let elapsed = t.elapsed();
    println!(
        "TiffStackWriter, {pages} pages in memory {:>8.2} ms/page ({:.0} MB/s)",
        ms(elapsed / pages),
        mb * f64::from(pages) / elapsed.as_secs_f64()
    );
}

/// Median of `reps` timed runs (after two warm-up runs).
fn time(reps: usize, mut f: impl FnMut()) -> Duration {
    f();
    f();
    let mut v: Vec<Duration> = (0..reps.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    v.sort();
    v[v.len() / 2]
}

fn report(what: &str, median: Duration) {
    println!(
        "{what:<32}{:>8.2} ms/frame median = {:.0} frames/s",
        ms(median),
        1.0 / median.as_secs_f64()
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
