//! Display conversion on a thread of its own: the newest frame (live, a
//! snapshot or a stack plane) and the contrast settings go in; an 8-bit
//! image, the frame's histogram and the window used come out, newest wins.
//!
//! A 2048 x 2048 frame's histogram and lookup take milliseconds: that work
//! stays off the UI thread, which only uploads the finished image. A change
//! of contrast re-converts the frame on screen, also when no new frame
//! comes (live view off, a snapshot shown).

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use eframe::egui::{self, ColorImage};
use flamingo_client::live::{DisplayLut, Frame};
use parking_lot::{Condvar, Mutex};

/// Longest side of the image handed to the UI (larger frames are subsampled).
pub const MAX_DISPLAY: u32 = 1024;
/// Bins of the histogram shown.
pub const HIST_BINS: usize = 256;
/// Saturated pixels at each end of the window "auto" picks (percent), as
/// ImageJ's Auto does.
pub const AUTO_SATURATED: f64 = 0.35;

/// How pixel values map to grey levels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Contrast {
    /// The frame's own display range (`scale_min..scale_max` of its
    /// header; the darkest to brightest pixel without one).
    Frame,
    /// Follows every frame: the darkest to brightest pixel, less
    /// `saturated` percent of the pixels at each end.
    Auto {
        /// Percent of pixels saturated at each end (0: min to max).
        saturated: f64,
    },
    /// A window the user set.
    Manual {
        /// Shown black at or below.
        min: u16,
        /// Shown white at or above.
        max: u16,
    },
}

/// Where the frame on screen came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Live view.
    Live,
    /// A snapshot (its number in this session).
    Snapshot(u32),
    /// A plane of a stack the viewer is acquiring.
    StackPlane(u32),
}

/// A frame's pixel statistics.
#[derive(Clone, Debug, Default)]
pub struct Histogram {
    /// Counts in [`HIST_BINS`] bins spanning `min..=max`.
    pub bins: Vec<u32>,
    /// Darkest pixel.
    pub min: u16,
    /// Brightest pixel.
    pub max: u16,
    /// Mean pixel value.
    pub mean: f64,
    /// The window "auto" picks ([`AUTO_SATURATED`] % saturated at each end).
    pub auto: (u16, u16),
}

/// A frame ready to draw.
pub struct DisplayFrame {
    /// The 8-bit image (subsampled if larger than [`MAX_DISPLAY`]).
    pub image: ColorImage,
    /// The frame itself (pixel values under the cursor, saving).
    pub frame: Frame,
    /// Where it came from.
    pub source: Source,
    /// Its histogram.
    pub histogram: Histogram,
    /// The window used: `min` black, `max` white.
    pub window: (u16, u16),
    /// Time the conversion took.
    pub took: Duration,
}

struct Input {
    frame: Option<(Frame, Source)>,
    contrast: Contrast,
    dirty: bool,
    stop: bool,
}

struct Shared {
    input: Mutex<Input>,
    wake: Condvar,
}

/// The handle the live worker and the UI use to hand frames over.
#[derive(Clone)]
pub struct DisplayInput(Arc<Shared>);

impl DisplayInput {
    /// Shows `frame` next (replacing one not converted yet).
    pub fn show(&self, frame: Frame, source: Source) {
        let mut i = self.0.input.lock();
        i.frame = Some((frame, source));
        i.dirty = true;
        self.0.wake.notify_one();
    }
}

/// The conversion thread.
pub struct Display {
    input: DisplayInput,
    /// Converted frames (capacity 1, newest wins).
    pub frames: Receiver<DisplayFrame>,
    handle: Option<JoinHandle<()>>,
}

impl Display {
    /// Starts the thread; `wake` is called for every converted frame.
    pub fn start(wake: impl Fn() + Send + 'static) -> Display {
        let shared = Arc::new(Shared {
            input: Mutex::new(Input {
                frame: None,
                contrast: Contrast::Frame,
                dirty: false,
                stop: false,
            }),
            wake: Condvar::new(),
        });
        let (tx, rx) = crossbeam_channel::bounded(1);
        let s = shared.clone();
        let rx2 = rx.clone();
        let handle = std::thread::Builder::new()
            .name("viewer-display".into())
            .spawn(move || convert_loop(&s, &tx, &rx2, &wake))
            .ok();
        Display {
            input: DisplayInput(shared),
            frames: rx,
            handle,
        }
    }

    /// A handle for other threads.
    pub fn input(&self) -> DisplayInput {
        self.input.clone()
    }

    /// Sets the contrast; the frame on screen is converted again.
    pub fn set_contrast(&self, c: Contrast) {
        let mut i = self.input.0.input.lock();
        if i.contrast != c {
            i.contrast = c;
            if i.frame.is_some() {
                i.dirty = true;
                self.input.0.wake.notify_one();
            }
        }
    }

