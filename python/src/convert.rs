//! Library values as plain Python values (tuples, dicts, bytes) that the
//! Python package turns into its dataclasses.

use flamingo_client::devices::{MotionStop, Section, WorkflowSummary, WorkflowUpdate};
use flamingo_client::live::Frame;
use flamingo_client::{Event, EventKind};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict};
use pyo3::IntoPyObjectExt;

/// (width, height, frame_number, timestamp_ms, exposure_us, sequence, pixel bytes)
pub type FrameTuple = (u32, u32, u32, u32, u32, u64, Py<PyByteArray>);

pub fn frame_tuple(py: Python<'_>, f: &Frame) -> FrameTuple {
    (
        f.width(),
        f.height(),
        f.frame_number(),
        f.timestamp_ms(),
        f.exposure_us(),
        f.sequence(),
        PyByteArray::new(py, f.as_bytes()).unbind(),
    )
}

/// (axis name, position, status, seq)
pub type StopTuple = (&'static str, f64, u32, u64);

pub fn stop_tuple(s: &MotionStop) -> StopTuple {
    (s.axis.name(), s.position, s.status, s.seq)
}

/// (kind, seq, message bytes or None, additional data or None, details)
pub fn event_tuple(py: Python<'_>, ev: &Event) -> PyResult<Py<PyAny>> {
    let d = PyDict::new(py);
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
    let msg = ev.message.map(|m| PyBytes::new(py, &m.to_bytes()).unbind());
    let data = ev.data.as_ref().map(|b| PyBytes::new(py, b).unbind());
    (ev.kind.name(), ev.seq, msg, data, d).into_py_any(py)
}

pub fn summary_dict<'py>(py: Python<'py>, s: &WorkflowSummary) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
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

/// (kind, details)
pub fn update_tuple(py: Python<'_>, u: &WorkflowUpdate) -> PyResult<Py<PyAny>> {
    let d = PyDict::new(py);
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
    (name, d).into_py_any(py)
}

/// (name, [(key, value)], [sub-sections])
pub fn section_tuple(py: Python<'_>, s: &Section) -> PyResult<Py<PyAny>> {
    let entries: Vec<(String, String)> = s
        .entries
        .iter()
        .map(|e| (e.key.clone(), e.value.clone()))
        .collect();
    let subs = s
        .sections
        .iter()
        .map(|c| section_tuple(py, c))
        .collect::<PyResult<Vec<_>>>()?;
    (s.name.clone(), entries, subs).into_py_any(py)
}
