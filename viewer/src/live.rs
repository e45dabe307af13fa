//! The live view's worker thread: opens the live port and starts live view
//! (both blocking), takes frames as they arrive, scales them for display
//! and hands the newest to the UI, waking it.
//!
//! Scaling a 2048 x 2048 frame to 8 bits takes milliseconds: that work stays
//! off the UI thread, which only uploads the finished image.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use eframe::egui::{self, ColorImage};
use flamingo_client::live::{Frame, LiveStats, LiveStream};
use flamingo_client::{Client, ConnectionState};
use parking_lot::Mutex;

/// Longest side of the image handed to the UI (larger frames are subsampled).
const MAX_DISPLAY: u32 = 1024;
/// A live stream that delivered nothing for this long while live view is
/// on is re-opened (after a reconnect of the command link, for example).
const STALE: Duration = Duration::from_secs(3);

/// How pixels map to grey levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scaling {
    /// The frame's own display range (`scale_min..scale_max` of its header).
    Frame,
    /// The frame's darkest to brightest pixel.
    Auto,
}

/// A frame ready to draw.
pub struct DisplayFrame {
    /// The 8-bit image (possibly subsampled).
    pub image: ColorImage,
    /// The frame's number and size, as received.
    pub frame_number: u32,
    /// Width in pixels (full frame).
    pub width: u32,
    /// Height in pixels (full frame).
    pub height: u32,
    /// The range mapped to black..white.
    pub range: (u32, u32),
}

/// What the worker reports besides frames.
#[derive(Clone, Debug, Default)]
pub struct LiveStatus {
    /// The stream's counters (frames, dropped...).
    pub stats: LiveStats,
    /// Frames per second received (smoothed).
    pub fps: f64,
    /// What the worker is doing, in words.
    pub state: String,
    /// The last error opening the live view, if any.
    pub error: Option<String>,
    /// Times the live view was (re)opened.
    pub opens: u64,
    /// Frames taken from the stream by the worker.
    pub frames_converted: u64,
    /// Frames received over every stream opened (`stats` is the current one's).
    pub frames_total: u64,
    /// Frames dropped over every stream opened.
    pub dropped_total: u64,
}

/// The handle the UI holds.
pub struct LiveWorker {
    want: Arc<AtomicBool>,
    scaling: Arc<Mutex<Scaling>>,
    stop: Arc<AtomicBool>,
    /// Newest frame ready to draw (capacity 1, latest wins).
    pub frames: Receiver<DisplayFrame>,
    /// Status, shared with the worker.
    pub status: Arc<Mutex<LiveStatus>>,
    handle: Option<JoinHandle<()>>,
}

impl LiveWorker {
    /// Starts the worker; live view starts at once if `on`.
    pub fn start(client: Client, ctx: egui::Context, on: bool) -> std::io::Result<LiveWorker> {
        let want = Arc::new(AtomicBool::new(on));
        let stop = Arc::new(AtomicBool::new(false));
        let scaling = Arc::new(Mutex::new(Scaling::Frame));
        let status = Arc::new(Mutex::new(LiveStatus::default()));
        let (tx, rx) = crossbeam_channel::bounded(1);
        let w = Worker {
            client,
            ctx,
            want: want.clone(),
            stop: stop.clone(),
            scaling: scaling.clone(),
            status: status.clone(),
            tx,
            rx: rx.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("viewer-live".into())
            .spawn(move || w.run())?;
        Ok(LiveWorker {
            want,
            scaling,
            stop,
            frames: rx,
            status,
            handle: Some(handle),
        })
    }

    /// Turns live view on or off.
    pub fn set_on(&self, on: bool) {
        self.want.store(on, Ordering::SeqCst);
    }

    /// True if live view is wanted on.
    pub fn is_on(&self) -> bool {
        self.want.load(Ordering::SeqCst)
    }

    /// Changes the display scaling (from the next frame).
    pub fn set_scaling(&self, s: Scaling) {
        *self.scaling.lock() = s;
    }

    /// The display scaling.
    pub fn scaling(&self) -> Scaling {
        *self.scaling.lock()
    }

    /// Asks the worker to end; returns its thread handle (to join off the
    /// UI thread).
    pub fn shut_down(mut self) -> Option<JoinHandle<()>> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.take()
    }
}

impl Drop for LiveWorker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

struct Worker {
    client: Client,
    ctx: egui::Context,
    want: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    scaling: Arc<Mutex<Scaling>>,
    status: Arc<Mutex<LiveStatus>>,
    tx: Sender<DisplayFrame>,
    /// To replace an undrawn frame with a newer one.
    rx: Receiver<DisplayFrame>,
}

impl Worker {
    fn set_state(&self, s: &str) {
        let mut st = self.status.lock();
        if st.state != s {
            st.state = s.to_string();
            drop(st);
            self.ctx.request_repaint();
        }
    }

