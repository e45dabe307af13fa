//! `flamingo_client._native`: the thin PyO3 layer between the Rust library
//! and the Python package `flamingo_client`.
//!
//! Everything Pythonic (classes, dataclasses, numpy arrays, iterators,
//! context managers, the compatibility client) lives in the Python package;
//! this module only moves plain values across and keeps three rules:
//!
//! - every call that can block releases the GIL, so other Python threads (a
//!   GUI's, a progress ticker) keep running;
//! - no thread started here ever calls Python: callbacks run on Python
//!   threads that wait in a native call, so nothing here can be caught
//!   taking the GIL while the interpreter exits;
//! - every library error becomes an instance of the matching class of
//!   `flamingo_client.errors`, looked up by name at raise time.
//!
//! Messages cross as their 128-byte wire form (the Python package packs and
//! unpacks them with `struct`), frames as one `bytearray` copy of the pixel
//! bytes (numpy reads it with `frombuffer`, no per-pixel loop).
//!
//! One facade per file; each class is registered below with one line.

mod client;
mod convert;
mod live;
mod recording;
mod router;
mod run;
mod simulator;
mod subscription;
mod util;

use flamingo_client::codec::{CATALOGUE, MESSAGE_LEN};
use pyo3::prelude::*;

/// Every code of the library's catalogue, as (name, value).
#[pyfunction]
fn command_codes() -> Vec<(&'static str, u32)> {
    CATALOGUE.iter().map(|i| (i.name, i.code.0)).collect()
}

/// Checks a workflow file with the rules of the CLI's `workflow check`,
/// and against soft limits if given; raises `InvalidArgumentError` naming
/// the line (or the axis, value and limits) and what to fix.
#[pyfunction]
#[pyo3(signature = (file, limits=None))]
fn workflow_check(py: Python<'_>, file: &[u8], limits: Option<client::LimitsArg>) -> PyResult<()> {
    let limits = limits.map(|l| client::limits_from(py, l)).transpose()?;
    client::checked_workflow(file, limits)
        .map(|_| ())
        .map_err(|e| util::to_py(py, e))
}

/// Python extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<client::NativeClient>()?;
    m.add_class::<subscription::NativeSubscription>()?;
    m.add_class::<router::NativeRouter>()?;
    m.add_class::<live::NativeLive>()?;
    m.add_class::<run::NativeRun>()?;
    m.add_class::<simulator::NativeSimulator>()?;
    recording::register(m)?;
    m.add_function(wrap_pyfunction!(command_codes, m)?)?;
    m.add_function(wrap_pyfunction!(workflow_check, m)?)?;
    m.add_function(wrap_pyfunction!(live::save_tiff, m)?)?;
    m.add_function(wrap_pyfunction!(live::save_tiff_stack, m)?)?;
    m.add("MESSAGE_LEN", MESSAGE_LEN)?;
    Ok(())
}
