//! An in-process loopback simulator of the Flamingo microscope.
//!
//! [`Simulator::start`] binds the command port and the live port (command
//! port + 1) on 127.0.0.1 and serves the wire protocol on both, with the
//! behaviour recorded in the protocol facts: replies only to requests with
//! `TRIGGER_CALL_BACK` (except the codes in
//! [`SimConfig::answer_without_flag`]), echoing the command code, with the
//! answer in the fields the real instrument uses. Dropping the [`Simulator`]
//! (or [`Simulator::stop`]) stops every thread and closes every socket.
//!
//! ```
//! use std::net::TcpStream;
//! use std::io::Write;
//! use flamingo_client::codec::{CommandCode, Flags, FrameReader, Message};
//! use flamingo_client::sim::{SimConfig, Simulator};
//!
//! let sim = Simulator::start(SimConfig::default().image_size(64, 48))?;
//! let mut s = TcpStream::connect(sim.addr())?;
//! let req = Message::new(CommandCode::CAMERA_IMAGE_SIZE_GET).with_flags(Flags::TRIGGER_CALL_BACK);
//! s.write_all(&req.to_bytes())?;
//! let reply = FrameReader::new(1 << 20).read_message(&mut s).unwrap();
//! assert_eq!(reply.code, CommandCode::CAMERA_IMAGE_SIZE_GET);
//! assert_eq!((reply.int32_data0, reply.int32_data1), (64, 48));
//! assert_eq!(sim.received().len(), 1);
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # The model
//!
//! Replies echo the request (code, flags, integer fields) with status 0
//! unless stated. Status conventions: 0 ([`STATUS_OK`](crate::codec::STATUS_OK)),
//! 1 ([`STATUS_BUSY`](crate::codec::STATUS_BUSY)) when a workflow runs,
//! 2 for a refusal (bad argument, out-of-limit move).
//!
//! | Code | Behaviour |
//! |---|---|
//! | `SYSTEM_STATE_GET` 0xA007 | `int32Data0` = 0 idle, 1 busy (workflow running or snapshot pending), 2 error ([`Faults::error_state`]). Not answered without the flag (configurable). |
//! | `SYSTEM_STATE_IDLE` 0xA002 | From a client: clears the error condition (aborts nothing), no direct reply, broadcasts an unsolicited 0xA002 with status 1. |
//! | `COMMON_SCOPE_SETTINGS_LOAD` 0x1009 | Ack with the settings text as additional data ([`SimConfig::settings_text`], default `fixtures/ScopeSettings.txt`); answered without the flag by default. |
//! | `COMMON_SCOPE_SETTINGS_SAVE` 0x1008 | Stores the additional data as the new settings text; status 2 if empty. |
//! | `STORAGE_PATH` 0x1013 | With `int32Data0` = 0: two mount points, one per line, as additional data. |
//! | `LASER_LEVEL_SET` 0x2001 | Laser 1..=4 in `int32Data0`, percent as text (`"11.49"`). No reply by default ([`SimConfig::laser_set_acks`]). |
//! | `LASER_LEVEL_GET` 0x2002 | Buffer = level as `"%.2f"`; unknown laser: `"getLevel error"`, status 2. |
//! | 0x2003–0x2007 | Laser enable/disable, preview enable/disable (`int32Data0` = laser, status 2 if not 1..=4), all off: ack. |
//! | `CAMERA_IMAGE_SIZE_GET` 0x3027 | `int32Data0` = width, `int32Data1` = height. |
//! | `CAMERA_PIXEL_FIELD_OF_VIEW_GET` 0x3037 | `doubleData` = mm per pixel ([`SimConfig::pixel_fov`]: the camera pixel over the objective's magnification, 1.048 µm by default). |
//! | `CAMERA_EXPOSURE_GET` 0x300A / `_SET` 0x3001 | `int32Data0` = µs (set: status 2 unless > 0). |
//! | `CAMERA_SNAPSHOT_GET` 0x3006 | Ack, then one frame on the live port (busy while pending). |
//! | `CAMERA_LIVE_VIEW_START` 0x3007 / `_STOP` 0x3008 | Ack; frames at [`SimConfig::live_fps`] while on. |
//! | `CAMERA_WORK_FLOW_START` 0x3004 | The file comes as additional data and is kept ([`Simulator::workflows`], every start is recorded). Ack (status 0; 1 if one runs; 2 if the file is empty; [`SimConfig::ack_workflow_start`]), then plays: `UI_SET_GAUGE_SIZE` (`int32Data0` = planes), one `LASER_LEVEL_GET` per enabled laser of the file (`int32Data0` = laser, level text), per plane `UI_SET_GAUGE_VALUE` (current, total), `CAMERA_STACK_COMPLETE` (acquired, expected, errors = 0, `doubleData` = µs), `UI_IMAGES_SAVED_TO_STORAGE` (`int32Data0` = images), `SYSTEM_STATE_IDLE` (status 1). Planes: "Number of planes = N" (1 if absent), one per [`SimConfig::plane_interval`], capped by [`SimConfig::max_planes`]. With "Work flow live view enabled = true", one live frame per plane. |
//! | `CAMERA_WORK_FLOW_STOP` 0x3005 | Ack (even without the flag, configurable); the run ends early with the partial counts. |
//! | 0x3011 from a client | `CAMERA_ROI_TOP_SET`: stored, not acked by default ([`SimConfig::ack_roi_top_set`]), because the ack is indistinguishable from `CAMERA_STACK_COMPLETE`. |
//! | 0x300F / 0x3010 / 0x3012 | ROI left set / left get / top get (`int32Data0`). |
//! | `LED_SET` 0x4001 | Colour 0..=3 in `int32Data0`, level 32000..=65534 in `int32Data1` (else status 2); acked by default ([`SimConfig::led_set_acks`]). 0x4002/0x4003 preview: ack. |
//! | `FILTER_POSITION_SET` 0x5001 / `_GET` 0x5002 | Position 1..=8 in `int32Data0` (else status 2). |
//! | 0x7004–0x7007 | Illumination left/right enable/disable: ack. |
//! | `STAGE_POSITION_GET` 0x6008 | Axis in `int32Data0` ([`AXIS_X`]..[`AXIS_R`]), position in `doubleData` (interpolated during a move), status 0; unknown axis: status 2. |
//! | `STAGE_POSITION_SET` 0x6004 / `_SLIDER` 0x6005 | Ack at once (status 0; 2 outside the soft limits or NaN; 1 while a workflow runs), then the axis moves at its velocity and an unsolicited `STAGE_MOTION_STOPPED` (0x6010: `int32Data0` = axis, status 1, `doubleData` = final position) ends it, also for a zero-length move. A new move of a moving axis replaces the old one (one 0x6010, at the end). |
//! | `STAGE_VELOCITY_SET` 0x6006 | `int32Data0` = axis, `doubleData` = velocity (mm/s or °/s, > 0). |
//! | `STAGE_HALT` 0x6002 | Ack; every moving axis stops and sends 0x6010 with its position. |
//! | `STAGE_HOME` 0x6001 | Ack; every axis moves to its home position (four 0x6010). |
//! | `STAGE_MOTION_STOPPED` 0x6010 as a query | Status 1 if the axis is stopped, 0 if moving; `doubleData` = position. |
//! | Other catalogue codes | Plain ack, status 0. |
//! | Codes not in the catalogue | **Echo responder**: with the flag, the message comes back unchanged, with its additional data. Tests and benchmarks use it to carry per-request tags (e.g. in `int32Data2` or `doubleData`). |
//!
//! Unsolicited messages go to every connected command client. Any number of
//! command connections may be open at once. The live port serves one client:
//! a new live connection closes the previous one. Frames are a 40-byte
//! [`LiveHeader`](crate::codec::LiveHeader) (`image_size` = w·h·2,
//! `scale_max` 65535, `timestamp_ms` since start, `frame_number` counting
//! frames sent from 0, `exposure_us`) and pixels from [`pattern_pixel`].
//!
//! # Threads
//!
//! Per command connection one reader (blocking on its socket) and one writer
//! (fed by a channel; keeps delayed replies in a heap); one accept thread per
//! port; one stage thread; one camera thread; one thread per running
//! workflow or flood. Every wait is a blocking call on a socket or channel:
//! an idle simulator uses no CPU.

