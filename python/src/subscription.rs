//! `NativeSubscription`: an event subscription of the core, filtered by code
//! in the core (`Client.subscribe` wraps it).

use std::sync::Mutex;

use flamingo_client::Subscription;
use pyo3::prelude::*;

use crate::convert::event_tuple;
use crate::util::secs;

/// `recv`'s status: 0 event, 1 timeout, 2 closed (the client closed and every
/// queued event was taken).
#[pyclass(module = "flamingo_client._native", frozen)]
pub struct NativeSubscription {
    sub: Mutex<Option<Subscription>>,
}

impl NativeSubscription {
    pub fn new(sub: Subscription) -> NativeSubscription {
        NativeSubscription {
            sub: Mutex::new(Some(sub)),
        }
    }
}

#[pymethods]
impl NativeSubscription {
    #[pyo3(signature = (timeout))]
    fn recv(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<(u8, Option<Py<PyAny>>)> {
        let t = secs(py, timeout)?;
        let rx = match self.sub.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(s) => s.receiver().clone(),
            None => return Ok((2, None)),
        };
        let got = py.detach(|| {
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
