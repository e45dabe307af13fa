//! The live view's worker thread: opens the live port and starts live view
//! (both blocking), takes frames as they arrive and hands the newest to the
//! display thread. It also runs the viewer's own acquisitions, which need
//! the frame stream to themselves: a snapshot, and a Z series saved as one
//! TIFF stack. Live view is paused for them (a live frame would otherwise
//! be taken for the snapshot) and stays off after, so the image acquired
//! stays on screen.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use eframe::egui;
use flamingo_client::devices::SoftLimits;
use flamingo_client::live::{Frame, LiveStats, LiveStream, TiffMetadata, TiffStackWriter};
use flamingo_client::{Axis, Client, ConnectionState};
use parking_lot::Mutex;

use crate::display::{DisplayInput, Source};

/// A live stream that delivered nothing for this long while live view is
/// on is re-opened (after a reconnect of the command link, for example).
const STALE: Duration = Duration::from_secs(3);
/// After live view is stopped for an acquisition, frames still on their
/// way are drained until none came for this long...
const QUIET: Duration = Duration::from_millis(150);
/// ...or for this long at most.
const DRAIN_MAX: Duration = Duration::from_secs(1);

/// An acquisition for the worker.
#[derive(Clone, Debug)]
pub enum Acquire {
    /// One image (`CAMERA_SNAPSHOT_GET`).
    Snapshot,
    /// A Z series from the current Z upwards, one snapshot per plane, saved
    /// as one TIFF stack; the stage returns to the first plane after.
    Stack {
        /// Planes.
        planes: u32,
        /// Their spacing in µm.
        spacing_um: f64,
        /// The TIFF file.
        path: PathBuf,
        /// Pixel size (and the plane spacing is added).
        meta: TiffMetadata,
        /// Checked for every plane before the stage moves.
        limits: SoftLimits,
    },
}

/// What an acquisition gave.
#[derive(Debug)]
pub enum Acquired {
    /// A snapshot, numbered in this session.
    Snapshot(Result<(u32, Frame), String>),
    /// A stack, saved (or why not).
    Stack(Result<StackDone, String>),
}

/// A stack written.
#[derive(Clone, Debug)]
pub struct StackDone {
    /// The file.
    pub path: PathBuf,
    /// Planes written.
    pub planes: u32,
    /// Z of the first and last plane (mm).
    pub z: (f64, f64),
    /// True if stopped before the last plane (the planes taken are saved).
    pub stopped: bool,
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
    /// Frames handed to the display.
    pub frames_converted: u64,
    /// Frames received over every stream opened (`stats` is the current one's).
    pub frames_total: u64,
    /// Frames dropped over every stream opened.
    pub dropped_total: u64,
    /// An acquisition in progress, in words.
    pub acquiring: Option<String>,
    /// A stack's progress `(planes done, planes)`.
    pub stack: Option<(u32, u32)>,
}

/// The handle the UI holds.
pub struct LiveWorker {
    want: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    cancel: Arc<AtomicBool>,
    cmds: Sender<Acquire>,
    /// Outcomes of acquisitions.
    pub results: Receiver<Acquired>,
    /// Status, shared with the worker.
    pub status: Arc<Mutex<LiveStatus>>,
    handle: Option<JoinHandle<()>>,
}