    /// The contrast in use.
    pub fn contrast(&self) -> Contrast {
        self.input.0.input.lock().contrast
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        self.input.0.input.lock().stop = true;
        self.input.0.wake.notify_one();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn convert_loop(
    s: &Shared,
    tx: &Sender<DisplayFrame>,
    rx: &Receiver<DisplayFrame>,
    wake: &dyn Fn(),
) {
    let mut lut: Option<DisplayLut> = None;
    let mut gray = Vec::new();
    loop {
        let (frame, source, contrast) = {
            let mut i = s.input.lock();
            while !i.dirty && !i.stop {
                s.wake.wait(&mut i);
            }
            if i.stop {
                return;
            }
            i.dirty = false;
            let Some((f, src)) = i.frame.clone() else {
                continue;
            };
            (f, src, i.contrast)
        };
        let d = convert(&frame, source, contrast, &mut lut, &mut gray);
        // Newest wins: an undrawn older frame is replaced.
        let _ = rx.try_recv();
        let _ = tx.try_send(d);
        wake();
    }
}

/// Converts one frame: histogram, window, 8-bit image. `lut` is reused
/// while the window stays the same.
pub fn convert(
    frame: &Frame,
    source: Source,
    contrast: Contrast,
    lut: &mut Option<DisplayLut>,
    gray: &mut Vec<u8>,
) -> DisplayFrame {
    let t0 = Instant::now();
    let counts = full_counts(frame);
    let total = frame.pixel_count() as u64;
    let histogram = histogram_from_counts(&counts, total);
    let window = match contrast {
        Contrast::Frame => frame.display_window(),
        Contrast::Auto { saturated } => window_from_counts(&counts, total, saturated),
        Contrast::Manual { min, max } => (min, max),
    };
    if lut.as_ref().is_none_or(|l| l.window() != window) {
        *lut = Some(DisplayLut::new(window.0, window.1));
    }
    let l = lut.as_ref().expect("set above");
    frame.to_display_8bit_with(l, gray);
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let step = (frame.width().max(frame.height()).div_ceil(MAX_DISPLAY)).max(1) as usize;
    let image = if step == 1 {
        ColorImage::from_gray([w, h], gray)
    } else {
        let (dw, dh) = (w.div_ceil(step), h.div_ceil(step));
        let mut out = Vec::with_capacity(dw * dh);
        for y in (0..h).step_by(step) {
            out.extend(gray[y * w..(y + 1) * w].iter().step_by(step).copied());
        }
        ColorImage::from_gray([dw, dh], &out)
    };
    DisplayFrame {
        image,
        frame: frame.clone(),
        source,
        histogram,
        window,
        took: t0.elapsed(),
    }
}

/// Counts of every pixel value.
fn full_counts(frame: &Frame) -> Vec<u32> {
    let mut counts = vec![0u32; 1 << 16];
    for p in frame.as_bytes().chunks_exact(2) {
        let v = u16::from_le_bytes([p[0], p[1]]);
        counts[usize::from(v)] = counts[usize::from(v)].saturating_add(1);
    }
    counts
}

/// The window with `saturated` percent of the pixels below it and as many
/// above it (0: darkest to brightest). Never empty unless the frame is flat.
fn window_from_counts(counts: &[u32], total: u64, saturated: f64) -> (u16, u16) {
    let sat = saturated.clamp(0.0, 49.0) / 100.0;
    let cut = (total as f64 * sat).floor() as u64;
    let mut seen = 0u64;
    let mut lo = 0u16;
    for (v, &c) in counts.iter().enumerate() {
        seen += u64::from(c);
        if c > 0 && seen > cut {
            lo = v as u16;
            break;
        }
    }
    seen = 0;
    let mut hi = lo;
    for (v, &c) in counts.iter().enumerate().rev() {
        seen += u64::from(c);
        if c > 0 && seen > cut {
            hi = v as u16;
            break;
        }
    }
    if hi <= lo {
        hi = lo.saturating_add(1);
        if hi == lo {
            return (lo - 1, lo);
        }
    }
    (lo, hi)
}

/// The automatic window of a frame (see [`Contrast::Auto`]).
#[cfg(test)]
pub fn auto_window(frame: &Frame, saturated: f64) -> (u16, u16) {
    let counts = full_counts(frame);
    window_from_counts(&counts, frame.pixel_count() as u64, saturated)
}

/// The histogram in [`HIST_BINS`] bins from the darkest to the brightest
/// pixel, from the counts of every value.
fn histogram_from_counts(counts: &[u32], total: u64) -> Histogram {
    let min = counts.iter().position(|&c| c > 0).unwrap_or(0) as u16;
    let max = counts.iter().rposition(|&c| c > 0).unwrap_or(0) as u16;
    let span = u64::from(max - min).max(1);
    let mut bins = vec![0u32; HIST_BINS];
    let mut sum = 0f64;
    for v in min..=max {
        let c = counts[usize::from(v)];
        if c == 0 {
            continue;
        }
        sum += f64::from(c) * f64::from(v);
        // The darkest pixel in the first bin, the brightest in the last.
        let b = (u64::from(v - min) * (HIST_BINS as u64 - 1) / span) as usize;
        bins[b.min(HIST_BINS - 1)] = bins[b.min(HIST_BINS - 1)].saturating_add(c);
    }
    Histogram {
        bins,
        min,
        max,
        mean: if total > 0 { sum / total as f64 } else { 0.0 },
        auto: window_from_counts(counts, total, AUTO_SATURATED),
    }
}

/// Wakes the UI from any thread.
pub fn waker(ctx: &egui::Context) -> impl Fn() + Send + 'static {
    let ctx = ctx.clone();
    move || ctx.request_repaint()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flamingo_client::codec::LiveHeader;

    fn frame(w: u32, h: u32, range: (u32, u32), px: impl Fn(u32, u32) -> u16) -> Frame {
        let header = LiveHeader {
            width: w,
            height: h,
            image_size: w * h * 2,
            scale_min: range.0,
            scale_max: range.1,
            ..LiveHeader::default()
        };
        let mut bytes = Vec::with_capacity((w * h * 2) as usize);
        for y in 0..h {
            for x in 0..w {
                bytes.extend_from_slice(&px(x, y).to_le_bytes());
            }
        }
        Frame::from_header_and_bytes(header, bytes).unwrap()
    }

    fn grey(d: &DisplayFrame) -> Vec<u8> {
        d.image.pixels.iter().map(|c| c.r()).collect()
    }

    #[test]
    fn frame_contrast_uses_the_header_range_and_clamps() {
        // 1000..=2000 is the display range: below is black, above white.
        let f = frame(4, 1, (1000, 2000), |x, _| {
            [500, 1000, 1500, 3000][x as usize]
        });
        let d = convert(
            &f,
            Source::Live,
            Contrast::Frame,
            &mut None,
            &mut Vec::new(),
        );
        assert_eq!(grey(&d), vec![0, 0, 128, 255]);
        assert_eq!(d.window, (1000, 2000));
    }

    #[test]
    fn auto_without_saturation_stretches_min_to_max() {
        let f = frame(3, 1, (0, 65535), |x, _| [100, 150, 200][x as usize]);
        let c = Contrast::Auto { saturated: 0.0 };
        let d = convert(&f, Source::Live, c, &mut None, &mut Vec::new());
        assert_eq!(grey(&d), vec![0, 128, 255]);
        assert_eq!(d.window, (100, 200));
    }

    #[test]
    fn auto_saturates_the_given_share_of_pixels_at_each_end() {
        // Values 0..1000, one pixel each: 1 % saturated cuts 10 at each end.
        let f = frame(1000, 1, (0, 0), |x, _| x as u16);
        assert_eq!(auto_window(&f, 1.0), (10, 989));
        assert_eq!(auto_window(&f, 0.0), (0, 999));
        // A flat frame still gives a window one level wide.
        let flat = frame(4, 4, (0, 0), |_, _| 7);
        assert_eq!(auto_window(&flat, 1.0), (7, 8));
    }

    #[test]
    fn manual_contrast_and_the_histogram() {
        let f = frame(4, 1, (0, 0), |x, _| [0, 10, 20, 30][x as usize]);
        let c = Contrast::Manual { min: 10, max: 20 };
        let d = convert(&f, Source::Snapshot(1), c, &mut None, &mut Vec::new());
        assert_eq!(grey(&d), vec![0, 0, 255, 255]);
        let h = &d.histogram;
        assert_eq!((h.min, h.max), (0, 30));
        assert_eq!(h.bins.iter().sum::<u32>(), 4);
        assert_eq!(h.bins[0], 1);
        assert_eq!(h.bins[HIST_BINS - 1], 1);
        assert!((h.mean - 15.0).abs() < 1e-9);
    }

    #[test]
    fn large_frames_are_subsampled_for_display() {
        let f = frame(2048, 1030, (0, 65535), |x, y| (x + y) as u16);
        let d = convert(
            &f,
            Source::Live,
            Contrast::Frame,
            &mut None,
            &mut Vec::new(),
        );
        assert_eq!(d.image.size, [1024, 515]);
        assert_eq!((d.frame.width(), d.frame.height()), (2048, 1030));
    }

    #[test]
    fn the_thread_converts_again_when_the_contrast_changes() {
        let d = Display::start(|| {});
        let f = frame(2, 1, (0, 0), |x, _| [100, 200][x as usize]);
        d.input().show(f, Source::Live);
        let first = d.frames.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(first.window, (100, 200));
        d.set_contrast(Contrast::Manual { min: 0, max: 400 });
        let second = d.frames.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(second.window, (0, 400));
        assert_eq!(grey(&second), vec![64, 128]);
    }
}
