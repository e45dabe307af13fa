//! The live port: one client at a time, and the camera thread that sends it
//! snapshot, live-view and workflow frames.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver};

use super::pattern::render_frame;
use super::shared::Shared;
use crate::codec::LiveHeader;

/// Requests to the camera thread.
pub(crate) enum CameraCmd {
    /// Send one frame, not before `not_before`, waiting up to the configured
    /// grace for a live client. `snapshot`: it counts as a pending snapshot.
    Snapshot { not_before: Instant, snapshot: bool },
    /// Start (from `at`) or stop live view.
    Live { on: bool, at: Instant },
    /// A new live client; it replaces the previous one.
    Client(TcpStream),
}

/// Accepts live connections until the simulator stops. A new connection
/// closes the previous one.
pub(crate) fn accept_loop(sh: Arc<Shared>, listener: TcpListener) {
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) => {
                if sh.is_shutting_down() {
                    return;
                }
                log::warn!("sim: accept on the live port failed: {e}");
                if !sh.sleep(Duration::from_millis(20)) {
                    return;
                }
                continue;
            }
        };
        if sh.is_shutting_down() {
            return;
        }
        log::info!("sim: live image client connected from {peer}");
        let _ = stream.set_nodelay(true);
        if let Some(p) = &sh.replay {
            sh.count(|c| c.live_connections += 1);
            p.live_opened(&sh, stream);
            continue;
        }
        let Ok(clone) = stream.try_clone() else {
            continue;
        };
        {
            let mut slot = sh.live_stream.lock();
            if sh.is_shutting_down() {
                return;
            }
            if let Some(old) = slot.replace(clone) {
                log::debug!("sim: a new live client replaces the previous one");
                let _ = old.shutdown(Shutdown::Both);
            }
        }
        sh.count(|c| c.live_connections += 1);
        let _ = sh.camera.send(CameraCmd::Client(stream));
    }
}

struct PendingFrame {
    not_before: Instant,
    give_up: Instant,
    snapshot: bool,
}

struct Camera {
    sh: Arc<Shared>,
    client: Option<TcpStream>,
    streaming: bool,
    next_frame: Instant,
    period: Duration,
    pending: VecDeque<PendingFrame>,
    frame_number: u32,
    buf: Vec<u8>,
}

/// The camera thread.
pub(crate) fn run(sh: Arc<Shared>, ctrl: Receiver<CameraCmd>) {
    let fps = if sh.cfg.live_fps.is_finite() {
        sh.cfg.live_fps.clamp(0.1, 1000.0)
    } else {
        30.0
    };
    let mut cam = Camera {
        period: Duration::from_secs_f64(1.0 / fps),
        sh,
        client: None,
        streaming: false,
        next_frame: Instant::now(),
        pending: VecDeque::new(),
        frame_number: 0,
        buf: Vec::new(),
    };
    loop {
        let next = cam.step(Instant::now());
        let timer = match next {
            Some(t) => crossbeam_channel::at(t),
            None => crossbeam_channel::never(),
        };
        select! {
            recv(ctrl) -> m => match m {
                Ok(cmd) => cam.command(cmd),
                Err(_) => break,
            },
            recv(cam.sh.shutdown_rx) -> _ => break,
            recv(timer) -> _ => {}
        }
    }
    if let Some(c) = cam.client.take() {
        let _ = c.shutdown(Shutdown::Both);
    }
}

impl Camera {
    fn command(&mut self, cmd: CameraCmd) {
        match cmd {
            CameraCmd::Snapshot {
                not_before,
                snapshot,
            } => self.pending.push_back(PendingFrame {
                not_before,
                give_up: not_before + self.sh.cfg.live_connect_grace,
                snapshot,
            }),
            CameraCmd::Live { on, at } => {
                if on && !self.streaming {
                    self.next_frame = at;
                }
                self.streaming = on;
            }
            CameraCmd::Client(s) => {
                if let Some(old) = self.client.replace(s) {
                    let _ = old.shutdown(Shutdown::Both);
                }
            }
        }
    }

