//! `NativeClient`: one connection, its raw requests and its device facades
//! (`flamingo_client.Client` wraps it).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use flamingo_client::codec::{Axis, CommandCode};
use flamingo_client::devices::{LedColour, SoftLimits, Stage, Workflow, Workflows};
use flamingo_client::{Client, ClientConfig, ConnectionState, ReconnectPolicy};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::convert::{event_tuple, frame_tuple, section_tuple, stop_tuple, FrameTuple, StopTuple};
use crate::live::NativeLive;
use crate::router::NativeRouter;
use crate::run::NativeRun;
use crate::subscription::NativeSubscription;
use crate::util::{block, decode, invalid, secs};

fn axis(py: Python<'_>, wire: i32) -> PyResult<Axis> {
    Axis::from_wire(wire).ok_or_else(|| {
        invalid(
            py,
            format!("axis must be x, y, z or r (1 to 4), not {wire}"),
        )
    })
}

fn colour(py: Python<'_>, wire: i32) -> PyResult<LedColour> {
    LedColour::from_wire(wire).ok_or_else(|| {
        invalid(
            py,
            format!("LED colour must be red, green, blue or white (0 to 3), not {wire}"),
        )
    })
}

/// Parses and checks a workflow file with the rules of the CLI's
/// `workflow check` (the error names the line), and against `limits`.
pub fn checked_workflow(
    file: &[u8],
    limits: Option<SoftLimits>,
) -> flamingo_client::Result<Workflow> {
    let wf = Workflow::from_bytes(file.to_vec())?;
    match limits {
        Some(l) => l.check_workflow(&wf)?,
        None => wf.validate()?,
    }
    Ok(wf)
}