mod config;
mod conn;
mod faults;
mod handler;
mod live;
mod pattern;
mod record;
mod replay;
mod replay_engine;
mod shared;
mod stage;
mod state;
mod workflow;

use std::io;
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use parking_lot::Mutex;

pub use config::{SimConfig, DEFAULT_SETTINGS_TEXT};
pub use faults::Faults;
pub use pattern::{pattern_pixel, render_frame, verify_frame};
pub use record::{Received, SimCounters};
pub use replay::{ReplayConfig, ReplayPace, ReplayReport, Unanswerable};
pub use stage::{AXIS_R, AXIS_X, AXIS_Y, AXIS_Z};
pub use state::{STATE_BUSY, STATE_ERROR, STATE_IDLE};

use crate::codec::{CommandCode, Message};
use shared::Shared;

/// A running simulator. Dropping it stops it (see [`stop`](Simulator::stop)).
///
/// Every method takes `&self`; a `Simulator` can be shared between threads.
pub struct Simulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    live_addr: SocketAddr,
    control: Mutex<Control>,
}

struct Control {
    shutdown_tx: Option<Sender<()>>,
    accept: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("addr", &self.addr)
            .field("live_addr", &self.live_addr)
            .finish_non_exhaustive()
    }
}

impl Simulator {
    /// Binds both ports on 127.0.0.1 and starts serving.
    ///
    /// With `config.port == 0` a free pair of consecutive ports is found.
    /// Errors: the port (or the one above it) is in use, port 65535 (no room
    /// for the live port), an image size of 0 or above 4 GiB, or thread
    /// creation failing.
    pub fn start(config: SimConfig) -> io::Result<Simulator> {
        Simulator::launch(config, None)
    }

