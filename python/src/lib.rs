//! `flamingo_client._native`: the thin PyO3 layer between the Rust library
//! and the Python package `flamingo_client`.
//!
//! Everything Pythonic (classes, dataclasses, numpy arrays, iterators,
//! context managers, the compatibility client) lives in the Python package;
//! this module only moves plain values across and keeps two rules:
//!
//! - every call that can block releases the GIL (`py.allow_threads`), so
//!   other Python threads (a GUI's, a progress ticker) keep running;
//! - every library error becomes an instance of the matching class of
//!   `flamingo_client.errors`, looked up by name at raise time.
//!
//! Messages cross as their 128-byte wire form (the Python package packs and
//! unpacks them with `struct`), frames as one `bytearray` copy of the pixel
//! bytes (numpy reads it with `frombuffer`, no per-pixel loop).

// PyO3 0.22's #[pymethods] expansion converts every `PyResult` return value
// into itself, which newer clippy flags in the generated code, not ours.
#![allow(clippy::useless_conversion)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flamingo_client::codec::{Axis, CommandCode, Message, CATALOGUE, MESSAGE_LEN};
use flamingo_client::devices::{
    LedColour, MotionStop, Section, Workflow, WorkflowRun, WorkflowSummary, WorkflowUpdate,
};
use flamingo_client::live::{Frame, LiveStream};
use flamingo_client::sim::{Faults, SimConfig, Simulator};
use flamingo_client::{
    CallbackId, Client, ClientConfig, ConnectionState, Error, Event, EventKind, ReconnectPolicy,
};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList};

/// Stands for "no deadline" until the library accepts `Duration::MAX`
/// everywhere: far beyond any session, small enough for `Instant + d`.
const FOREVER: Duration = Duration::from_secs(365 * 86_400);

mod recording;

type R<T> = flamingo_client::Result<T>;

// ---------------------------------------------------------------- errors

/// The `flamingo_client.errors` class for a library error, and the
/// command code and status for refusals.
fn error_class(e: &Error) -> (&'static str, Option<(u32, u32)>) {
    match e {
        Error::Timeout { .. } => ("FlamingoTimeoutError", None),
        Error::Disconnected { .. } => ("DisconnectedError", None),
        Error::Refused { code, status, .. } => ("RefusedError", Some((code.0, *status))),
        Error::Busy { code, status, .. } => ("BusyError", Some((code.0, *status))),
        Error::Protocol { .. } => ("ProtocolError", None),
        Error::TooLarge { .. } => ("TooLargeError", None),
        Error::InvalidArgument { .. } => ("InvalidArgumentError", None),
        Error::Connect { .. } => ("ConnectError", None),
        Error::Io(_) => ("FlamingoIOError", None),
        _ => ("FlamingoError", None),
    }
}

fn to_py(py: Python<'_>, e: Error) -> PyErr {
    let (name, refusal) = error_class(&e);
    let build = || -> PyResult<PyErr> {
        let cls = py.import_bound("flamingo_client.errors")?.getattr(name)?;
        let inst = cls.call1((e.to_string(),))?;
        if let Some((code, status)) = refusal {
            inst.setattr("code", code)?;
            inst.setattr("status", status)?;
        }
        Ok(PyErr::from_value_bound(inst))
    };
    build().unwrap_or_else(|import_failed| import_failed)
}

/// Runs a blocking library call with the GIL released.
fn block<T: Send>(py: Python<'_>, f: impl FnOnce() -> R<T> + Send) -> PyResult<T> {
    py.allow_threads(f).map_err(|e| to_py(py, e))
}

fn invalid(py: Python<'_>, what: String) -> PyErr {
    to_py(py, Error::invalid(what))
}

/// A timeout in seconds from Python: `None` means no deadline.
fn secs(py: Python<'_>, s: Option<f64>) -> PyResult<Duration> {
    match s {
        None => Ok(FOREVER),
        Some(v) if v.is_finite() && v >= 0.0 => Ok(Duration::from_secs_f64(v).min(FOREVER)),
        Some(v) => Err(invalid(
            py,
            format!("a timeout must be a non-negative number of seconds or None, not {v}"),
        )),
    }
}

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

