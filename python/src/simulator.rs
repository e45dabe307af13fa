//! `NativeSimulator`: the loopback simulator, for test suites without hardware.

use std::collections::HashMap;

use flamingo_client::codec::CommandCode;
use flamingo_client::sim::{Faults, SimConfig, Simulator};
use flamingo_client::Error;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::util::{decode, secs, to_py};

/// The loopback simulator.
#[pyclass(module = "flamingo_client._native", frozen)]
pub struct NativeSimulator {
    sim: Simulator,
}

#[pymethods]
impl NativeSimulator {
    #[new]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (width, height, live_fps, plane_interval, stage_velocity, laser_set_acks, port, settings_text, answer_without_flag=None))]
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
        answer_without_flag: Option<Vec<u32>>,
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
        if let Some(codes) = answer_without_flag {
            cfg.answer_without_flag = codes.into_iter().map(CommandCode).collect();
        }
        let sim = py
            .detach(|| Simulator::start(cfg))
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
        py.detach(|| self.sim.stop());
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

    fn workflows<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let l = PyList::empty(py);
        for w in self.sim.workflows() {
            l.append(PyBytes::new(py, &w))?;
        }
        Ok(l)
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
        Python::attach(|py| py.detach(|| sim.stop()));
    }
}