/// Soft limits as Python gets them: ([(axis name, min, max)], field of view (w, h) mm).
pub type LimitsTuple = (Vec<(&'static str, f64, f64)>, Option<(f64, f64)>);
/// Soft limits as Python gives them: ([(axis 1-4, min, max)], field of view).
pub type LimitsArg = (Vec<(i32, f64, f64)>, Option<(f64, f64)>);

pub fn limits_tuple(l: &SoftLimits) -> LimitsTuple {
    let axes = Axis::ALL
        .iter()
        .filter_map(|&a| l.get(a).map(|(lo, hi)| (a.name(), lo, hi)))
        .collect();
    (axes, l.field_of_view())
}

pub fn limits_from(py: Python<'_>, arg: LimitsArg) -> PyResult<SoftLimits> {
    let (axes, fov) = arg;
    let mut l = SoftLimits::none();
    let err = |e| crate::util::to_py(py, e);
    for (a, lo, hi) in axes {
        l = l.axis(axis(py, a)?, lo, hi).map_err(err)?;
    }
    if let Some((w, h)) = fov {
        l = l.field_of_view_mm(w, h).map_err(err)?;
    }
    Ok(l)
}

/// One connection (`flamingo_client.Client` wraps it).
#[pyclass(module = "flamingo_client._native", frozen)]
pub struct NativeClient {
    pub client: Client,
    /// Soft limits every move and workflow start is checked against (opt-in).
    limits: Mutex<Option<SoftLimits>>,
}

impl NativeClient {
    fn limits(&self) -> Option<SoftLimits> {
        *self.limits.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The stage facade, with the soft limits if they are on.
    fn stage(&self, t: Duration) -> Stage {
        let s = self.client.stage().timeout(t);
        match self.limits() {
            Some(l) => s.soft_limits(l),
            None => s,
        }
    }

    /// The workflows facade, with the soft limits if they are on.
    fn workflows(&self, t: Duration) -> Workflows {
        let w = self.client.workflows().timeout(t);
        match self.limits() {
            Some(l) => w.soft_limits(l),
            None => w,
        }
    }

    /// A facade's timeout: `None` is the client's request timeout.
    fn t(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Duration> {
        match timeout {
            None => Ok(self.client.config().request_timeout),
            t => secs(py, t),
        }
    }
}

impl Drop for NativeClient {
    /// Garbage collection closes the connection and joins its threads, with
    /// the GIL released.
    fn drop(&mut self) {
        let c = self.client.clone();
        Python::attach(|py| py.detach(move || c.close()));
    }
}

#[pymethods]
impl NativeClient {
    #[new]
    #[pyo3(signature = (addr, connect_timeout, request_timeout, live, event_queue_depth, reconnect))]
    fn new(
        py: Python<'_>,
        addr: String,
        connect_timeout: Option<f64>,
        request_timeout: Option<f64>,
        live: bool,
        event_queue_depth: usize,
        reconnect: Option<(f64, f64, f64, f64, Option<u32>)>,
    ) -> PyResult<Self> {
        if event_queue_depth == 0 {
            return Err(invalid(
                py,
                "the event queue depth must be at least 1".into(),
            ));
        }
        let mut cfg = ClientConfig::default()
            .connect_timeout(secs(py, connect_timeout)?)
            .request_timeout(secs(py, request_timeout)?)
            .live(live)
            .event_queue_depth(event_queue_depth);
        if let Some((initial, max, multiplier, jitter, attempts)) = reconnect {
            cfg = cfg.reconnect(
                ReconnectPolicy::default()
                    .initial_delay(secs(py, Some(initial))?)
                    .max_delay(secs(py, Some(max))?)
                    .multiplier(multiplier)
                    .jitter(jitter)
                    .max_attempts(attempts),
            );
        }
        let client = block(py, move || Client::connect(&addr, cfg))?;
        Ok(NativeClient {
            client,
            limits: Mutex::new(None),
        })
    }

    #[getter]
    fn addr(&self) -> String {
        self.client.addr().to_string()
    }

    #[getter]
    fn request_timeout(&self) -> f64 {
        self.client.config().request_timeout.as_secs_f64()
    }

    #[getter]
    fn event_queue_depth(&self) -> usize {
        self.client.config().event_queue_depth
    }

    fn state(&self) -> String {
        match self.client.state() {
            ConnectionState::Connected => "connected".into(),
            ConnectionState::Reconnecting { .. } => "reconnecting".into(),
            ConnectionState::Closed { .. } => "closed".into(),
            ConnectionState::NotConnected => "not_connected".into(),
            other => format!("{other:?}").to_lowercase(),
        }
    }

    fn close(&self, py: Python<'_>) {
        let c = self.client.clone();
        py.detach(move || c.close());
    }

    fn last_seq(&self) -> u64 {
        self.client.last_seq()
    }

    /// Returns (reply message bytes, additional data, seq).
    #[pyo3(signature = (msg, data, timeout, checked))]
    fn request(
        &self,
        py: Python<'_>,
        msg: &[u8],
        data: &[u8],
        timeout: Option<f64>,
        checked: bool,
    ) -> PyResult<(Py<PyBytes>, Py<PyBytes>, u64)> {
        let m = decode(py, msg)?;
        let t = self.t(py, timeout)?;
        let c = &self.client;
        let reply = block(py, || {
            let r = c.request_with_data(m, data, t)?;
            if checked {
                c.check_status(&r)?;
            }
            Ok(r)
        })?;
        Ok((
            PyBytes::new(py, &reply.message.to_bytes()).unbind(),
            PyBytes::new(py, &reply.data).unbind(),
            reply.seq,
        ))
    }

    /// Sends without waiting; returns the sequence number before the send.
    fn send(&self, py: Python<'_>, msg: &[u8], data: &[u8]) -> PyResult<u64> {
        let m = decode(py, msg)?;
        block(py, || self.client.send_with_data(m, data))
    }

    /// The first event of `code` after `after`.
    #[pyo3(signature = (code, after, timeout))]
    fn wait_for_code(
        &self,
        py: Python<'_>,
        code: u32,
        after: u64,
        timeout: Option<f64>,
    ) -> PyResult<Py<PyAny>> {
        let t = self.t(py, timeout)?;
        let ev = block(py, || {
            self.client
                .wait_for_event(|e| e.code() == Some(CommandCode(code)), after, t)
        })?;
        event_tuple(py, &ev)
    }

    /// A subscription filtered by the core (connection events always pass).
    #[pyo3(signature = (codes=None))]
    fn subscribe(&self, codes: Option<Vec<u32>>) -> NativeSubscription {
        let sub = match codes {
            None => self.client.subscribe(),
            Some(c) => {
                let codes: Vec<CommandCode> = c.into_iter().map(CommandCode).collect();
                self.client.subscribe_to(&codes)
            }
        };
        NativeSubscription::new(sub)
    }

    /// A router: events for Python callbacks, filtered by a code set that
    /// can change, in a queue of `depth`; and raw replies (see `router.rs`).
    fn router(&self, py: Python<'_>, depth: usize) -> PyResult<NativeRouter> {
        if depth == 0 {
            return Err(invalid(
                py,
                "the callback queue depth must be at least 1".into(),
            ));
        }
        NativeRouter::start(&self.client, depth).map_err(|e| crate::util::to_py(py, e))
    }

    fn stats(&self, py: Python<'_>) -> PyResult<Py<PyDict>> {
        let s = self.client.stats();
        let d = PyDict::new(py);
        d.set_item("messages_sent", s.messages_sent)?;
        d.set_item("messages_received", s.messages_received)?;
        d.set_item("replies_matched", s.replies_matched)?;
        d.set_item("events_delivered", s.events_delivered)?;
        d.set_item("events_dropped", s.events_dropped)?;
        d.set_item("late_replies_discarded", s.late_replies_discarded)?;
        d.set_item("unmatched_replies", s.unmatched_replies)?;
        d.set_item("echo_mismatches", s.echo_mismatches)?;
        d.set_item("timeouts", s.timeouts)?;
        d.set_item("disconnects", s.disconnects)?;
        d.set_item("reconnect_attempts", s.reconnect_attempts)?;
        d.set_item("reconnects", s.reconnects)?;
        d.set_item("link_resyncs", s.link_resyncs)?;
        d.set_item("callback_panics", s.callback_panics)?;
        d.set_item("last_error", s.last_error)?;
        Ok(d.unbind())
    }

    // ---- stage

    #[pyo3(signature = (axis_, timeout))]
    fn stage_position(&self, py: Python<'_>, axis_: i32, timeout: Option<f64>) -> PyResult<f64> {
        let (a, t) = (axis(py, axis_)?, self.t(py, timeout)?);
        block(py, || self.stage(t).position(a))
    }

    #[pyo3(signature = (timeout))]
    fn stage_positions(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<[f64; 4]> {
        let t = self.t(py, timeout)?;
        let p = block(py, || self.stage(t).positions())?;
        Ok([p.x_mm, p.y_mm, p.z_mm, p.r_deg])
    }

    #[pyo3(signature = (axis_, target, timeout))]
    fn stage_move_to(
        &self,
        py: Python<'_>,
        axis_: i32,
        target: f64,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let (a, t) = (axis(py, axis_)?, self.t(py, timeout)?);
        block(py, || self.stage(t).move_to(a, target))
    }

    #[pyo3(signature = (axis_, target, timeout, motion_timeout))]
    fn stage_move_and_wait(
        &self,
        py: Python<'_>,
        axis_: i32,
        target: f64,
        timeout: Option<f64>,
        motion_timeout: Option<f64>,
    ) -> PyResult<StopTuple> {
        let (a, t, mt) = (
            axis(py, axis_)?,
            self.t(py, timeout)?,
            secs(py, motion_timeout)?,
        );
        let stage = self.stage(t).motion_timeout(mt);
        let s = block(py, || stage.move_and_wait(a, target))?;
        Ok(stop_tuple(&s))
    }

    #[pyo3(signature = (targets, timeout, motion_timeout))]
    fn stage_move_all_and_wait(
        &self,
        py: Python<'_>,
        targets: Vec<(i32, f64)>,
        timeout: Option<f64>,
        motion_timeout: Option<f64>,
    ) -> PyResult<Vec<StopTuple>> {
        let mut ts = Vec::with_capacity(targets.len());
        for (a, v) in targets {
            ts.push((axis(py, a)?, v));
        }
        let (t, mt) = (self.t(py, timeout)?, secs(py, motion_timeout)?);
        let stage = self.stage(t).motion_timeout(mt);
        let stops = block(py, || stage.move_all_and_wait(&ts))?;
        Ok(stops.iter().map(stop_tuple).collect())
    }

    #[pyo3(signature = (timeout))]
    fn stage_halt(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let t = self.t(py, timeout)?;
        block(py, || self.stage(t).halt())
    }

    #[pyo3(signature = (timeout, motion_timeout))]
    fn stage_home_and_wait(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
        motion_timeout: Option<f64>,
    ) -> PyResult<Vec<StopTuple>> {
        let (t, mt) = (self.t(py, timeout)?, secs(py, motion_timeout)?);
        let stage = self.stage(t).motion_timeout(mt);
        let stops = block(py, || stage.home_and_wait())?;
        Ok(stops.iter().map(stop_tuple).collect())
    }

    #[pyo3(signature = (axis_, per_second, timeout))]
    fn stage_set_velocity(
        &self,
        py: Python<'_>,
        axis_: i32,
        per_second: f64,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let (a, t) = (axis(py, axis_)?, self.t(py, timeout)?);
        block(py, || self.stage(t).set_velocity(a, per_second))
    }

    // ---- camera

    #[pyo3(signature = (timeout))]
    fn camera_image_size(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<(u32, u32)> {
        let t = self.t(py, timeout)?;
        let s = block(py, || self.client.camera().timeout(t).image_size())?;
        Ok((s.width, s.height))
    }

    #[pyo3(signature = (timeout))]
    fn camera_pixel_size_mm(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<f64> {
        let t = self.t(py, timeout)?;
        block(py, || self.client.camera().timeout(t).pixel_fov_mm())
    }

    #[pyo3(signature = (timeout))]
    fn camera_exposure_us(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<u32> {
        let t = self.t(py, timeout)?;
        block(py, || self.client.camera().timeout(t).exposure_us())
    }

    #[pyo3(signature = (us, timeout))]
    fn camera_set_exposure_us(
        &self,
        py: Python<'_>,
        us: u32,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let t = self.t(py, timeout)?;
        block(py, || self.client.camera().timeout(t).set_exposure_us(us))
    }

    #[pyo3(signature = (timeout))]
    fn camera_snapshot(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<FrameTuple> {
        let t = self.t(py, timeout)?;
        let f = block(py, || self.client.camera().timeout(t).snapshot())?;
        Ok(frame_tuple(py, &f))
    }

    #[pyo3(signature = (timeout))]
    fn camera_live_start(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<NativeLive> {
        let t = self.t(py, timeout)?;
        let stream = block(py, || self.client.camera().timeout(t).live_start())?;
        Ok(NativeLive::new(stream))
    }

    #[pyo3(signature = (timeout))]
    fn camera_live_stop(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let t = self.t(py, timeout)?;
        block(py, || self.client.camera().timeout(t).live_stop())
    }

    /// The newest frame of the open live stream, if any (never blocks).
    fn camera_latest_frame(&self, py: Python<'_>) -> Option<FrameTuple> {
        let live = self.client.live_if_open()?;
        live.latest_frame().map(|f| frame_tuple(py, &f))
    }

    // ---- lasers, LED, filter wheel

    #[pyo3(signature = (laser, timeout))]
    fn laser_level(&self, py: Python<'_>, laser: u8, timeout: Option<f64>) -> PyResult<f64> {
        let t = self.t(py, timeout)?;
        block(py, || self.client.lasers().timeout(t).level_percent(laser))
    }

    #[pyo3(signature = (laser, percent, timeout))]
    fn laser_set_level(
        &self,
        py: Python<'_>,
        laser: u8,
        percent: f64,
        timeout: Option<f64>,
    ) -> PyResult<f64> {
        let t = self.t(py, timeout)?;
        block(py, || {
            self.client
                .lasers()
                .timeout(t)
                .set_level_percent(laser, percent)
        })
    }

    #[pyo3(signature = (laser, on, timeout))]
    fn laser_preview(
        &self,
        py: Python<'_>,
        laser: u8,
        on: bool,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let t = self.t(py, timeout)?;
        let lasers = self.client.lasers().timeout(t);
        block(py, || {
            if on {
                lasers.preview_enable(laser)
            } else {
                lasers.preview_disable(laser)
            }
        })
    }

    #[pyo3(signature = (timeout))]
    fn laser_all_off(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let t = self.t(py, timeout)?;
        block(py, || self.client.lasers().timeout(t).all_off())
    }

    #[pyo3(signature = (colour_, percent, timeout))]
    fn led_set_percent(
        &self,
        py: Python<'_>,
        colour_: i32,
        percent: f64,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let (c, t) = (colour(py, colour_)?, self.t(py, timeout)?);
        block(py, || self.client.led().timeout(t).set_percent(c, percent))
    }

    #[pyo3(signature = (colour_, level, timeout))]
    fn led_set_level(
        &self,
        py: Python<'_>,
        colour_: i32,
        level: u32,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let (c, t) = (colour(py, colour_)?, self.t(py, timeout)?);
        block(py, || self.client.led().timeout(t).set(c, level))
    }

    #[pyo3(signature = (on, timeout))]
    fn led_preview(&self, py: Python<'_>, on: bool, timeout: Option<f64>) -> PyResult<()> {
        let t = self.t(py, timeout)?;
        let led = self.client.led().timeout(t);
        block(py, || {
            if on {
                led.preview_enable()
            } else {
                led.preview_disable()
            }
        })
    }

    #[pyo3(signature = (timeout))]
    fn filter_position(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<u8> {
        let t = self.t(py, timeout)?;
        block(py, || self.client.filter_wheel().timeout(t).position())
    }

    #[pyo3(signature = (position, timeout))]
    fn filter_set_position(
        &self,
        py: Python<'_>,
        position: u8,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let t = self.t(py, timeout)?;
        block(py, || {
            self.client.filter_wheel().timeout(t).set_position(position)
        })
    }

    // ---- system, settings, workflows

    /// The state's wire value (0 idle, 1 busy, 2 error, other as sent).
    #[pyo3(signature = (timeout))]
    fn system_state(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<i32> {
        let t = self.t(py, timeout)?;
        let s = block(py, || self.client.system().timeout(t).state())?;
        Ok(s.wire())
    }

    #[pyo3(signature = (timeout))]
    fn system_set_idle(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let t = self.t(py, timeout)?;
        block(py, || self.client.system().timeout(t).set_idle())
    }

    #[pyo3(signature = (timeout))]
    fn system_wait_until_idle(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let t = secs(py, timeout)?;
        block(py, || self.client.system().wait_until_idle(t))
    }

    /// Returns (raw text bytes, section tree, soft limits per axis, home per
    /// axis, microscope name).
    #[allow(clippy::type_complexity)]
    #[pyo3(signature = (timeout))]
    fn settings_load(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
    ) -> PyResult<(
        Py<PyBytes>,
        Vec<Py<PyAny>>,
        HashMap<&'static str, (f64, f64)>,
        HashMap<&'static str, f64>,
        Option<String>,
    )> {
        let t = self.t(py, timeout)?;
        let s = block(py, || self.client.settings().timeout(t).load())?;
        let tree = s
            .sections()
            .iter()
            .map(|c| section_tuple(py, c))
            .collect::<PyResult<Vec<_>>>()?;
        let mut limits = HashMap::new();
        let mut home = HashMap::new();
        for a in Axis::ALL {
            if let Some(l) = s.soft_limits(a) {
                limits.insert(a.name(), l);
            }
            if let Some(h) = s.home(a) {
                home.insert(a.name(), h);
            }
        }
        Ok((
            PyBytes::new(py, s.raw().as_bytes()).unbind(),
            tree,
            limits,
            home,
            s.microscope_name().map(str::to_string),
        ))
    }

    /// Starts a workflow. The library checks the file first (the rules of
    /// `workflow check`, and the soft limits if they are on); nothing is sent
    /// if it fails.
    #[pyo3(signature = (file, timeout))]
    fn workflow_start(
        &self,
        py: Python<'_>,
        file: &[u8],
        timeout: Option<f64>,
    ) -> PyResult<NativeRun> {
        let t = self.t(py, timeout)?;
        let run = block(py, || {
            let wf = Workflow::from_bytes(file.to_vec())?;
            self.workflows(t).start(&wf)
        })?;
        Ok(NativeRun::new(run))
    }

    /// Checks a workflow as a start would, against the instrument's own soft
    /// limits (read now); returns them.
    #[pyo3(signature = (file, timeout))]
    fn workflow_check(
        &self,
        py: Python<'_>,
        file: &[u8],
        timeout: Option<f64>,
    ) -> PyResult<LimitsTuple> {
        let t = self.t(py, timeout)?;
        let l = block(py, || {
            let wf = Workflow::from_bytes(file.to_vec())?;
            self.client.workflows().timeout(t).check(&wf)
        })?;
        Ok(limits_tuple(&l))
    }

    /// The stage's soft limits from the instrument's settings, with the
    /// camera's field of view.
    #[pyo3(signature = (timeout))]
    fn settings_soft_limits(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<LimitsTuple> {
        let t = self.t(py, timeout)?;
        let l = block(py, || self.client.settings().timeout(t).soft_limits())?;
        Ok(limits_tuple(&l))
    }

    /// Turns the soft-limit checks of moves and workflow starts on (with
    /// these limits) or off (None).
    #[pyo3(signature = (limits))]
    fn set_soft_limits(&self, py: Python<'_>, limits: Option<LimitsArg>) -> PyResult<()> {
        let l = limits.map(|a| limits_from(py, a)).transpose()?;
        *self.limits.lock().unwrap_or_else(|p| p.into_inner()) = l;
        Ok(())
    }

    fn soft_limits(&self) -> Option<LimitsTuple> {
        self.limits().map(|l| limits_tuple(&l))
    }

    #[pyo3(signature = (timeout))]
    fn workflow_stop(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let t = self.t(py, timeout)?;
        block(py, || self.client.workflows().timeout(t).stop())
    }
}
