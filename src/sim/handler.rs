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
    /// code is never due before it (see [`Responder::send`]).
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

    /// Queues `reply` (with `data`) if a reply is wanted and not suppressed.
    /// Returns when it will be written (now if it is not sent): activity the
    /// command starts begins then, so the reply precedes its events.
    fn send(&self, mut reply: Message, data: Option<Arc<Vec<u8>>>) -> Instant {
        let now = Instant::now();
        if !self.wants {
            return now;
        }
        let code = self.req.code;
        let mut due = now;
        {
            let mut f = self.sh.faults.lock();
            if f.never_answer.contains(&code) {
                drop(f);
                self.sh.count_fault(|c| c.suppressed_replies += 1);
                log::debug!("sim: fault: not answering {code}");
                return now;
            }
            if f.answer_late.is_some_and(|(c, _)| c == code) {
                let (_, d) = f.answer_late.take().expect("checked");
                drop(f);
                self.sh.count_fault(|c| c.late_replies += 1);
                due = deadline(now, d);
            } else if let Some(&d) = f.delay.get(&code) {
                drop(f);
                self.sh.count_fault(|c| c.delayed_replies += 1);
                due = deadline(now, d);
            }
        }
        // Replies to one code leave in the order of their requests, as on the
        // instrument: a delayed reply holds back later replies to the same
        // code (other codes and events may overtake it). Without request ids
        // no client could tell two same-code replies apart if they swapped.
        {
            let mut last = self.conn.last_reply_due.borrow_mut();
            let slot = last.entry(code).or_insert(due);
            due = due.max(*slot);
            *slot = due;
        }
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
        due
    }

    /// Replies with the skeleton and a status (after `status()`).
    fn ack(&self, natural: u32) -> (u32, Instant) {
        let st = self.status(natural);
        (st, self.send(self.base().with_status(st), None))
    }

    /// Replies with `reply`, its status replaced by the fault if any.
    fn answer(&self, reply: Message) -> Instant {
        let st = self.status(reply.status);
        self.send(reply.with_status(st), None)
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
            let (st, _) = r.ack(ok_if(!data.is_empty()));
            if st == STATUS_OK && !data.is_empty() {
                sh.inst.lock().settings = Arc::new(data);
            }
        }
        C::STORAGE_PATH if i0 == 0 => {
            let st = r.status(STATUS_OK);
            let paths = Arc::new(STORAGE_PATHS.as_bytes().to_vec());
            r.send(r.base().with_status(st), Some(paths));
        }
        // ---- Lasers ----
        C::LASER_LEVEL_SET => {
            let level = req.text().value.trim().parse::<f64>().ok();
            let ok = laser_index(i0).is_some()
                && level.is_some_and(|l| l.is_finite() && (0.0..=100.0).contains(&l));
            let st = r.status(ok_if(ok));
            if sh.cfg.laser_set_acks {
                r.send(r.base().with_status(st), None);
            }
            if st == STATUS_OK && ok {
                if let (Some(i), Some(l)) = (laser_index(i0), level) {
                    sh.inst.lock().laser_level[i] = l;
                }
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
            let (st, _) = r.ack(ok_if(laser_index(i0).is_some()));
            if let (STATUS_OK, Some(i)) = (st, laser_index(i0)) {
                let mut inst = sh.inst.lock();
                match code {
                    C::LASER_ENABLE => inst.laser_enabled[i] = true,
                    C::LASER_DISABLE => inst.laser_enabled[i] = false,
                    C::LASER_PREVIEW_ENABLE => inst.laser_preview[i] = true,
                    _ => inst.laser_preview[i] = false,
                }
            }
        }
        C::LASER_ALL_DISABLE => {
            let (st, _) = r.ack(STATUS_OK);
            if st == STATUS_OK {
                let mut inst = sh.inst.lock();
                inst.laser_enabled = [false; 4];
                inst.laser_preview = [false; 4];
            }
        }
        // ---- Camera ----
        C::CAMERA_EXPOSURE_SET => {
            let (st, _) = r.ack(ok_if(i0 > 0));
            if st == STATUS_OK && i0 > 0 {
                sh.inst.lock().exposure_us = i0 as u32;
            }
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
            r.answer(r.base().with_double_data(sh.cfg.pixel_fov_mm));
        }
        C::CAMERA_SNAPSHOT_GET => {
            let busy = sh.inst.lock().workflow.is_some();
            let (st, due) = r.ack(if busy { STATUS_BUSY } else { STATUS_OK });
            if st == STATUS_OK && !busy {
                sh.inst.lock().snapshots_pending += 1;
                let _ = sh.camera.send(CameraCmd::Snapshot {
                    not_before: due,
                    snapshot: true,
                });
            }
        }
        C::CAMERA_LIVE_VIEW_START | C::CAMERA_LIVE_VIEW_STOP => {
            let (st, due) = r.ack(STATUS_OK);
            if st == STATUS_OK {
                let on = code == C::CAMERA_LIVE_VIEW_START;
                sh.inst.lock().live_view = on;
                let _ = sh.camera.send(CameraCmd::Live { on, at: due });
            }
        }
        C::CAMERA_WORK_FLOW_START => {
            sh.inst.lock().workflows.push(data.clone());
            // Reserve the run before answering, so a state query right after
            // the ack already reads busy and two starts cannot both win.
            let slot = if data.is_empty() {
                None
            } else {
                workflow::reserve(sh)
            };
            let natural = match (&slot, data.is_empty()) {
                (_, true) => STATUS_REFUSED,
                (None, false) => STATUS_BUSY,
                (Some(_), false) => STATUS_OK,
            };
            let (st, due) = if sh.cfg.ack_workflow_start {
                r.ack(natural)
            } else {
                (r.status(natural), Instant::now())
            };
            if let Some(slot) = slot {
                if st == STATUS_OK {
                    workflow::play(sh, slot, data, due);
                } else {
                    workflow::release(sh);
                }
            }
        }
        C::CAMERA_WORK_FLOW_STOP => {
            let (st, _) = r.ack(STATUS_OK);
            if st == STATUS_OK {
                workflow::stop(sh);
            }
        }
        C::CAMERA_ROI_LEFT_SET => {
            let (st, _) = r.ack(ok_if(i0 >= 1));
            if st == STATUS_OK && i0 >= 1 {
                sh.inst.lock().roi_left = i0;
            }
        }
        C::CAMERA_ROI_LEFT_GET => {
            let v = sh.inst.lock().roi_left;
            r.answer(r.base().with_int32_data0(v));
        }
        C::CAMERA_ROI_TOP_SET => {
            // 0x3011 from a client can only be ROI_TOP_SET; its ack would look
            // exactly like CAMERA_STACK_COMPLETE, so it is off by default.
            let st = if sh.cfg.ack_roi_top_set {
                r.ack(ok_if(i0 >= 1)).0
            } else {
                ok_if(i0 >= 1)
            };
            if st == STATUS_OK && i0 >= 1 {
                sh.inst.lock().roi_top = i0;
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
            if sh.cfg.led_set_acks {
                r.send(r.base().with_status(st), None);
            }
            if st == STATUS_OK && ok {
                let mut inst = sh.inst.lock();
                inst.led_colour = i0;
                inst.led_level = i1;
            }
        }
        C::LED_PREVIEW_ENABLE | C::LED_PREVIEW_DISABLE => {
            let (st, _) = r.ack(STATUS_OK);
            if st == STATUS_OK {
                sh.inst.lock().led_preview = code == C::LED_PREVIEW_ENABLE;
            }
        }
        // ---- Filter wheel ----
        C::FILTER_POSITION_SET => {
            let ok = (1..=8).contains(&i0);
            let (st, _) = r.ack(ok_if(ok));
            if st == STATUS_OK && ok {
                sh.inst.lock().filter = i0;
            }
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
            let (st, _) = r.ack(STATUS_OK);
            if st == STATUS_OK {
                let side = usize::from(code.0 >= C::ILLUMINATION_RIGHT_ENABLE.0);
                let on =
                    code == C::ILLUMINATION_LEFT_ENABLE || code == C::ILLUMINATION_RIGHT_ENABLE;
                sh.inst.lock().illumination[side] = on;
            }
        }
        // ---- Stage ----
        C::STAGE_POSITION_GET => {
            let mut m = r.base();
            match axis_index(i0) {
                Some(i) => m.double_data = sh.stage.lock().axes[i].position_at(Instant::now()),
                None => m.status = STATUS_REFUSED,
            }
            r.answer(m);
        }
        C::STAGE_MOTION_STOPPED => {
            // As a query (format unknown): status 1 when the axis (or, for an
            // unknown axis, every axis) is stopped, 0 while moving.
            let s = sh.stage.lock();
            let now = Instant::now();
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
            let natural = if sh.inst.lock().workflow.is_some() {
                STATUS_BUSY
            } else {
                match axis_index(i0) {
                    Some(i) if sh.stage.lock().target_ok(i, target) => STATUS_OK,
                    _ => STATUS_REFUSED,
                }
            };
            let (st, due) = r.ack(natural);
            if st == STATUS_OK && natural == STATUS_OK {
                let i = axis_index(i0).expect("validated");
                log::debug!("sim: axis {i0} moves to {target}");
                sh.stage.lock().begin_move(i, target, due);
                sh.count(|c| c.moves += 1);
                let _ = sh.stage_wake.send(());
            }
        }
        C::STAGE_VELOCITY_SET => {
            let v = req.double_data;
            let ok = axis_index(i0).is_some() && v.is_finite() && v > 0.0;
            let (st, _) = r.ack(ok_if(ok));
            if st == STATUS_OK && ok {
                sh.stage.lock().axes[axis_index(i0).expect("validated")].velocity = v;
            }
        }
        C::STAGE_HALT => {
            let (st, due) = r.ack(STATUS_OK);
            if st == STATUS_OK {
                sh.stage.lock().halt(due);
                let _ = sh.stage_wake.send(());
            }
        }
        C::STAGE_HOME => {
            let busy = sh.inst.lock().workflow.is_some();
            let (st, due) = r.ack(if busy { STATUS_BUSY } else { STATUS_OK });
            if st == STATUS_OK && !busy {
                let mut s = sh.stage.lock();
                for i in 0..4 {
                    let home = s.axes[i].home;
                    s.begin_move(i, home, due);
                }
                drop(s);
                sh.count(|c| c.moves += 4);
                let _ = sh.stage_wake.send(());
            }
        }
        // ---- Everything else ----
        c if c.info().is_some() => {
            // A known code the model does not simulate: plain acknowledgement.
            r.ack(STATUS_OK);
        }
        _ => {
            // Unknown code: the echo responder. The message comes back
            // unchanged, with its additional data.
            if r.wants {
                let data = (!data.is_empty()).then(|| Arc::new(data));
                r.send(req, data);
            }
        }
    }
}