    /// Sends what is due at `now`; returns when to wake up next.
    fn step(&mut self, now: Instant) -> Option<Instant> {
        let work = self.pending.front().is_some_and(|p| p.not_before <= now)
            || (self.streaming && self.next_frame <= now);
        if work {
            self.drop_closed_client();
        }
        while let Some(p) = self.pending.front() {
            if p.not_before > now {
                break;
            }
            if self.client.is_some() {
                let p = self.pending.pop_front().expect("front");
                if self.send_frame() {
                    self.snapshot_done(p.snapshot);
                } else {
                    // The client went away: wait for the next one.
                    self.pending.push_front(p);
                }
            } else if p.give_up <= now {
                let p = self.pending.pop_front().expect("front");
                log::debug!("sim: no live client connected; frame dropped");
                self.sh.count(|c| c.frames_dropped += 1);
                self.snapshot_done(p.snapshot);
            } else {
                break;
            }
        }
        if self.streaming && self.next_frame <= now {
            if self.client.is_some() {
                self.send_frame();
            } else {
                self.sh.count(|c| c.frames_dropped += 1);
            }
            self.next_frame += self.period;
            let now = Instant::now();
            if self.next_frame < now {
                // Fell behind (slow client): do not try to catch up.
                self.next_frame = now + self.period;
            }
        }
        let pending = self.pending.front().map(|p| {
            if p.not_before > now || self.client.is_some() {
                p.not_before
            } else {
                p.give_up
            }
        });
        let stream = self.streaming.then_some(self.next_frame);
        match (pending, stream) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn snapshot_done(&self, snapshot: bool) {
        if snapshot {
            let mut inst = self.sh.inst.lock();
            inst.snapshots_pending = inst.snapshots_pending.saturating_sub(1);
        }
    }

    /// Forgets the live client if it has closed its side (a client that
    /// reconnects closes the old socket before the new one is accepted), so
    /// a snapshot waits for the new client instead of going to the old one.
    fn drop_closed_client(&mut self) {
        let Some(c) = self.client.as_ref() else {
            return;
        };
        let closed = match c.set_nonblocking(true) {
            Ok(()) => match c.peek(&mut [0u8; 1]) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => e.kind() != io::ErrorKind::WouldBlock,
            },
            Err(_) => false,
        };
        let _ = c.set_nonblocking(false);
        if closed {
            log::info!("sim: the live image client disconnected");
            if let Some(c) = self.client.take() {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }

    /// Writes one frame to the live client; false if it could not.
    fn send_frame(&mut self) -> bool {
        let Some(client) = self.client.as_mut() else {
            return false;
        };
        let sh = &self.sh;
        let (w, h) = (sh.cfg.image_width, sh.cfg.image_height);
        let frame = self.frame_number;
        self.frame_number = self.frame_number.wrapping_add(1);
        let mut header = LiveHeader {
            image_size: w * h * 2,
            width: w,
            height: h,
            scale_min: 0,
            scale_max: 65535,
            timestamp_ms: sh.millis(),
            frame_number: frame,
            exposure_us: sh.inst.lock().exposure_us,
            reserved: [0, 0],
        };
        let bad = std::mem::take(&mut sh.faults.lock().bad_live_header);
        // Counted before writing, so a client that has the frame finds it counted.
        sh.count(|c| c.frames_sent += 1);
        let t = Instant::now();
        let result = if bad {
            sh.count_fault(|c| c.bad_live_headers += 1);
            header.image_size = u32::MAX;
            log::debug!("sim: fault: bad live header on frame {frame}");
            client
                .write_all(&header.to_bytes())
                .and_then(|()| client.write_all(&[0xA5; 64]))
        } else {
            render_frame(w, h, frame, &mut self.buf);
            client
                .write_all(&header.to_bytes())
                .and_then(|()| client.write_all(&self.buf))
        };
        let blocked = t.elapsed();
        match result {
            Ok(()) => {
                sh.count(|c| c.max_live_write_block = c.max_live_write_block.max(blocked));
                true
            }
            Err(e) => {
                log::debug!("sim: live client write failed: {e}; frame dropped");
                sh.count(|c| {
                    c.frames_sent -= 1;
                    c.frames_dropped += 1;
                });
                if let Some(c) = self.client.take() {
                    let _ = c.shutdown(Shutdown::Both);
                }
                false
            }
        }
    }
}