impl LiveWorker {
    /// Starts the worker; live view starts at once if `on`.
    pub fn start(
        client: Client,
        display: DisplayInput,
        ctx: egui::Context,
        on: bool,
    ) -> std::io::Result<LiveWorker> {
        let want = Arc::new(AtomicBool::new(on));
        let stop = Arc::new(AtomicBool::new(false));
        let cancel = Arc::new(AtomicBool::new(false));
        let status = Arc::new(Mutex::new(LiveStatus::default()));
        let (cmds, cmd_rx) = crossbeam_channel::bounded(4);
        let (res_tx, results) = crossbeam_channel::unbounded();
        let w = Worker {
            client,
            ctx,
            want: want.clone(),
            stop: stop.clone(),
            cancel: cancel.clone(),
            status: status.clone(),
            display,
            cmds: cmd_rx,
            results: res_tx,
            snapshots: 0,
        };
        let handle = std::thread::Builder::new()
            .name("viewer-live".into())
            .spawn(move || w.run())?;
        Ok(LiveWorker {
            want,
            stop,
            cancel,
            cmds,
            results,
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

    /// True while an acquisition is queued or running.
    pub fn is_acquiring(&self) -> bool {
        !self.cmds.is_empty() || self.status.lock().acquiring.is_some()
    }

    /// Queues an acquisition (live view is turned off for it); false if
    /// one is already queued or running.
    pub fn acquire(&self, a: Acquire) -> bool {
        if self.is_acquiring() {
            return false;
        }
        self.set_on(false);
        self.cancel.store(false, Ordering::SeqCst);
        {
            let mut st = self.status.lock();
            st.acquiring = Some(match &a {
                Acquire::Snapshot => "snapshot".into(),
                Acquire::Stack { planes, .. } => format!("stack of {planes} planes"),
            });
            st.stack = None;
        }
        self.cmds.try_send(a).is_ok()
    }

    /// Stops a stack after the plane being taken.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    /// Asks the worker to end; returns its thread handle (to join off the
    /// UI thread).
    pub fn shut_down(mut self) -> Option<JoinHandle<()>> {
        self.stop.store(true, Ordering::SeqCst);
        self.cancel.store(true, Ordering::SeqCst);
        self.handle.take()
    }
}

impl Drop for LiveWorker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cancel.store(true, Ordering::SeqCst);
    }
}

struct Worker {
    client: Client,
    ctx: egui::Context,
    want: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    cancel: Arc<AtomicBool>,
    status: Arc<Mutex<LiveStatus>>,
    display: DisplayInput,
    cmds: Receiver<Acquire>,
    results: Sender<Acquired>,
    snapshots: u32,
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