fn decode(py: Python<'_>, bytes: &[u8]) -> PyResult<Message> {
    let arr: &[u8; MESSAGE_LEN] = bytes.try_into().map_err(|_| {
        invalid(
            py,
            format!("a message is {MESSAGE_LEN} bytes, not {}", bytes.len()),
        )
    })?;
    Message::decode(arr).map_err(|e| invalid(py, format!("not a message: {e}")))
}

// ---------------------------------------------------------------- conversions

type FrameTuple = (u32, u32, u32, u32, u32, u64, Py<PyByteArray>);

/// (width, height, frame_number, timestamp_ms, exposure_us, sequence, pixel bytes)
fn frame_tuple(py: Python<'_>, f: &Frame) -> FrameTuple {
    (
        f.width(),
        f.height(),
        f.frame_number(),
        f.timestamp_ms(),
        f.exposure_us(),
        f.sequence(),
        PyByteArray::new_bound(py, f.as_bytes()).unbind(),
    )
}

fn stop_tuple(s: &MotionStop) -> (&'static str, f64, u32, u64) {
    (s.axis.name(), s.position, s.status, s.seq)
}

fn event_tuple(py: Python<'_>, ev: &Event) -> PyResult<PyObject> {
    let d = PyDict::new_bound(py);
    match &ev.kind {
        EventKind::MotionStopped {
            axis,
            position,
            status,
            ..
        } => {
            d.set_item("axis", axis.name())?;
            d.set_item("position", position)?;
            d.set_item("status", status)?;
        }
        EventKind::StackComplete {
            acquired,
            expected,
            errors,
            duration_us,
            ..
        } => {
            d.set_item("acquired", acquired)?;
            d.set_item("expected", expected)?;
            d.set_item("errors", errors)?;
            d.set_item("duration_us", duration_us)?;
        }
        EventKind::GaugeSize { total, .. } => d.set_item("total", total)?,
        EventKind::GaugeValue { current, total, .. } => {
            d.set_item("current", current)?;
            d.set_item("total", total)?;
        }
        EventKind::ImagesSaved { count, .. } => d.set_item("count", count)?,
        EventKind::LaserLevel {
            laser,
            level_percent,
            ..
        } => {
            d.set_item("laser", laser)?;
            d.set_item("level_percent", level_percent)?;
        }
        EventKind::Disconnected { reason, .. } | EventKind::Closed { reason, .. } => {
            d.set_item("reason", reason)?
        }
        EventKind::Reconnecting { attempt, .. } | EventKind::Reconnected { attempt, .. } => {
            d.set_item("attempt", attempt)?
        }
        _ => {}
    }
    let msg = ev
        .message
        .map(|m| PyBytes::new_bound(py, &m.to_bytes()).into_any().unbind());
    let data = ev
        .data
        .as_ref()
        .map(|b| PyBytes::new_bound(py, b).into_any().unbind());
    Ok((ev.kind.name(), ev.seq, msg, data, d).into_py(py))
}

fn summary_dict<'py>(py: Python<'py>, s: &WorkflowSummary) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new_bound(py);
    d.set_item("images_acquired", s.images_acquired)?;
    d.set_item("images_expected", s.images_expected)?;
    d.set_item("errors", s.errors)?;
    d.set_item("images_saved", s.images_saved)?;
    d.set_item("duration", s.duration.as_secs_f64())?;
    d.set_item("acknowledged", s.acknowledged)?;
    d.set_item("stopped", s.stopped)?;
    d.set_item("complete", s.is_complete())?;
    let stacks: Vec<(i32, i32, i32, f64)> = s
        .stacks
        .iter()
        .map(|st| {
            (
                st.acquired,
                st.expected,
                st.errors,
                st.duration.as_secs_f64(),
            )
        })
        .collect();
    d.set_item("stacks", stacks)?;
    Ok(d)
}