    fn run(self) {
        let mut stream: Option<Arc<LiveStream>> = None;
        // Counters of the streams closed so far (a re-opened live port
        // counts from zero again).
        let mut base = LiveStats::default();
        let mut started = false;
        let mut last_frame = Instant::now();
        // (time, frames received by then) over the last two seconds: the
        // frame rate counts every frame received, also those skipped here.
        let mut arrivals: std::collections::VecDeque<(Instant, u64)> = Default::default();
        while !self.stop.load(Ordering::SeqCst) {
            let want = self.want.load(Ordering::SeqCst);
            if !want {
                if started {
                    self.set_state("stopping");
                    if let Err(e) = self.client.camera().live_stop() {
                        self.status.lock().error = Some(format!("stopping live view: {e}"));
                    }
                    started = false;
                }
                self.set_state("off");
                retire(&mut stream, &mut base);
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            let stale = stream
                .as_ref()
                .is_none_or(|s| s.is_finished() || last_frame.elapsed() > STALE);
            if stale {
                if self.client.state() != ConnectionState::Connected {
                    self.set_state("waiting for the connection");
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                self.set_state("starting");
                // Opens the live port if needed and sends LIVE_VIEW_START.
                match self.client.camera().live_start() {
                    Ok(s) => {
                        retire(&mut stream, &mut base);
                        stream = Some(s);
                        started = true;
                        last_frame = Instant::now();
                        let mut st = self.status.lock();
                        st.opens += 1;
                        st.error = None;
                    }
                    Err(e) => {
                        self.status.lock().error = Some(format!("starting live view: {e}"));
                        self.set_state("could not start");
                        self.ctx.request_repaint();
                        std::thread::sleep(Duration::from_millis(500));
                        continue;
                    }
                }
            }
            let Some(s) = stream.clone() else { continue };
            let frame = match s.frames().recv_timeout(Duration::from_millis(100)) {
                Ok(f) => f,
                Err(RecvTimeoutError::Timeout) => {
                    self.status.lock().stats = s.stats();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    retire(&mut stream, &mut base);
                    continue;
                }
            };
            // Only the newest frame is worth scaling.
            let mut frame = frame;
            while let Ok(newer) = s.frames().try_recv() {
                frame = newer;
            }
            let now = Instant::now();
            let stats = s.stats();
            arrivals.push_back((now, stats.frames));
            while arrivals
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(2))
            {
                arrivals.pop_front();
            }
            let fps = match arrivals.front() {
                Some(&(t, n)) if stats.frames > n => {
                    (stats.frames - n) as f64 / now.duration_since(t).as_secs_f64().max(1e-3)
                }
                _ => 0.0,
            };
            last_frame = now;
            let display = to_display(&frame, *self.scaling.lock());
            {
                let mut st = self.status.lock();
                st.stats = stats;
                st.frames_total = base.frames + stats.frames;
                st.dropped_total = base.dropped + stats.dropped;
                st.fps = fps;
                st.frames_converted += 1;
                st.state = "on".into();
            }
            // Latest wins: an undrawn older frame is replaced.
            let _ = self.rx.try_recv();
            let _ = self.tx.try_send(display);
            self.ctx.request_repaint();
        }
        if started {
            let _ = self.client.camera().live_stop();
        }
    }
}

/// Adds a stream's counters to `base` and forgets the stream.
fn retire(stream: &mut Option<Arc<LiveStream>>, base: &mut LiveStats) {
    if let Some(s) = stream.take() {
        let st = s.stats();
        base.frames += st.frames;
        base.dropped += st.dropped;
    }
}

/// Scales a frame to 8-bit grey for display, subsampling large frames.
pub fn to_display(frame: &Frame, scaling: Scaling) -> DisplayFrame {
    let (w, h) = (frame.width(), frame.height());
    let step = w.max(h).div_ceil(MAX_DISPLAY).max(1);
    let (dw, dh) = (w.div_ceil(step), h.div_ceil(step));
    let px = frame.pixels();
    let (lo, hi) = match scaling {
        Scaling::Frame if frame.scale_max() > frame.scale_min() => {
            (frame.scale_min(), frame.scale_max())
        }
        _ => {
            let (mut lo, mut hi) = (u16::MAX, 0u16);
            for &p in px.iter().step_by(step as usize) {
                lo = lo.min(p);
                hi = hi.max(p);
            }
            (u32::from(lo), u32::from(hi.max(lo.saturating_add(1))))
        }
    };
    let span = (hi - lo).max(1) as f32;
    let mut out = Vec::with_capacity((dw * dh) as usize);
    for y in (0..h).step_by(step as usize) {
        let row = &px[(y * w) as usize..((y + 1) * w) as usize];
        for &p in row.iter().step_by(step as usize) {
            let v = (u32::from(p).clamp(lo, hi) - lo) as f32 / span;
            out.push(egui::Color32::from_gray((v * 255.0 + 0.5) as u8));
        }
    }
    DisplayFrame {
        image: ColorImage::new([dw as usize, dh as usize], out),
        frame_number: frame.frame_number(),
        width: w,
        height: h,
        range: (lo, hi),
    }
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

    #[test]
    fn frame_scaling_uses_the_header_range_and_clamps() {
        // 1000..=2000 is the display range: below is black, above white.
        let f = frame(4, 1, (1000, 2000), |x, _| {
            [500, 1000, 1500, 3000][x as usize]
        });
        let d = to_display(&f, Scaling::Frame);
        let grey: Vec<u8> = d.image.pixels.iter().map(|c| c.r()).collect();
        assert_eq!(grey, vec![0, 0, 128, 255]);
        assert_eq!(d.range, (1000, 2000));
    }

    #[test]
    fn auto_scaling_stretches_min_to_max() {
        let f = frame(3, 1, (0, 65535), |x, _| [100, 150, 200][x as usize]);
        let d = to_display(&f, Scaling::Auto);
        let grey: Vec<u8> = d.image.pixels.iter().map(|c| c.r()).collect();
        assert_eq!(grey, vec![0, 128, 255]);
        assert_eq!(d.range, (100, 200));
    }

    #[test]
    fn large_frames_are_subsampled_for_display() {
        let f = frame(2048, 1030, (0, 65535), |x, y| (x + y) as u16);
        let d = to_display(&f, Scaling::Frame);
        assert_eq!(d.image.size, [1024, 515]);
        assert_eq!((d.width, d.height), (2048, 1030));
    }
}