    fn run(mut self) {
        let mut stream: Option<Arc<LiveStream>> = None;
        // Counters of the streams closed so far (a re-opened live port
        // counts from zero again).
        let mut base = LiveStats::default();
        // LIVE_VIEW_START acknowledged, and no stop since.
        let mut started = false;
        let mut last_frame = Instant::now();
        // (time, frames received by then) over the last two seconds: the
        // frame rate counts every frame received, also those skipped here.
        let mut arrivals: std::collections::VecDeque<(Instant, u64)> = Default::default();
        // An acquisition received while waiting with live view off.
        let mut next: Option<Acquire> = None;
        while !self.stop.load(Ordering::SeqCst) {
            if let Some(cmd) = next.take().or_else(|| self.cmds.try_recv().ok()) {
                if started {
                    self.pause(stream.as_deref());
                    started = false;
                }
                self.set_state("acquiring");
                let r = self.acquire(cmd);
                self.status.lock().acquiring = None;
                let _ = self.results.send(r);
                self.ctx.request_repaint();
                last_frame = Instant::now();
                continue;
            }
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
                // An acquisition opened the live port: the instrument may
                // serve only one live client, so it is not kept idle.
                if self.client.live_if_open().is_some() {
                    self.client.close_live();
                }
                // Wakes for an acquisition at once, else looks again soon.
                next = self.cmds.recv_timeout(Duration::from_millis(50)).ok();
                continue;
            }
            let stale = stream
                .as_ref()
                .is_none_or(|s| s.is_finished() || last_frame.elapsed() > STALE);
            if stale || !started {
                if self.client.state() != ConnectionState::Connected {
                    self.set_state("waiting for the connection");
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                self.set_state("starting");
                // Opens the live port if needed and sends LIVE_VIEW_START.
                match self.client.camera().live_start() {
                    Ok(s) => {
                        // The same stream again (live view was paused):
                        // its counters go on.
                        if !stream.as_ref().is_some_and(|o| Arc::ptr_eq(o, &s)) {
                            retire(&mut stream, &mut base);
                            stream = Some(s);
                        }
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
            // Only the newest frame is worth showing.
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
            {
                let mut st = self.status.lock();
                st.stats = stats;
                st.frames_total = base.frames + stats.frames;
                st.dropped_total = base.dropped + stats.dropped;
                st.fps = fps;
                st.frames_converted += 1;
                st.state = "on".into();
            }
            self.display.show(frame, Source::Live);
        }
        if started {
            let _ = self.client.camera().live_stop();
        }
    }

    /// Stops live view for an acquisition (the live socket stays open) and
    /// drains the frames still on their way.
    fn pause(&self, stream: Option<&LiveStream>) {
        self.set_state("pausing");
        let r = self
            .client
            .camera()
            .submit_live_stop()
            .and_then(flamingo_client::devices::Op::wait);
        if let Err(e) = r {
            self.status.lock().error = Some(format!("stopping live view: {e}"));
        }
        let Some(s) = stream else { return };
        let t0 = Instant::now();
        while t0.elapsed() < DRAIN_MAX {
            match s.frames().recv_timeout(QUIET) {
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }

    fn acquire(&mut self, cmd: Acquire) -> Acquired {
        match cmd {
            Acquire::Snapshot => {
                self.set_state("taking a snapshot");
                let r = self.client.camera().snapshot().map_err(|e| e.to_string());
                Acquired::Snapshot(r.map(|f| {
                    self.snapshots += 1;
                    self.display
                        .show(f.clone(), Source::Snapshot(self.snapshots));
                    (self.snapshots, f)
                }))
            }
            Acquire::Stack {
                planes,
                spacing_um,
                path,
                meta,
                limits,
            } => {
                self.set_state("acquiring a stack");
                Acquired::Stack(self.stack(planes, spacing_um, path, meta, limits))
            }
        }
    }

    fn stack(
        &self,
        planes: u32,
        spacing_um: f64,
        path: PathBuf,
        meta: TiffMetadata,
        limits: SoftLimits,
    ) -> Result<StackDone, String> {
        if planes == 0 || !(spacing_um.is_finite() && spacing_um > 0.0) {
            return Err(format!(
                "a stack needs at least one plane and a spacing above zero, not {planes} planes {spacing_um} µm apart"
            ));
        }
        let stage = self.client.stage().soft_limits(limits);
        let camera = self.client.camera();
        let z0 = stage.position(Axis::Z).map_err(|e| e.to_string())?;
        let z_at = |k: u32| z0 + f64::from(k) * spacing_um / 1000.0;
        let z_end = z_at(planes - 1);
        // Every plane within the soft limits before the stage moves at all.
        limits
            .check(Axis::Z, z_end)
            .map_err(|e| format!("the stack's last plane: {e}"))?;
        let mut w = TiffStackWriter::create(&path, meta.with_z_spacing_um(spacing_um))
            .map_err(|e| e.to_string())?;
        let mut done = 0;
        let mut stopped = false;
        let mut failure = None;
        for k in 0..planes {
            if self.cancel.load(Ordering::SeqCst) {
                stopped = true;
                break;
            }
            let r = stage
                .move_and_wait(Axis::Z, z_at(k))
                .map_err(|e| format!("moving to plane {}: {e}", k + 1))
                .and_then(|_| {
                    camera
                        .snapshot()
                        .map_err(|e| format!("the image of plane {}: {e}", k + 1))
                })
                .and_then(|f| {
                    w.push(&f).map_err(|e| e.to_string())?;
                    Ok(f)
                });
            match r {
                Ok(f) => {
                    done = k + 1;
                    self.display.show(f, Source::StackPlane(done));
                    self.status.lock().stack = Some((done, planes));
                    self.ctx.request_repaint();
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let back = stage.move_and_wait(Axis::Z, z0);
        if done > 0 {
            w.finish().map_err(|e| e.to_string())?;
        } else {
            drop(w);
            let _ = std::fs::remove_file(&path);
        }
        if let Some(e) = failure {
            return Err(if done > 0 {
                format!("{e} ({done} planes saved in {})", path.display())
            } else {
                e
            });
        }
        back.map_err(|e| format!("returning to the first plane: {e}"))?;
        if done == 0 {
            return Err("the stack was stopped before its first plane".into());
        }
        Ok(StackDone {
            path,
            planes: done,
            z: (z0, z_at(done - 1)),
            stopped,
        })
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
