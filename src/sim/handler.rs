//! What the simulated instrument does with each command.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Sender;

use super::conn::{Kind, Out};
use super::live::CameraCmd;
use super::shared::Shared;
use super::stage::axis_index;
use super::state::laser_index;
use super::workflow;
use crate::codec::{CommandCode as C, Flags, Message, STATUS_BUSY, STATUS_OK};

/// Status the simulator uses for a refused command.
pub(crate) const STATUS_REFUSED: u32 = 2;

/// The mount points reported by `STORAGE_PATH`.
const STORAGE_PATHS: &str = "/media/deploy/ctlsm1\n/media/deploy/ctlsm2\n";

/// The sending side of one command connection.
pub(crate) struct Conn {
    pub id: u64,
    pub tx: Sender<Out>,
    /// When the last reply to each code is due: a later reply to the same
    /// code is never due before it (see `Responder::schedule`).
    pub last_reply_due: RefCell<HashMap<C, Instant>>,
}

impl Conn {
    pub(crate) fn new(id: u64, tx: Sender<Out>) -> Conn {
        Conn {
            id,
            tx,
            last_reply_due: RefCell::new(HashMap::new()),
        }
    }
}

/// Builds and queues the reply to one request, applying the reply faults.
struct Responder<'a> {
    sh: &'a Shared,
    conn: &'a Conn,
    req: Message,
    /// The request asked for a reply (or its code is answered regardless).
    wants: bool,
}

impl Responder<'_> {
    /// The reply skeleton: the request echoed, status 0, no additional data.
    fn base(&self) -> Message {
        let mut m = self.req;
        m.status = STATUS_OK;
        m.additional_data_len = 0;
        m
    }

    /// The status to answer with: `natural`, or the `status_override` fault.
    fn status(&self, natural: u32) -> u32 {
        if !self.wants {
            return natural;
        }
        match self.sh.faults.lock().status_override.get(&self.req.code) {
            Some(&s) => {
                self.sh.count_fault(|c| c.status_overrides += 1);
                s
            }
            None => natural,
        }
    }

    /// Decides whether and when the reply goes out, applying the
    /// `never_answer`, `answer_late` and `delay` faults. `None`: no reply.
    fn schedule(&self) -> Option<Instant> {
        if !self.wants {
            return None;
        }
        let code = self.req.code;
        let now = Instant::now();
        let mut f = self.sh.faults.lock();
        if f.never_answer.contains(&code) {
            drop(f);
            self.sh.count_fault(|c| c.suppressed_replies += 1);
            log::debug!("sim: fault: not answering {code}");
            return None;
        }
        let mut due = now;
        if f.answer_late.is_some_and(|(c, _)| c == code) {
            let (_, d) = f.answer_late.take().expect("checked");
            drop(f);
            self.sh.count_fault(|c| c.late_replies += 1);
            due = deadline(now, d);
        } else if let Some(&d) = f.delay.get(&code) {
            drop(f);
            self.sh.count_fault(|c| c.delayed_replies += 1);
            due = deadline(now, d);
        } else {
            drop(f);
        }
        // Replies to one code leave in the order of their requests, as on the
        // instrument: a delayed reply holds back later replies to the same
        // code (other codes and events may overtake it). Without request ids
        // no client could tell two same-code replies apart if they swapped.
        let mut last = self.conn.last_reply_due.borrow_mut();
        let slot = last.entry(code).or_insert(due);
        due = due.max(*slot);
        *slot = due;
        Some(due)
    }

    /// Queues `reply` (with `data`) for `due` (from [`schedule`]); nothing if `None`.
    fn enqueue(&self, mut reply: Message, data: Option<Arc<Vec<u8>>>, due: Option<Instant>) {
        let Some(due) = due else {
            return;
        };
        if let Some(d) = &data {
            reply.additional_data_len = d.len() as u32;
        }
        log::debug!("sim: conn {} reply {reply:?}", self.conn.id);
        let _ = self.conn.tx.send(Out {
            msg: reply,
            data,
            due,
            kind: Kind::Reply,
        });
    }

    /// Schedules and queues `reply`.
    fn send(&self, reply: Message, data: Option<Arc<Vec<u8>>>) {
        let due = self.schedule();
        self.enqueue(reply, data, due);
    }

    /// Replies with the skeleton and status `st`.
    fn ack(&self, st: u32) {
        self.send(self.base().with_status(st), None);
    }

    /// Replies with `reply`, its status replaced by the fault if any.
    fn answer(&self, reply: Message) {
        let st = self.status(reply.status);
        self.send(reply.with_status(st), None);
    }
}

fn deadline(now: Instant, d: std::time::Duration) -> Instant {
    now.checked_add(d)
        .unwrap_or_else(|| now + std::time::Duration::from_secs(365 * 86400))
}

