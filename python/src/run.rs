//! `NativeRun`: a running workflow (`flamingo_client.WorkflowRun` wraps it).

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use flamingo_client::devices::{WorkflowRun, WorkflowSummary, WorkflowUpdate};
use pyo3::prelude::*;
use pyo3::IntoPyObjectExt;

use crate::convert::{summary_dict, update_tuple};
use crate::util::{block, secs, to_py};

/// Blocking waits on a run hold its lock for at most this long at a time, so
/// another thread (a GUI's stop button, a progress poll) gets it promptly.
const RUN_SLICE: Duration = Duration::from_millis(50);

/// Updates that `wait` took while another thread may still iterate them.
const BACKLOG: usize = 1024;

/// A running workflow, and its summary once it ended (kept, so it can be
/// read after a stop, a wait or the last update, as often as wanted).
///
/// `wait` takes the run's updates to see its end; it keeps them (the last
/// [`BACKLOG`], always with the final one) for `next_update`, so a thread
/// iterating the updates still sees every one, in order, while another
/// waits or stops the run. Both touch the backlog only with the run locked.
#[pyclass(module = "flamingo_client._native", frozen)]
pub struct NativeRun {
    run: Mutex<(WorkflowRun, VecDeque<WorkflowUpdate>)>,
    summary: Mutex<Option<WorkflowSummary>>,
}

impl NativeRun {
    pub fn new(run: WorkflowRun) -> NativeRun {
        NativeRun {
            run: Mutex::new((run, VecDeque::new())),
            summary: Mutex::new(None),
        }
    }

    fn lock(&self) -> MutexGuard<'_, (WorkflowRun, VecDeque<WorkflowUpdate>)> {
        self.run.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn kept(&self) -> Option<WorkflowSummary> {
        self.summary
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn keep(&self, s: &WorkflowSummary) {
        *self.summary.lock().unwrap_or_else(|p| p.into_inner()) = Some(s.clone());
    }
}

#[pymethods]
impl NativeRun {
    /// The next update within `timeout` (None if nothing happened, or after the last).
    #[pyo3(signature = (timeout))]
    fn next_update(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Py<PyAny>>> {
        let t = secs(py, timeout)?;
        let got = py.detach(|| {
            let deadline = Instant::now() + t;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let mut guard = self.lock();
                let (run, backlog) = &mut *guard;
                if let Some(u) = backlog.pop_front() {
                    return Some(Ok(u));
                }
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
            Some(Ok(u)) => {
                if let WorkflowUpdate::Finished(s) = &u {
                    self.keep(s);
                }
                Ok(Some(update_tuple(py, &u)?))
            }
            Some(Err(e)) => Err(to_py(py, e)),
        }
    }

    /// The summary once the run ended, or None if `timeout` passed first
    /// (the run goes on).
    #[pyo3(signature = (timeout))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Py<PyAny>>> {
        let t = secs(py, timeout)?;
        let s = block(py, || {
            let deadline = Instant::now() + t;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let mut guard = self.lock();
                let (run, backlog) = &mut *guard;
                match run.next_timeout(left.min(RUN_SLICE)) {
                    Some(Ok(u)) => {
                        let end = match &u {
                            WorkflowUpdate::Finished(s) => Some(s.clone()),
                            _ => None,
                        };
                        if backlog.len() >= BACKLOG {
                            backlog.pop_front();
                        }
                        backlog.push_back(u);
                        if let Some(s) = end {
                            return Ok(Some(s));
                        }
                    }
                    Some(Err(e)) => return Err(e),
                    None if run.is_finished() => {
                        // Every update was taken (by an iterating thread,
                        // which kept the summary); what is left is the outcome.
                        if let Some(s) = self.kept() {
                            return Ok(Some(s));
                        }
                        return run.wait(Duration::ZERO).map(Some);
                    }
                    None if left.is_zero() => return Ok(None),
                    None => {}
                }
            }
        })?;
        match s {
            Some(s) => {
                self.keep(&s);
                summary_dict(py, &s)?.into_py_any(py).map(Some)
            }
            None => Ok(None),
        }
    }

    /// The summary kept when the run ended (through `wait`, `stop` or the
    /// last update), without waiting.
    fn summary(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        match self.kept() {
            Some(s) => summary_dict(py, &s)?.into_py_any(py).map(Some),
            None => Ok(None),
        }
    }

    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        block(py, || self.lock().0.stop())
    }

    fn is_finished(&self, py: Python<'_>) -> bool {
        py.detach(|| self.lock().0.is_finished())
    }

    fn progress(&self, py: Python<'_>) -> Option<(i32, i32)> {
        py.detach(|| self.lock().0.progress())
    }
}
