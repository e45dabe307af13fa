//! The camera: image size, pixel size, exposure, region of interest,
//! snapshots and live view.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, TryRecvError};

use super::op::{recv_reply, Step};
use super::{msg0, run, Base, Op};
use crate::codec::CommandCode as C;
use crate::live::{Frame, LiveStream};
use crate::live::{Owed, Turn};
use crate::{Deadline, Error, Op as ReplyOp, Reply, Result};

/// The camera's image size in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ImageSize {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// The camera. Made by [`Client::camera`](crate::Client::camera).
///
/// ```no_run
/// # fn main() -> flamingo_client::Result<()> {
/// use flamingo_client::{Client, ClientConfig};
///
/// let client = Client::connect("127.0.0.1:53717", ClientConfig::default())?;
/// let camera = client.camera();
/// let size = camera.image_size()?;
/// let mm = camera.pixel_fov_mm()?;
/// println!("{} x {} px, {:.2} µm per pixel", size.width, size.height, mm * 1000.0);
/// camera.set_exposure_us(20_000)?;
/// assert_eq!(camera.exposure_us()?, 20_000);
/// let frame = camera.snapshot()?;
/// frame.save_tiff("snapshot.tif")?;
/// # Ok(()) }
/// ```
///
/// Images arrive on the live port (command port + 1), which the client
/// connects on first use ([`Client::live`](crate::Client::live)). [`snapshot`](Camera::snapshot)
/// returns the frame the instrument sends after the trigger;
/// [`live_start`](Camera::live_start) returns the [`LiveStream`] to read
/// frames from, and [`live_stop`](Camera::live_stop) closes the live socket
/// again (the instrument drops idle live links and may serve only one).
#[derive(Clone, Debug)]
pub struct Camera {
    pub(crate) base: Base,
}

impl Camera {
    pub(crate) fn new(base: Base) -> Camera {
        Camera { base }
    }

    /// Sets the deadline of each operation.
    #[must_use]
    pub fn timeout(mut self, d: Duration) -> Camera {
        self.base.timeout = d;
        self
    }

    /// The image size. The instrument may report 0 x 0 while it is not
    /// streaming; the size is then in each live frame's header.
    pub fn image_size(&self) -> Result<ImageSize> {
        run(|| self.submit_image_size())
    }

    /// Non-blocking form of [`image_size`](Camera::image_size).
    pub fn submit_image_size(&self) -> Result<Op<ImageSize>> {
        self.base.query(
            "the camera image size",
            msg0(C::CAMERA_IMAGE_SIZE_GET, 0),
            |r| {
                let (w, h) = (r.message.int32_data0, r.message.int32_data1);
                match (u32::try_from(w), u32::try_from(h)) {
                    (Ok(width), Ok(height)) => Ok(ImageSize { width, height }),
                    _ => Err(Error::protocol(format!(
                        "the camera reported a negative image size ({w} x {h})"
                    ))),
                }
            },
        )
    }

    /// The pixel field of view: millimetres of sample per pixel.
    pub fn pixel_fov_mm(&self) -> Result<f64> {
        run(|| self.submit_pixel_fov_mm())
    }

    /// Non-blocking form of [`pixel_fov_mm`](Camera::pixel_fov_mm).
    pub fn submit_pixel_fov_mm(&self) -> Result<Op<f64>> {
        self.base.query(
            "the pixel field of view",
            msg0(C::CAMERA_PIXEL_FIELD_OF_VIEW_GET, 0),
            |r| {
                let v = r.message.double_data;
                if v.is_finite() && v >= 0.0 {
                    Ok(v)
                } else {
                    Err(Error::protocol(format!(
                        "the camera reported a pixel field of view of {v} mm"
                    )))
                }
            },
        )
    }

    /// The exposure time in microseconds.
    pub fn exposure_us(&self) -> Result<u32> {
        run(|| self.submit_exposure_us())
    }

    /// Non-blocking form of [`exposure_us`](Camera::exposure_us).
    pub fn submit_exposure_us(&self) -> Result<Op<u32>> {
        self.base.query(
            "the camera exposure",
            msg0(C::CAMERA_EXPOSURE_GET, 0),
            |r| non_negative("exposure", &r),
        )
    }