    /// A simulator that serves a recording instead of its model (see
    /// `replay.rs` for the rules): each request is answered with the
    /// recorded reply to the matching recorded request, recorded events and
    /// live frames follow at their recorded times (or at once with
    /// [`ReplayPace::Fast`]). The recording is read as the replay goes, in
    /// bounded memory. [`replay_report`](Simulator::replay_report) lists
    /// the requests the recording could not answer.
    ///
    /// ```
    /// use flamingo_client::record::{Proxy, ProxyConfig, RecordingReader};
    /// use flamingo_client::sim::{ReplayConfig, SimConfig, Simulator};
    /// use flamingo_client::Client;
    ///
    /// // Record one session with the simulator...
    /// let path = std::env::temp_dir().join(format!("doc-replay-{}.flrec", std::process::id()));
    /// {
    ///     let sim = Simulator::start(SimConfig::default().image_size(64, 48))?;
    ///     let proxy = Proxy::create(ProxyConfig::new("127.0.0.1:0".parse()?, sim.addr()), &path)?;
    ///     let client = Client::connect(&proxy.addr().to_string(), Default::default())?;
    ///     client.camera().image_size()?;
    ///     client.close();
    ///     proxy.stop()?;
    /// }
    /// // ...and replay it: the same question gets the recorded answer.
    /// let replay = Simulator::replay(RecordingReader::open(&path)?, ReplayConfig::default())?;
    /// let client = Client::connect(&replay.addr().to_string(), Default::default())?;
    /// let size = client.camera().image_size()?;
    /// assert_eq!((size.width, size.height), (64, 48));
    /// client.close();
    /// let report = replay.replay_report().unwrap();
    /// assert_eq!((report.answered, report.unanswerable_total), (1, 0));
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn replay<R: std::io::Read + Send + 'static>(
        recording: crate::record::RecordingReader<R>,
        config: ReplayConfig,
    ) -> io::Result<Simulator> {
        let (player, rx) = replay::Player::new();
        // The log of received messages stays small: a replay of hours
        // must not keep every request it was sent.
        let sim = Simulator::launch(
            SimConfig::default().port(config.port).record_limit(10_000),
            Some(player.clone()),
        )?;
        let sh = sim.shared.clone();
        sim.shared.spawn("replay", move || {
            replay::run(sh, player, rx, recording, config)
        })?;
        Ok(sim)
    }

    /// [`replay`](Simulator::replay) of a recording file.
    pub fn replay_file(
        path: impl AsRef<std::path::Path>,
        config: ReplayConfig,
    ) -> io::Result<Simulator> {
        let reader = crate::record::RecordingReader::open(path).map_err(replay::open_error)?;
        Simulator::replay(reader, config)
    }

    /// What the replay has done so far; `None` unless the simulator was
    /// built with [`replay`](Simulator::replay).
    pub fn replay_report(&self) -> Option<ReplayReport> {
        self.shared.replay.as_ref().map(|p| p.snapshot())
    }

    /// Waits until the whole recording has been played (false after
    /// `timeout`, or if the simulator does not replay).
    pub fn wait_replay_finished(&self, timeout: Duration) -> bool {
        self.shared
            .replay
            .as_ref()
            .is_some_and(|p| p.wait_finished(timeout))
    }

    fn launch(config: SimConfig, replay: Option<Arc<replay::Player>>) -> io::Result<Simulator> {
        let bytes = u64::from(config.image_width) * u64::from(config.image_height) * 2;
        if bytes == 0 || bytes > u64::from(u32::MAX) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "simulated image size {} x {} is not usable (it must be non-empty and below 4 GiB)",
                    config.image_width, config.image_height
                ),
            ));
        }
        let (cmd, live) = bind_pair(config.port)?;
        let addr = cmd.local_addr()?;
        let live_addr = live.local_addr()?;
        let (shutdown_tx, shutdown_rx) = crossbeam_channel::bounded(0);
        let (stage_tx, stage_rx) = crossbeam_channel::unbounded();
        let (camera_tx, camera_rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared::new(
            config,
            shutdown_rx,
            stage_tx,
            camera_tx,
            replay,
        ));
        let sim = Simulator {
            shared: shared.clone(),
            addr,
            live_addr,
            control: Mutex::new(Control {
                shutdown_tx: Some(shutdown_tx),
                accept: Vec::new(),
            }),
        };
        // From here on, an error drops `sim`, which stops what was started.
        let sh = shared.clone();
        shared.spawn("stage", move || stage::run(sh, stage_rx))?;
        let sh = shared.clone();
        shared.spawn("camera", move || live::run(sh, camera_rx))?;
        let spawn_accept = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(format!("flamingo-sim-{name}"))
                .spawn(f)
        };
        let sh = shared.clone();
        let h = spawn_accept("accept", Box::new(move || conn::accept_loop(sh, cmd)))?;
        sim.control.lock().accept.push(h);
        let sh = shared.clone();
        let h = spawn_accept("live-accept", Box::new(move || live::accept_loop(sh, live)))?;
        sim.control.lock().accept.push(h);
        sim.start_flood_if_set();
        log::info!("sim: listening on {addr} (live images on {live_addr})");
        Ok(sim)
    }

    /// The command port address (127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The live port address (command port + 1).
    pub fn live_addr(&self) -> SocketAddr {
        self.live_addr
    }

    /// The configuration the simulator was started with.
    pub fn config(&self) -> &SimConfig {
        &self.shared.cfg
    }

    /// Replaces the active faults. A `flood` in `faults` starts at once.
    pub fn set_faults(&self, faults: Faults) {
        *self.shared.faults.lock() = faults;
        self.start_flood_if_set();
    }

    /// Changes the active faults in place.
    ///
    /// ```
    /// # use flamingo_client::sim::{SimConfig, Simulator};
    /// # use flamingo_client::codec::CommandCode;
    /// # use std::time::Duration;
    /// let sim = Simulator::start(SimConfig::default())?;
    /// sim.update_faults(|f| {
    ///     f.delay.insert(CommandCode::STAGE_POSITION_GET, Duration::from_millis(50));
    /// });
    /// assert!(sim.faults().is_active());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn update_faults(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self.shared.faults.lock());
        self.start_flood_if_set();
    }

    /// The active faults (one-shot faults that fired are cleared).
    pub fn faults(&self) -> Faults {
        self.shared.faults.lock().clone()
    }

    /// The messages received so far on any command connection, in arrival
    /// order (the most recent [`SimConfig::record_limit`]).
    pub fn received(&self) -> Vec<Received> {
        let log = self.shared.received.lock();
        log.items.iter().map(|(r, _)| r.clone()).collect()
    }

    /// The codes of the messages in [`received`](Simulator::received).
    pub fn received_codes(&self) -> Vec<CommandCode> {
        let log = self.shared.received.lock();
        log.items.iter().map(|(r, _)| r.message.code).collect()
    }

    /// Forgets the received messages (long benchmarks).
    pub fn clear_received(&self) {
        self.shared.received.lock().items.clear();
    }

    /// Blocks until a received message satisfies `pred` and returns it, or
    /// returns `None` after `timeout`. Messages already received count; so
    /// do messages that arrive while waiting. Useful to synchronise on
    /// commands that get no reply. A message is returned only once the
    /// simulator has handled it (its state changes are visible). `pred` may
    /// be called more than once for a message.
    ///
    /// ```
    /// # use flamingo_client::sim::{SimConfig, Simulator};
    /// # use flamingo_client::codec::{CommandCode, Message};
    /// # use std::{io::Write, net::TcpStream, time::Duration};
    /// let sim = Simulator::start(SimConfig::default())?;
    /// let mut s = TcpStream::connect(sim.addr())?;
    /// let set = Message::new(CommandCode::LASER_LEVEL_SET).with_int32_data0(1).with_text("5.00").unwrap();
    /// s.write_all(&set.to_bytes())?;
    /// let got = sim.wait_for_received(Duration::from_secs(10), |r| r.message.code == CommandCode::LASER_LEVEL_SET);
    /// assert_eq!(got.unwrap().message.text().value, "5.00");
    /// assert_eq!(sim.laser_level(1), Some(5.0));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn wait_for_received(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&Received) -> bool,
    ) -> Option<Received> {
        let deadline = Instant::now().checked_add(timeout);
        let mut log = self.shared.received.lock();
        // Messages before `next` have been handled and did not match.
        let mut next = log.first_seq();
        loop {
            let first = log.first_seq();
            let skip = next.saturating_sub(first) as usize;
            let mut all_handled = true;
            for (i, (r, handled)) in log.items.iter().enumerate().skip(skip) {
                if !handled {
                    all_handled = false;
                    continue;
                }
                if pred(r) {
                    return Some(r.clone());
                }
                if all_handled {
                    next = first + i as u64 + 1;
                }
            }
            match deadline {
                Some(d) => {
                    if self.shared.received_cv.wait_until(&mut log, d).timed_out() {
                        return None;
                    }
                }
                None => self.shared.received_cv.wait(&mut log),
            }
        }
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> SimCounters {
        self.shared.counters.lock().clone()
    }

    /// Every workflow file received with `CAMERA_WORK_FLOW_START`, in order
    /// (also those refused because one was running).
    pub fn workflows(&self) -> Vec<Vec<u8>> {
        self.shared.inst.lock().workflows.clone()
    }

    /// The current settings text (replaced by `COMMON_SCOPE_SETTINGS_SAVE`).
    pub fn settings_text(&self) -> Vec<u8> {
        self.shared.inst.lock().settings.to_vec()
    }

    /// The current position of X, Y, Z (mm) and R (degrees), interpolated
    /// during moves.
    pub fn stage_positions(&self) -> [f64; 4] {
        let now = Instant::now();
        let s = self.shared.stage.lock();
        [0, 1, 2, 3].map(|i| s.axes[i].position_at(now))
    }

    /// True while any stage axis moves.
    pub fn stage_moving(&self) -> bool {
        self.shared.stage.lock().axes.iter().any(|a| a.is_moving())
    }

    /// What `SYSTEM_STATE_GET` would answer now ([`STATE_IDLE`],
    /// [`STATE_BUSY`] or [`STATE_ERROR`]).
    pub fn system_state(&self) -> i32 {
        let fault = self.shared.faults.lock().error_state;
        self.shared.inst.lock().state(fault)
    }

    /// The level of laser 1..=4 in percent.
    pub fn laser_level(&self, laser: i32) -> Option<f64> {
        state::laser_index(laser).map(|i| self.shared.inst.lock().laser_level[i])
    }

    /// True between `CAMERA_LIVE_VIEW_START` and `CAMERA_LIVE_VIEW_STOP`.
    pub fn live_view_on(&self) -> bool {
        self.shared.inst.lock().live_view
    }

    /// Command connections currently open.
    pub fn open_connections(&self) -> usize {
        self.shared.conns.lock().len()
    }

    /// Sends an unsolicited message to every connected command client;
    /// returns how many it was queued for.
    pub fn broadcast(&self, msg: Message) -> usize {
        self.shared.broadcast(msg)
    }

    /// Stops the simulator: closes every socket (clients read EOF) and joins
    /// every thread. Idempotent; also done by `Drop`. Takes a few
    /// milliseconds.
    pub fn stop(&self) {
        let mut ctl = self.control.lock();
        let Some(tx) = ctl.shutdown_tx.take() else {
            return;
        };
        let sh = &self.shared;
        sh.begin_shutdown();
        drop(tx);
        // Wake the accept threads with a connection each. The connect does
        // not wait: if the backlog is full, accept does not block anyway.
        let wake: Vec<_> = [self.addr, self.live_addr]
            .iter()
            .filter_map(|a| wake_connect(*a))
            .collect();
        for (_, c) in sh.conns.lock().drain() {
            let _ = c.stream.shutdown(Shutdown::Both);
        }
        if let Some(s) = sh.live_stream.lock().take() {
            let _ = s.shutdown(Shutdown::Both);
        }
        if let Some(p) = &sh.replay {
            p.shutdown();
        }
        for h in ctl.accept.drain(..) {
            let _ = h.join();
        }
        drop(wake);
        loop {
            let threads = std::mem::take(&mut *sh.threads.lock());
            if threads.is_empty() {
                break;
            }
            for h in threads {
                let _ = h.join();
            }
        }
        // Sockets accepted just before the stop flag was seen.
        for (_, c) in sh.conns.lock().drain() {
            let _ = c.stream.shutdown(Shutdown::Both);
        }
        log::info!("sim: stopped ({})", self.addr);
    }

    fn start_flood_if_set(&self) {
        let flood = self.shared.faults.lock().flood.take();
        let Some((code, count, per_second)) = flood else {
            return;
        };
        let sh = self.shared.clone();
        let started = self.shared.spawn("flood", move || {
            let t0 = Instant::now();
            for i in 1..=count {
                if per_second > 0 {
                    let at = t0 + Duration::from_secs_f64((i - 1) as f64 / f64::from(per_second));
                    if !sh.sleep_until(at) {
                        return;
                    }
                } else if sh.is_shutting_down() {
                    return;
                }
                let m = Message::new(code)
                    .with_status(1)
                    .with_int32_data0(i as i32)
                    .with_int32_data1(count as i32);
                let n = sh.broadcast(m) as u64;
                sh.count(|c| {
                    c.faults_injected += n;
                    c.flood_messages += n;
                });
            }
        });
        if let Err(e) = started {
            log::warn!("sim: cannot start the flood thread: {e}");
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts a non-blocking connect to `addr` (to wake a blocked accept). The
/// result of the connect is not awaited: "in progress" is the normal outcome.
fn wake_connect(addr: SocketAddr) -> Option<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).ok()?;
    s.set_nonblocking(true).ok()?;
    let _ = s.connect(&addr.into());
    Some(s)
}

/// Where `port == 0` looks for a free pair first: below the ephemeral ranges
/// of Linux (32768..), Windows and macOS (49152..). Outgoing connections take
/// their local ports from the ephemeral range (on Linux preferring even
/// ports), and their TIME_WAIT remnants make the port above an ephemeral
/// `bind(0)` port unusable far too often when many tests run in parallel.
const PAIR_BAND: std::ops::Range<u16> = 20_000..32_000;

/// Binds the command listener on `port` and the live listener on the port
/// above it; with `port == 0`, on a free pair of consecutive ports.
fn bind_pair(port: u16) -> io::Result<(TcpListener, TcpListener)> {
    if port == u16::MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "command port 65535 leaves no room for the live port (command port + 1)",
        ));
    }
    if port != 0 {
        let cmd = listen(port)?;
        let live = listen(port + 1)?;
        return Ok((cmd, live));
    }
    let try_pair = |p: u16| -> io::Result<(TcpListener, TcpListener)> {
        let cmd = listen(p)?;
        let p = cmd.local_addr()?.port();
        if p == u16::MAX {
            return Err(io::ErrorKind::AddrInUse.into());
        }
        Ok((cmd, listen(p + 1)?))
    };
    let mut rng = faults::Rng::new(random_seed());
    let span = u64::from(PAIR_BAND.end - PAIR_BAND.start);
    let mut last = None;
    for _ in 0..64 {
        let p = PAIR_BAND.start + (rng.next_u64() % span) as u16;
        match try_pair(p) {
            Ok(pair) => return Ok(pair),
            Err(e) => last = Some(e),
        }
    }
    // Fall back to ephemeral ports.
    for _ in 0..64 {
        match try_pair(0) {
            Ok(pair) => return Ok(pair),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::ErrorKind::AddrInUse.into()))
}

/// A seed that differs between calls and processes (std's hasher keys are random).
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.finish()
}

fn listen(port: u16) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    // On Unix this lets a restarted simulator bind a port whose old
    // connections linger in TIME_WAIT. (On Windows SO_REUSEADDR would allow
    // stealing a port in use, and TIME_WAIT does not block a bind anyway.)
    #[cfg(not(windows))]
    s.set_reuse_address(true)?;
    s.bind(&SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).into())?;
    s.listen(128)?;
    Ok(s.into())
}