fn update_tuple(py: Python<'_>, u: &WorkflowUpdate) -> PyResult<PyObject> {
    let d = PyDict::new_bound(py);
    let name = match u {
        WorkflowUpdate::Acknowledged => "acknowledged",
        WorkflowUpdate::Running => "running",
        WorkflowUpdate::GaugeSize { total, .. } => {
            d.set_item("total", total)?;
            "gauge_size"
        }
        WorkflowUpdate::Progress { current, total, .. } => {
            d.set_item("current", current)?;
            d.set_item("total", total)?;
            "progress"
        }
        WorkflowUpdate::LaserLevel {
            laser,
            level_percent,
            ..
        } => {
            d.set_item("laser", laser)?;
            d.set_item("level_percent", level_percent)?;
            "laser_level"
        }
        WorkflowUpdate::StackComplete(st) => {
            d.set_item("acquired", st.acquired)?;
            d.set_item("expected", st.expected)?;
            d.set_item("errors", st.errors)?;
            d.set_item("duration", st.duration.as_secs_f64())?;
            "stack_complete"
        }
        WorkflowUpdate::ImagesSaved { count, .. } => {
            d.set_item("count", count)?;
            "images_saved"
        }
        WorkflowUpdate::Finished(s) => {
            d.set_item("summary", summary_dict(py, s)?)?;
            "finished"
        }
        _ => "other",
    };
    Ok((name, d).into_py(py))
}

fn section_tuple(py: Python<'_>, s: &Section) -> PyObject {
    let entries: Vec<(String, String)> = s
        .entries
        .iter()
        .map(|e| (e.key.clone(), e.value.clone()))
        .collect();
    let subs: Vec<PyObject> = s.sections.iter().map(|c| section_tuple(py, c)).collect();
    (s.name.clone(), entries, subs).into_py(py)
}

// ---------------------------------------------------------------- client

/// One connection (`flamingo_client.Client` wraps it).
#[pyclass(module = "flamingo_client._native", frozen)]
struct NativeClient {
    client: Client,
    callbacks: Mutex<HashMap<u64, CallbackId>>,
    next_callback: AtomicU64,
}

impl NativeClient {
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
    /// the GIL released (a dispatcher thread may be waiting for it).
    fn drop(&mut self) {
        let c = self.client.clone();
        Python::with_gil(|py| py.allow_threads(move || c.close()));
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
            callbacks: Mutex::new(HashMap::new()),
            next_callback: AtomicU64::new(1),
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
        py.allow_threads(move || c.close());
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
            PyBytes::new_bound(py, &reply.message.to_bytes()).unbind(),
            PyBytes::new_bound(py, &reply.data).unbind(),
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
    ) -> PyResult<PyObject> {
        let t = self.t(py, timeout)?;
        let ev = block(py, || {
            self.client
                .wait_for_event(|e| e.code() == Some(CommandCode(code)), after, t)
        })?;
        event_tuple(py, &ev)
    }

    #[pyo3(signature = (codes=None))]
    fn subscribe(&self, codes: Option<Vec<u32>>) -> NativeSubscription {
        let sub = match codes {
            None => self.client.subscribe(),
            Some(c) => {
                let codes: Vec<CommandCode> = c.into_iter().map(CommandCode).collect();
                self.client.subscribe_to(&codes)
            }
        };
        NativeSubscription {
            sub: Mutex::new(Some(sub)),
        }
    }