    /// Sets the exposure time in microseconds (1 ..= 2^31 - 1).
    pub fn set_exposure_us(&self, us: u32) -> Result<()> {
        run(|| self.submit_set_exposure_us(us))
    }

    /// Non-blocking form of [`set_exposure_us`](Camera::set_exposure_us).
    pub fn submit_set_exposure_us(&self, us: u32) -> Result<Op<()>> {
        let v = positive_i32("the exposure in µs", us)?;
        self.base.command(
            format!("the acknowledgement of an exposure of {us} µs"),
            msg0(C::CAMERA_EXPOSURE_SET, v),
        )
    }

    /// The left edge of the region of interest (1-based pixel column).
    pub fn roi_left(&self) -> Result<u32> {
        run(|| {
            self.base
                .query("the ROI left edge", msg0(C::CAMERA_ROI_LEFT_GET, 0), |r| {
                    non_negative("ROI left edge", &r)
                })
        })
    }

    /// Sets the left edge of the region of interest (1-based; the sensor
    /// keeps the region symmetric, so this also sets the right edge). Stop
    /// live view first.
    pub fn set_roi_left(&self, left: u32) -> Result<()> {
        let v = positive_i32("the ROI left edge", left)?;
        run(|| {
            self.base.command(
                format!("the acknowledgement of ROI left edge {left}"),
                msg0(C::CAMERA_ROI_LEFT_SET, v),
            )
        })
    }

    /// The top edge of the region of interest (1-based pixel row).
    pub fn roi_top(&self) -> Result<u32> {
        run(|| {
            self.base
                .query("the ROI top edge", msg0(C::CAMERA_ROI_TOP_GET, 0), |r| {
                    non_negative("ROI top edge", &r)
                })
        })
    }

    /// Sets the top edge of the region of interest (1-based). **Sent without
    /// waiting for an answer**: its code (0x3011) is the one the instrument
    /// uses for the unsolicited stack-complete message, so an acknowledgement
    /// could not be told from one. Returns once the message is written; read
    /// it back with [`roi_top`](Camera::roi_top) to confirm.
    pub fn set_roi_top(&self, top: u32) -> Result<()> {
        let v = positive_i32("the ROI top edge", top)?;
        self.base
            .send_flagged(msg0(C::CAMERA_ROI_TOP_SET, v), self.base.deadline())
            .map(|_| ())
    }
}

impl Camera {
    /// Takes one image (`CAMERA_SNAPSHOT_GET`) and returns it. One deadline
    /// covers connecting the live port (if needed), the acknowledgement and
    /// the frame. The frame counted is the first one to arrive after the
    /// trigger was sent, so do not run live view at the same time: a live
    /// frame would be taken for the snapshot.
    ///
    /// Snapshots of one client run one at a time, each within its own
    /// deadline: a frame names no trigger, so two snapshots waiting at once
    /// could take each other's frames. A snapshot that gave up after its
    /// trigger went out (it timed out, or its [`Op`] was dropped) leaves its
    /// frame owed: the next snapshot first waits for that frame, so it never
    /// takes it for its own, or until the client's
    /// [`late_reply_window`](crate::ClientConfig::late_reply_window) has
    /// passed since (the frame is then given up for lost).
    ///
    /// Errors: `Busy` (for example during a workflow), `Refused`, `Timeout`
    /// (no acknowledgement, or no frame; phase `KeyBusy` while another
    /// snapshot or its owed frame was still outstanding), `Disconnected`,
    /// `Connect` (the live port cannot be reached), `InvalidArgument` (the
    /// live port is disabled in the client's configuration; nothing is
    /// sent).
    pub fn snapshot(&self) -> Result<Frame> {
        run(|| self.submit_snapshot())
    }

    /// Non-blocking form of [`snapshot`](Camera::snapshot), except that it
    /// connects the live port first if it is not open (a GUI opens it once
    /// beforehand with [`Client::live`](crate::Client::live), after which this never blocks).
    /// The trigger is sent at once when no other snapshot is outstanding,
    /// otherwise when the operation is polled after the other one is done.
    pub fn submit_snapshot(&self) -> Result<Op<Frame>> {
        let deadline = self.base.deadline();
        let client = &self.base.client;
        let live = match client.live_if_open() {
            Some(l) => l,
            None => client.live(deadline.remaining_timeout())?,
        };
        let mut step = Snapshot {
            base: self.base.clone(),
            deadline,
            live,
            turn: None,
            ack: None,
            triggered: false,
        };
        if let Some(Err(e)) = step.start(None) {
            return Err(e);
        }
        Ok(Op::new(
            "a snapshot frame",
            deadline,
            self.base.timeout,
            step,
        ))
    }