fn ok_if(cond: bool) -> u32 {
    if cond {
        STATUS_OK
    } else {
        STATUS_REFUSED
    }
}

/// Handles one request from connection `conn`.
///
/// State changes are made before the reply is queued, so a client that has
/// the reply sees them (also through the `Simulator` inspection methods).
/// Activity that produces events (moves, workflows) is released only after
/// the reply is queued, so the reply precedes its events.
pub(crate) fn handle(sh: &Arc<Shared>, conn: &Conn, req: Message, data: Vec<u8>) {
    let code = req.code;
    let wants =
        req.flags.contains(Flags::TRIGGER_CALL_BACK) || sh.cfg.answer_without_flag.contains(&code);
    let r = Responder {
        sh,
        conn,
        req,
        wants,
    };
    let i0 = req.int32_data0;
    let now = Instant::now();
    match code {
        // ---- System ----
        C::SYSTEM_STATE_GET => {
            let error_fault = sh.faults.lock().error_state;
            let state = sh.inst.lock().state(error_fault);
            if error_fault && r.wants {
                sh.count_fault(|c| c.error_state_replies += 1);
            }
            r.answer(r.base().with_int32_data0(state));
        }
        C::SYSTEM_STATE_IDLE => {
            sh.inst.lock().error = false;
            sh.broadcast(Message::new(C::SYSTEM_STATE_IDLE).with_status(1));
        }
        // ---- Common ----
        C::COMMON_SCOPE_SETTINGS_LOAD => {
            let text = sh.inst.lock().settings.clone();
            let st = r.status(STATUS_OK);
            r.send(r.base().with_status(st), Some(text));
        }
        C::COMMON_SCOPE_SETTINGS_SAVE => {
            let ok = !data.is_empty();
            let st = r.status(ok_if(ok));
            if st == STATUS_OK && ok {
                sh.inst.lock().settings = Arc::new(data);
            }
            r.ack(st);
        }
        C::STORAGE_PATH if i0 == 0 => {
            let st = r.status(STATUS_OK);
            let paths = Arc::new(STORAGE_PATHS.as_bytes().to_vec());
            r.send(r.base().with_status(st), Some(paths));
        }
        // ---- Lasers ----
        C::LASER_LEVEL_SET => {
            let level = req
                .text()
                .value
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|l| (0.0..=100.0).contains(l));
            let target = laser_index(i0).zip(level);
            let st = r.status(ok_if(target.is_some()));
            if let (STATUS_OK, Some((i, l))) = (st, target) {
                sh.inst.lock().laser_level[i] = l;
            }
            if sh.cfg.laser_set_acks {
                r.ack(st);
            }
        }
        C::LASER_LEVEL_GET => {
            let mut m = r.base();
            match laser_index(i0) {
                Some(i) => {
                    let l = sh.inst.lock().laser_level[i];
                    m.set_text(&format!("{l:.2}")).expect("short");
                }
                None => {
                    m.set_text("getLevel error").expect("short");
                    m.status = STATUS_REFUSED;
                }
            }
            r.answer(m);
        }
        C::LASER_ENABLE | C::LASER_DISABLE | C::LASER_PREVIEW_ENABLE | C::LASER_PREVIEW_DISABLE => {
            let st = r.status(ok_if(laser_index(i0).is_some()));
            if let (STATUS_OK, Some(i)) = (st, laser_index(i0)) {
                let mut inst = sh.inst.lock();
                match code {
                    C::LASER_ENABLE => inst.laser_enabled[i] = true,
                    C::LASER_DISABLE => inst.laser_enabled[i] = false,
                    C::LASER_PREVIEW_ENABLE => inst.laser_preview[i] = true,
                    _ => inst.laser_preview[i] = false,
                }
            }
            r.ack(st);
        }
        C::LASER_ALL_DISABLE => {
            let st = r.status(STATUS_OK);
            if st == STATUS_OK {
                let mut inst = sh.inst.lock();
                inst.laser_enabled = [false; 4];
                inst.laser_preview = [false; 4];
            }
            r.ack(st);
        }
        // ---- Camera ----
        C::CAMERA_EXPOSURE_SET => {
            let st = r.status(ok_if(i0 > 0));
            if st == STATUS_OK && i0 > 0 {
                sh.inst.lock().exposure_us = i0 as u32;
            }
            r.ack(st);
        }
        C::CAMERA_EXPOSURE_GET => {
            let e = sh.inst.lock().exposure_us;
            r.answer(r.base().with_int32_data0(e as i32));
        }
        C::CAMERA_IMAGE_SIZE_GET => {
            r.answer(
                r.base()
                    .with_int32_data0(sh.cfg.image_width as i32)
                    .with_int32_data1(sh.cfg.image_height as i32),
            );
        }
        C::CAMERA_PIXEL_FIELD_OF_VIEW_GET => {
            r.answer(r.base().with_double_data(sh.cfg.pixel_fov()));
        }
        C::CAMERA_SNAPSHOT_GET => {
            let mut inst = sh.inst.lock();
            let natural = if inst.workflow.is_some() {
                STATUS_BUSY
            } else {
                STATUS_OK
            };
            let st = r.status(natural);
            let go = st == STATUS_OK && natural == STATUS_OK;
            if go {
                inst.snapshots_pending += 1;
            }
            drop(inst);
            let due = r.schedule();
            r.enqueue(r.base().with_status(st), None, due);
            if go {
                let _ = sh.camera.send(CameraCmd::Snapshot {
                    not_before: due.unwrap_or(now),
                    snapshot: true,
                });
            }
        }
        C::CAMERA_LIVE_VIEW_START | C::CAMERA_LIVE_VIEW_STOP => {
            let st = r.status(STATUS_OK);
            let on = code == C::CAMERA_LIVE_VIEW_START;
            if st == STATUS_OK {
                sh.inst.lock().live_view = on;
            }
            let due = r.schedule();
            r.enqueue(r.base().with_status(st), None, due);
            if st == STATUS_OK {
                let _ = sh.camera.send(CameraCmd::Live {
                    on,
                    at: due.unwrap_or(now),
                });
            }
        }
        C::CAMERA_WORK_FLOW_START => {
            sh.inst.lock().workflows.push(data.clone());
            // Reserve the run before answering, so a state query right after
            // the ack already reads busy and two starts cannot both win.
            // Refused like an empty file: text the instrument cannot read.
            let unreadable = data.is_empty() || {
                let why = workflow::refusal(&data);
                if let Some(why) = &why {
                    log::debug!("sim: workflow refused: {why}");
                }
                why.is_some()
            };
            let slot = if unreadable {
                None
            } else {
                workflow::reserve(sh)
            };
            let natural = match (&slot, unreadable) {
                (_, true) => STATUS_REFUSED,
                (None, false) => STATUS_BUSY,
                (Some(_), false) => STATUS_OK,
            };
            let st = r.status(natural);
            if slot.is_some() && st != STATUS_OK {
                workflow::release(sh);
            }
            let due = if sh.cfg.ack_workflow_start {
                r.schedule()
            } else {
                None
            };
            r.enqueue(r.base().with_status(st), None, due);
            if let (Some(slot), STATUS_OK) = (slot, st) {
                workflow::play(sh, slot, data, due.unwrap_or(now));
            }
        }
        C::CAMERA_WORK_FLOW_STOP => {
            let st = r.status(STATUS_OK);
            r.ack(st);
            if st == STATUS_OK {
                workflow::stop(sh);
            }
        }
        C::CAMERA_ROI_LEFT_SET => {
            let st = r.status(ok_if(i0 >= 1));
            if st == STATUS_OK && i0 >= 1 {
                sh.inst.lock().roi_left = i0;
            }
            r.ack(st);
        }
        C::CAMERA_ROI_LEFT_GET => {
            let v = sh.inst.lock().roi_left;
            r.answer(r.base().with_int32_data0(v));
        }
        C::CAMERA_ROI_TOP_SET => {
            // 0x3011 from a client can only be ROI_TOP_SET; its ack would look
            // exactly like CAMERA_STACK_COMPLETE, so it is off by default.
            let st = r.status(ok_if(i0 >= 1));
            if st == STATUS_OK && i0 >= 1 {
                sh.inst.lock().roi_top = i0;
            }
            if sh.cfg.ack_roi_top_set {
                r.ack(st);
            }
        }
        C::CAMERA_ROI_TOP_GET => {
            let v = sh.inst.lock().roi_top;
            r.answer(r.base().with_int32_data0(v));
        }
        // ---- LED ----
        C::LED_SET => {
            let i1 = req.int32_data1;
            let ok = (0..=3).contains(&i0) && (32000..=65534).contains(&i1);
            let st = r.status(ok_if(ok));
            if st == STATUS_OK && ok {
                let mut inst = sh.inst.lock();
                inst.led_colour = i0;
                inst.led_level = i1;
            }
            if sh.cfg.led_set_acks {
                r.ack(st);
            }
        }
        C::LED_PREVIEW_ENABLE | C::LED_PREVIEW_DISABLE => {
            let st = r.status(STATUS_OK);
            if st == STATUS_OK {
                sh.inst.lock().led_preview = code == C::LED_PREVIEW_ENABLE;
            }
            r.ack(st);
        }
        // ---- Filter wheel ----
        C::FILTER_POSITION_SET => {
            let ok = (1..=8).contains(&i0);
            let st = r.status(ok_if(ok));
            if st == STATUS_OK && ok {
                sh.inst.lock().filter = i0;
            }
            r.ack(st);
        }
        C::FILTER_POSITION_GET => {
            let v = sh.inst.lock().filter;
            r.answer(r.base().with_int32_data0(v));
        }
        // ---- Illumination ----
        C::ILLUMINATION_LEFT_ENABLE
        | C::ILLUMINATION_LEFT_DISABLE
        | C::ILLUMINATION_RIGHT_ENABLE
        | C::ILLUMINATION_RIGHT_DISABLE => {
            let st = r.status(STATUS_OK);
            if st == STATUS_OK {
                let side = usize::from(code.0 >= C::ILLUMINATION_RIGHT_ENABLE.0);
                let on =
                    code == C::ILLUMINATION_LEFT_ENABLE || code == C::ILLUMINATION_RIGHT_ENABLE;
                sh.inst.lock().illumination[side] = on;
            }
            r.ack(st);
        }
        // ---- Stage ----
        C::STAGE_POSITION_GET => {
            let mut m = r.base();
            match axis_index(i0) {
                Some(i) => m.double_data = sh.stage.lock().axes[i].position_at(now),
                None => m.status = STATUS_REFUSED,
            }
            r.answer(m);
        }
        C::STAGE_MOTION_STOPPED => {
            // As a query (format unknown): status 1 when the axis (or, for an
            // unknown axis, every axis) is stopped, 0 while moving.
            let s = sh.stage.lock();
            let mut m = r.base();
            let moving = match axis_index(i0) {
                Some(i) => {
                    m.double_data = s.axes[i].position_at(now);
                    s.axes[i].is_moving()
                }
                None => s.axes.iter().any(|a| a.is_moving()),
            };
            drop(s);
            m.status = u32::from(!moving);
            r.answer(m);
        }
        C::STAGE_POSITION_SET | C::STAGE_POSITION_SET_SLIDER => {
            let target = req.double_data;
            let busy = sh.inst.lock().workflow.is_some();
            // The stage lock is held until the ack is queued: the stage thread
            // cannot report the end of this move before its ack.
            let mut stage = sh.stage.lock();
            let natural = match axis_index(i0) {
                _ if busy => STATUS_BUSY,
                Some(i) if stage.target_ok(i, target) => STATUS_OK,
                _ => STATUS_REFUSED,
            };
            let st = r.status(natural);
            let due = r.schedule();
            let go = st == STATUS_OK && natural == STATUS_OK;
            if go {
                let i = axis_index(i0).expect("validated");
                log::debug!("sim: axis {i0} moves to {target}");
                stage.begin_move(i, target, due.unwrap_or(now));
            }
            r.enqueue(r.base().with_status(st), None, due);
            drop(stage);
            if go {
                sh.count(|c| c.moves += 1);
                let _ = sh.stage_wake.send(());
            }
        }
        C::STAGE_VELOCITY_SET => {
            let v = req.double_data;
            let ok = axis_index(i0).is_some() && v.is_finite() && v > 0.0;
            let st = r.status(ok_if(ok));
            if let (STATUS_OK, true, Some(i)) = (st, ok, axis_index(i0)) {
                sh.stage.lock().axes[i].velocity = v;
            }
            r.ack(st);
        }
        C::STAGE_HALT => {
            let st = r.status(STATUS_OK);
            let mut stage = sh.stage.lock();
            let due = r.schedule();
            if st == STATUS_OK {
                stage.halt(due.unwrap_or(now));
            }
            r.enqueue(r.base().with_status(st), None, due);
            drop(stage);
            let _ = sh.stage_wake.send(());
        }
        C::STAGE_HOME => {
            let natural = if sh.inst.lock().workflow.is_some() {
                STATUS_BUSY
            } else {
                STATUS_OK
            };
            let st = r.status(natural);
            let go = st == STATUS_OK && natural == STATUS_OK;
            let mut stage = sh.stage.lock();
            let due = r.schedule();
            if go {
                for i in 0..4 {
                    let home = stage.axes[i].home;
                    stage.begin_move(i, home, due.unwrap_or(now));
                }
            }
            r.enqueue(r.base().with_status(st), None, due);
            drop(stage);
            if go {
                sh.count(|c| c.moves += 4);
                let _ = sh.stage_wake.send(());
            }
        }
        // ---- Everything else ----
        c if c.info().is_some() => {
            // A known code the model does not simulate: plain acknowledgement.
            r.ack(r.status(STATUS_OK));
        }
        _ => {
            // Unknown code: the echo responder. The message comes back
            // unchanged, with its additional data.
            let data = (!data.is_empty()).then(|| Arc::new(data));
            r.send(req, data);
        }
    }
}