    /// Registers `callback(event_tuple)`, run on the library's dispatcher
    /// thread with the GIL taken there (never under a library lock). An
    /// exception is reported with `sys.unraisablehook` and does not stop
    /// later events.
    fn on_event(&self, py: Python<'_>, callback: PyObject) -> PyResult<u64> {
        let id = self
            .client
            .on_event(move |ev| {
                Python::with_gil(|py| {
                    let r = event_tuple(py, ev).and_then(|t| callback.call1(py, (t,)));
                    if let Err(e) = r {
                        e.write_unraisable_bound(py, None);
                    }
                })
            })
            .map_err(|e| to_py(py, e))?;
        let key = self.next_callback.fetch_add(1, Ordering::Relaxed);
        self.callbacks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, id);
        Ok(key)
    }

    fn remove_callback(&self, key: u64) -> bool {
        let id = self
            .callbacks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        id.is_some_and(|id| self.client.remove_callback(id))
    }

    fn stats(&self, py: Python<'_>) -> PyResult<PyObject> {
        let s = self.client.stats();
        let d = PyDict::new_bound(py);
        d.set_item("messages_sent", s.messages_sent)?;
        d.set_item("messages_received", s.messages_received)?;
        d.set_item("replies_matched", s.replies_matched)?;
        d.set_item("events_delivered", s.events_delivered)?;
        d.set_item("events_dropped", s.events_dropped)?;
        d.set_item("late_replies_discarded", s.late_replies_discarded)?;
        d.set_item("timeouts", s.timeouts)?;
        d.set_item("disconnects", s.disconnects)?;
        d.set_item("reconnects", s.reconnects)?;
        d.set_item("callback_panics", s.callback_panics)?;
        Ok(d.into_py(py))
    }

    // ---- stage

    #[pyo3(signature = (axis_, timeout))]
    fn stage_position(&self, py: Python<'_>, axis_: i32, timeout: Option<f64>) -> PyResult<f64> {
        let (a, t) = (axis(py, axis_)?, self.t(py, timeout)?);
        block(py, || self.client.stage().timeout(t).position(a))
    }

    #[pyo3(signature = (timeout))]
    fn stage_positions(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<[f64; 4]> {
        let t = self.t(py, timeout)?;
        let p = block(py, || self.client.stage().timeout(t).positions())?;
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
        block(py, || self.client.stage().timeout(t).move_to(a, target))
    }

    #[pyo3(signature = (axis_, target, timeout, motion_timeout))]
    fn stage_move_and_wait(
        &self,
        py: Python<'_>,
        axis_: i32,
        target: f64,
        timeout: Option<f64>,
        motion_timeout: Option<f64>,
    ) -> PyResult<(&'static str, f64, u32, u64)> {
        let (a, t, mt) = (
            axis(py, axis_)?,
            self.t(py, timeout)?,
            secs(py, motion_timeout)?,
        );
        let stage = self.client.stage().timeout(t).motion_timeout(mt);
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
    ) -> PyResult<Vec<(&'static str, f64, u32, u64)>> {
        let mut ts = Vec::with_capacity(targets.len());
        for (a, v) in targets {
            ts.push((axis(py, a)?, v));
        }
        let (t, mt) = (self.t(py, timeout)?, secs(py, motion_timeout)?);
        let stage = self.client.stage().timeout(t).motion_timeout(mt);
        let stops = block(py, || stage.move_all_and_wait(&ts))?;
        Ok(stops.iter().map(stop_tuple).collect())
    }

    #[pyo3(signature = (timeout))]
    fn stage_halt(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let t = self.t(py, timeout)?;
        block(py, || self.client.stage().timeout(t).halt())
    }

    #[pyo3(signature = (timeout, motion_timeout))]
    fn stage_home_and_wait(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
        motion_timeout: Option<f64>,
    ) -> PyResult<Vec<(&'static str, f64, u32, u64)>> {
        let (t, mt) = (self.t(py, timeout)?, secs(py, motion_timeout)?);
        let stage = self.client.stage().timeout(t).motion_timeout(mt);
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
        block(py, || {
            self.client.stage().timeout(t).set_velocity(a, per_second)
        })
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
        Ok(NativeLive { stream })
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
        Vec<PyObject>,
        HashMap<&'static str, (f64, f64)>,
        HashMap<&'static str, f64>,
        Option<String>,
    )> {
        let t = self.t(py, timeout)?;
        let s = block(py, || self.client.settings().timeout(t).load())?;
        let tree = s.sections().iter().map(|c| section_tuple(py, c)).collect();
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
            PyBytes::new_bound(py, s.raw().as_bytes()).unbind(),
            tree,
            limits,
            home,
            s.microscope_name().map(str::to_string),
        ))
    }

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
            self.client.workflows().timeout(t).start(&wf)
        })?;
        Ok(NativeRun {
            run: Mutex::new(run),
        })
    }

    #[pyo3(signature = (timeout))]
    fn workflow_stop(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let t = self.t(py, timeout)?;
        block(py, || self.client.workflows().timeout(t).stop())
    }
}

// ---------------------------------------------------------------- subscriptions, live, runs

/// An event subscription; `status` in `recv`'s answer: 0 event, 1 timeout,
/// 2 closed (the client closed and every queued event was taken).
#[pyclass(module = "flamingo_client._native", frozen)]
struct NativeSubscription {
    sub: Mutex<Option<flamingo_client::Subscription>>,
}

#[pymethods]
impl NativeSubscription {
    #[pyo3(signature = (timeout))]
    fn recv(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<(u8, Option<PyObject>)> {
        let t = secs(py, timeout)?;
        let rx = match self.sub.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(s) => s.receiver().clone(),
            None => return Ok((2, None)),
        };
        let got = py.allow_threads(|| {
            if t.is_zero() {
                rx.try_recv().map_err(|e| e.is_disconnected())
            } else {
                rx.recv_timeout(t).map_err(|e| e.is_disconnected())
            }
        });
        match got {
            Ok(ev) => Ok((0, Some(event_tuple(py, &ev)?))),
            Err(false) => Ok((1, None)),
            Err(true) => Ok((2, None)),
        }
    }