    /// Starts live view (`CAMERA_LIVE_VIEW_START`), then connects the live
    /// port if needed (the instrument may only listen once live view is
    /// started) and returns the stream. Read frames with
    /// [`LiveStream::next_frame`] or show [`LiveStream::latest_frame`].
    pub fn live_start(&self) -> Result<Arc<LiveStream>> {
        let deadline = self.base.deadline();
        self.base
            .command_at(
                "the acknowledgement of CAMERA_LIVE_VIEW_START",
                msg0(C::CAMERA_LIVE_VIEW_START, 0),
                deadline,
            )?
            .wait()?;
        self.base.client.live(deadline.remaining_timeout())
    }

    /// Sends `CAMERA_LIVE_VIEW_START` only (the acknowledgement is the
    /// outcome). Frames come on the stream from [`Client::live`](crate::Client::live); a GUI
    /// opens it once beforehand.
    pub fn submit_live_start(&self) -> Result<Op<()>> {
        self.base.command(
            "the acknowledgement of CAMERA_LIVE_VIEW_START",
            msg0(C::CAMERA_LIVE_VIEW_START, 0),
        )
    }

    /// Stops live view (`CAMERA_LIVE_VIEW_STOP`) and closes the live socket
    /// ([`Client::close_live`](crate::Client::close_live)), even if the stop is not acknowledged: the
    /// next snapshot or live start reconnects. Returns the stop's outcome.
    pub fn live_stop(&self) -> Result<()> {
        let r = self.submit_live_stop().and_then(Op::wait);
        self.base.client.close_live();
        r
    }

    /// Sends `CAMERA_LIVE_VIEW_STOP` only (the live socket stays open).
    pub fn submit_live_stop(&self) -> Result<Op<()>> {
        self.base.command(
            "the acknowledgement of CAMERA_LIVE_VIEW_STOP",
            msg0(C::CAMERA_LIVE_VIEW_STOP, 0),
        )
    }
}

/// Takes the live stream's trigger turn, waits for a frame an abandoned
/// snapshot left owed, sends the trigger, then waits for the
/// acknowledgement and for the first frame counted after the trigger.
struct Snapshot {
    base: Base,
    deadline: Deadline,
    live: Arc<LiveStream>,
    turn: Option<Turn>,
    ack: Option<ReplyOp<Reply>>,
    triggered: bool,
}

impl Snapshot {
    /// Takes the turn (waiting until `until`), settles an owed frame and
    /// sends the trigger. `None` while waiting, `Some(Ok(()))` once the
    /// trigger is out.
    fn start(&mut self, until: Option<Instant>) -> Option<Result<()>> {
        if self.triggered {
            return Some(Ok(()));
        }
        if self.turn.is_none() {
            self.turn = Some(self.live.take_turn(until)?);
        }
        if let Some(owed) = self.turn.as_ref().and_then(Turn::owed) {
            if let Err(e) = self.settle_owed(owed, until)? {
                return Some(Err(e));
            }
            if let Some(t) = self.turn.as_mut() {
                t.settle_owed();
            }
        }
        // Frames counted before the trigger are not the snapshot.
        let mark = self.live.stats().frames;
        match self
            .base
            .submit_at(msg0(C::CAMERA_SNAPSHOT_GET, 0), self.deadline)
        {
            Ok(ack) => self.ack = Some(ack),
            Err(e) => return Some(Err(e)),
        }
        if let Some(t) = self.turn.as_mut() {
            t.triggered(mark);
        }
        self.triggered = true;
        Some(Ok(()))
    }

    /// Waits until `until` for the frame an abandoned snapshot left owed:
    /// any frame counted after its trigger. `Some(Ok)` once it is in or
    /// given up for lost.
    fn settle_owed(&self, owed: Owed, until: Option<Instant>) -> Option<Result<()>> {
        if self.live.stats().frames > owed.after {
            return Some(Ok(()));
        }
        let window = self.base.client.config().late_reply_window;
        // None: a window too large to represent, i.e. never give up.
        let lost_at = owed.since.checked_add(window);
        loop {
            let now = Instant::now();
            if lost_at.is_some_and(|t| t <= now) {
                log::warn!(
                    "snapshot: the frame of an abandoned snapshot did not arrive within {window:?}; taking it as lost"
                );
                return Some(Ok(()));
            }
            let wait = match (until, lost_at) {
                (Some(u), Some(l)) => Some(u.min(l)),
                (u, _) => u,
            };
            match self.next_frame(wait) {
                Some(Ok(f)) if f.sequence() > owed.after => return Some(Ok(())),
                Some(Ok(_older)) => {}
                Some(Err(e)) => return Some(Err(e)),
                // Our own wait is over; else the window is: checked above.
                None if until.is_none_or(|u| u <= Instant::now()) => return None,
                None => {}
            }
        }
    }

    /// The next frame in the queue, waiting until `until` (`None`: not at
    /// all). `None` if none came; an error once the stream has ended.
    fn next_frame(&self, until: Option<Instant>) -> Option<Result<Frame>> {
        let got = match until {
            None => self.live.frames().try_recv().map_err(|e| match e {
                TryRecvError::Empty => RecvTimeoutError::Timeout,
                TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
            }),
            Some(t) => self.live.frames().recv_deadline(t),
        };
        match got {
            Ok(f) => Some(Ok(f)),
            Err(RecvTimeoutError::Timeout) => None,
            // The stream ended; its error says why.
            Err(RecvTimeoutError::Disconnected) => {
                Some(Err(self.live.error().unwrap_or_else(|| {
                    Error::disconnected(
                        crate::DisconnectReason::ClosedByUser,
                        "the live stream was closed",
                    )
                })))
            }
        }
    }

    /// The next frame after the trigger, without blocking past `until`.
    fn frame(&self, until: Option<Instant>) -> Option<Result<Frame>> {
        let mark = self.turn.as_ref().and_then(Turn::pending).unwrap_or(0);
        loop {
            match self.next_frame(until)? {
                Ok(f) if f.sequence() > mark => return Some(Ok(f)),
                Ok(_older) => {}
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

impl Step<Frame> for Snapshot {
    fn poll(&mut self, until: Option<Instant>) -> Option<Result<Frame>> {
        if let Err(e) = self.start(until)? {
            return Some(Err(e));
        }
        if let Some(p) = &mut self.ack {
            let reply = match recv_reply(p, until)? {
                Ok(reply) => reply,
                // The instrument may still have taken the trigger: its
                // frame stays owed when the turn is given back.
                Err(e) => return Some(Err(e)),
            };
            self.ack = None;
            if let Err(e) = self.base.client.check_status(&reply) {
                // Refused or busy: no frame will come.
                if let Some(t) = self.turn.as_mut() {
                    t.answered();
                }
                return Some(Err(e));
            }
        }
        let r = self.frame(until)?;
        // The frame is in, or the stream ended (and with it what it owed).
        if let Some(t) = self.turn.as_mut() {
            t.answered();
        }
        Some(r)
    }

    fn expire(&mut self, what: &str, after: Duration) -> Option<Result<Frame>> {
        if self.triggered {
            return None; // the acknowledgement's or the frame's usual timeout
        }
        let why = if self.turn.is_none() {
            "another snapshot of this client was still waiting for its frame"
        } else {
            "the frame of an earlier, abandoned snapshot was still outstanding"
        };
        Some(Err(Error::timeout(
            crate::TimeoutPhase::KeyBusy,
            format!("{what} ({why})"),
            after,
        )))
    }
}

fn non_negative(what: &str, r: &Reply) -> Result<u32> {
    let v = r.message.int32_data0;
    u32::try_from(v).map_err(|_| Error::protocol(format!("the camera reported a {what} of {v}")))
}

fn positive_i32(what: &str, v: u32) -> Result<i32> {
    match i32::try_from(v) {
        Ok(i) if i > 0 => Ok(i),
        _ => Err(Error::invalid(format!(
            "{what} must be between 1 and {}, not {v}",
            i32::MAX
        ))),
    }
}