    fn dropped(&self) -> u64 {
        self.sub
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or(0, |s| s.dropped())
    }

    fn close(&self) {
        self.sub.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

/// The live stream.
#[pyclass(module = "flamingo_client._native", frozen)]
struct NativeLive {
    stream: Arc<LiveStream>,
}

#[pymethods]
impl NativeLive {
    #[pyo3(signature = (timeout))]
    fn next_frame(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<FrameTuple> {
        let t = secs(py, timeout)?;
        let f = block(py, || self.stream.next_frame(t))?;
        Ok(frame_tuple(py, &f))
    }

    fn latest_frame(&self, py: Python<'_>) -> Option<FrameTuple> {
        self.stream.latest_frame().map(|f| frame_tuple(py, &f))
    }

    fn is_finished(&self) -> bool {
        self.stream.is_finished()
    }

    /// (frames, bytes, dropped)
    fn stats(&self) -> (u64, u64, u64) {
        let s = self.stream.stats();
        (s.frames, s.bytes, s.dropped)
    }
}

/// A running workflow.
#[pyclass(module = "flamingo_client._native", frozen)]
struct NativeRun {
    run: Mutex<WorkflowRun>,
}

impl NativeRun {
    fn lock(&self) -> std::sync::MutexGuard<'_, WorkflowRun> {
        self.run.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Blocking waits on a run hold its lock for at most this long at a time, so
/// another thread (a GUI's stop button, a progress poll) gets it promptly.
const RUN_SLICE: Duration = Duration::from_millis(50);

#[pymethods]
impl NativeRun {
    /// The next update within `timeout` (None if nothing happened, or after the last).
    #[pyo3(signature = (timeout))]
    fn next_update(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<PyObject>> {
        let t = secs(py, timeout)?;
        let got = py.allow_threads(|| {
            let deadline = Instant::now() + t;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let mut run = self.lock();
                let r = if left.is_zero() {
                    run.try_next()
                } else {
                    run.next_timeout(left.min(RUN_SLICE))
                };
                if r.is_some() || left.is_zero() || run.is_finished() {
                    return r;
                }
            }
        });
        match got {
            None => Ok(None),
            Some(Ok(u)) => Ok(Some(update_tuple(py, &u)?)),
            Some(Err(e)) => Err(to_py(py, e)),
        }
    }

    /// The summary once the run ended, or None if `timeout` passed first
    /// (the run goes on).
    #[pyo3(signature = (timeout))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<PyObject>> {
        let t = secs(py, timeout)?;
        let s = block(py, || {
            let deadline = Instant::now() + t;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let mut run = self.lock();
                match run.wait(left.min(RUN_SLICE)) {
                    Ok(s) => return Ok(Some(s)),
                    Err(e) if e.is_timeout() && !run.is_finished() => {
                        if left <= RUN_SLICE {
                            return Ok(None);
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
        })?;
        s.map(|s| Ok(summary_dict(py, &s)?.into_py(py))).transpose()
    }

    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        block(py, || self.lock().stop())
    }

    fn is_finished(&self, py: Python<'_>) -> bool {
        py.allow_threads(|| self.lock().is_finished())
    }

    fn progress(&self, py: Python<'_>) -> Option<(i32, i32)> {
        py.allow_threads(|| self.lock().progress())
    }
}

// ---------------------------------------------------------------- simulator

/// The loopback simulator.
#[pyclass(module = "flamingo_client._native", frozen)]
struct NativeSimulator {
    sim: Simulator,
}

#[pymethods]
impl NativeSimulator {
    #[new]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (width, height, live_fps, plane_interval, stage_velocity, laser_set_acks, port, settings_text))]
    fn new(
        py: Python<'_>,
        width: u32,
        height: u32,
        live_fps: f64,
        plane_interval: f64,
        stage_velocity: (f64, f64),
        laser_set_acks: bool,
        port: u16,
        settings_text: Option<Vec<u8>>,
    ) -> PyResult<Self> {
        let mut cfg = SimConfig::default()
            .image_size(width, height)
            .live_fps(live_fps)
            .plane_interval(secs(py, Some(plane_interval))?)
            .stage_velocity(stage_velocity.0, stage_velocity.1)
            .laser_set_acks(laser_set_acks)
            .port(port);
        if let Some(text) = settings_text {
            cfg = cfg.settings_text(text);
        }
        let sim = py
            .allow_threads(|| Simulator::start(cfg))
            .map_err(|e| to_py(py, Error::Io(e)))?;
        Ok(NativeSimulator { sim })
    }

    #[getter]
    fn addr(&self) -> String {
        self.sim.addr().to_string()
    }

    #[getter]
    fn live_addr(&self) -> String {
        self.sim.live_addr().to_string()
    }

    /// Replaces the active faults. Durations in seconds.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (delay, never_answer, status_override, error_state, close_after_messages, drop_events, stop_reading, answer_late))]
    fn set_faults(
        &self,
        py: Python<'_>,
        delay: HashMap<u32, f64>,
        never_answer: Vec<u32>,
        status_override: HashMap<u32, u32>,
        error_state: bool,
        close_after_messages: Option<u64>,
        drop_events: Vec<u32>,
        stop_reading: Option<f64>,
        answer_late: Option<(u32, f64)>,
    ) -> PyResult<()> {
        let mut f = Faults::default();
        for (c, s) in delay {
            f.delay.insert(CommandCode(c), secs(py, Some(s))?);
        }
        f.never_answer = never_answer.into_iter().map(CommandCode).collect();
        f.status_override = status_override
            .into_iter()
            .map(|(c, s)| (CommandCode(c), s))
            .collect();
        f.error_state = error_state;
        f.close_after_messages = close_after_messages;
        f.drop_events = drop_events.into_iter().map(CommandCode).collect();
        if let Some(s) = stop_reading {
            f.stop_reading = Some(secs(py, Some(s))?);
        }
        if let Some((c, s)) = answer_late {
            f.answer_late = Some((CommandCode(c), secs(py, Some(s))?));
        }
        self.sim.set_faults(f);
        Ok(())
    }

    fn stop(&self, py: Python<'_>) {
        py.allow_threads(|| self.sim.stop());
    }

    fn received_codes(&self) -> Vec<u32> {
        self.sim.received_codes().into_iter().map(|c| c.0).collect()
    }

    fn open_connections(&self) -> usize {
        self.sim.open_connections()
    }

    fn stage_positions(&self) -> [f64; 4] {
        self.sim.stage_positions()
    }

    fn laser_level(&self, laser: i32) -> Option<f64> {
        self.sim.laser_level(laser)
    }

    fn live_view_on(&self) -> bool {
        self.sim.live_view_on()
    }

    fn workflows(&self, py: Python<'_>) -> PyObject {
        let l = PyList::empty_bound(py);
        for w in self.sim.workflows() {
            let _ = l.append(PyBytes::new_bound(py, &w));
        }
        l.into_py(py)
    }

    /// Sends a 128-byte message to every connected client as an event.
    fn broadcast(&self, py: Python<'_>, msg: &[u8]) -> PyResult<usize> {
        Ok(self.sim.broadcast(decode(py, msg)?))
    }

    /// (connections, messages_received, replies_sent, events_sent, frames_sent)
    fn counters(&self) -> (u64, u64, u64, u64, u64) {
        let c = self.sim.counters();
        (
            c.connections,
            c.messages_received,
            c.replies_sent,
            c.events_sent,
            c.frames_sent,
        )
    }
}

impl Drop for NativeSimulator {
    fn drop(&mut self) {
        let sim = &self.sim;
        Python::with_gil(|py| py.allow_threads(|| sim.stop()));
    }
}

/// Every code of the library's catalogue, as (name, value).
#[pyfunction]
fn command_codes() -> Vec<(&'static str, u32)> {
    CATALOGUE.iter().map(|i| (i.name, i.code.0)).collect()
}

/// Python extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeClient>()?;
    m.add_class::<NativeSubscription>()?;
    m.add_class::<NativeLive>()?;
    m.add_class::<NativeRun>()?;
    m.add_class::<NativeSimulator>()?;
    recording::register(m)?;
    m.add_function(wrap_pyfunction!(command_codes, m)?)?;
    m.add("MESSAGE_LEN", MESSAGE_LEN)?;
    Ok(())
}
