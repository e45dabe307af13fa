//! Recordings from Python: a recording read record by record into plain
//! values (dicts of ints, floats, strings and bytes), and the recording
//! proxy. The Python side is `flamingo_client.recording`.

use std::fs::File;
use std::io::BufReader;

use flamingo_client::record::{
    Entry, Proxy, ProxyConfig, ProxyStats, Record, RecordError, RecordingReader,
};
use flamingo_client::Error;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::util::to_py;

/// Registers the classes of this module (called from the module's init).
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeRecording>()?;
    m.add_class::<NativeRecorder>()?;
    Ok(())
}

/// A recording's error as `FlamingoIOError`, with its byte offset in
/// `offset`.
fn record_error(py: Python<'_>, e: RecordError) -> PyErr {
    let offset = e.offset;
    let err = to_py(py, Error::Io(e.into()));
    let _ = err.value(py).setattr("offset", offset);
    err
}

/// A recording being read, one record at a time.
#[pyclass(module = "flamingo_client._native")]
pub struct NativeRecording {
    reader: RecordingReader<BufReader<File>>,
}

#[pymethods]
impl NativeRecording {
    #[new]
    fn new(py: Python<'_>, path: &str) -> PyResult<Self> {
        let reader = RecordingReader::open(path).map_err(|e| record_error(py, e))?;
        Ok(NativeRecording { reader })
    }

    /// The file's format version.
    fn version(&self) -> u16 {
        self.reader.version()
    }

    /// True once the end record was read.
    fn finished(&self) -> bool {
        self.reader.finished()
    }

    /// The offset of the next record.
    fn offset(&self) -> u64 {
        self.reader.offset()
    }

    /// The next record as a dict, or None at the end.
    fn next_record(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyDict>>> {
        let reader = &mut self.reader;
        let next = py.detach(|| reader.next_record());
        match next {
            Ok(Some(r)) => Ok(Some(record_dict(py, &r)?)),
            Ok(None) => Ok(None),
            Err(e) => Err(record_error(py, e)),
        }
    }
}

fn record_dict(py: Python<'_>, r: &Record) -> PyResult<Py<PyDict>> {
    let d = PyDict::new(py);
    d.set_item("time", r.time.as_secs_f64())?;
    d.set_item("conn", r.conn)?;
    d.set_item("kind", r.entry.kind_name())?;
    match &r.entry {
        Entry::Meta(kv) => {
            let m = PyDict::new(py);
            for (k, v) in kv {
                m.set_item(k, v)?;
            }
            d.set_item("meta", m)?;
        }
        Entry::Open { port, peer } => {
            d.set_item("port", port.name())?;
            d.set_item("peer", peer)?;
        }
        Entry::Message {
            direction,
            message,
            data_seen,
            data,
        } => {
            d.set_item("direction", direction.name())?;
            d.set_item("message", PyBytes::new(py, &message.to_bytes()))?;
            d.set_item("data_seen", data_seen)?;
            d.set_item("data", PyBytes::new(py, data))?;
        }
        Entry::Skipped { direction, bytes } => {
            d.set_item("direction", direction.name())?;
            d.set_item("bytes", bytes)?;
        }
        Entry::Frame {
            header,
            subsample,
            pixels_seen,
            pixels,
        } => {
            let h = PyDict::new(py);
            h.set_item("image_size", header.image_size)?;
            h.set_item("width", header.width)?;
            h.set_item("height", header.height)?;
            h.set_item("scale_min", header.scale_min)?;
            h.set_item("scale_max", header.scale_max)?;
            h.set_item("timestamp_ms", header.timestamp_ms)?;
            h.set_item("frame_number", header.frame_number)?;
            h.set_item("exposure_us", header.exposure_us)?;
            h.set_item("reserved", (header.reserved[0], header.reserved[1]))?;
            d.set_item("header", h)?;
            d.set_item("subsample", subsample)?;
            d.set_item("pixels_seen", pixels_seen)?;
            d.set_item("pixels", PyBytes::new(py, pixels))?;
        }
        Entry::Unparsed {
            direction,
            reason,
            bytes,
        } => {
            d.set_item("direction", direction.name())?;
            d.set_item("reason", reason)?;
            d.set_item("bytes", PyBytes::new(py, bytes))?;
        }
        Entry::StreamEnd {
            direction,
            cause,
            bytes,
            detail,
        } => {
            d.set_item("direction", direction.name())?;
            d.set_item("cause", cause.name())?;
            d.set_item("bytes", bytes)?;
            d.set_item("detail", detail)?;
        }
        Entry::Note(text) => d.set_item("text", text)?,
        Entry::End {
            records,
            dropped_records,
            dropped_bytes,
        } => {
            d.set_item("records", records)?;
            d.set_item("dropped_records", dropped_records)?;
            d.set_item("dropped_bytes", dropped_bytes)?;
        }
        Entry::Unknown { kind, detail, body } => {
            d.set_item("record_kind", kind)?;
            d.set_item("detail", detail)?;
            d.set_item("body", PyBytes::new(py, body))?;
        }
        _ => {}
    }
    Ok(d.unbind())
}

fn stats_dict(py: Python<'_>, s: &ProxyStats) -> PyResult<Py<PyDict>> {
    let d = PyDict::new(py);
    d.set_item("connections", s.connections)?;
    d.set_item("upstream_failures", s.upstream_failures)?;
    d.set_item("messages", s.messages)?;
    d.set_item("frames", s.frames)?;
    d.set_item("bytes_to_instrument", s.bytes_to_instrument)?;
    d.set_item("bytes_to_client", s.bytes_to_client)?;
    d.set_item("records", s.records)?;
    d.set_item("dropped_records", s.dropped_records)?;
    d.set_item("dropped_bytes", s.dropped_bytes)?;
    d.set_item("file_bytes", s.file_bytes)?;
    Ok(d.unbind())
}

fn parse_addr(py: Python<'_>, what: &str, s: &str) -> PyResult<std::net::SocketAddr> {
    use std::net::ToSocketAddrs;
    s.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            to_py(
                py,
                Error::invalid(format!(
                    "{what} {s:?} is not HOST:PORT (for example 127.0.0.1:53717)"
                )),
            )
        })
}

/// The recording proxy between clients and an instrument.
#[pyclass(module = "flamingo_client._native", frozen)]
pub struct NativeRecorder {
    proxy: Proxy,
}

#[pymethods]
impl NativeRecorder {
    #[new]
    fn new(
        py: Python<'_>,
        listen: &str,
        upstream: &str,
        path: &str,
        pixels: u16,
    ) -> PyResult<Self> {
        let listen = parse_addr(py, "listen", listen)?;
        let upstream = parse_addr(py, "upstream", upstream)?;
        let cfg = ProxyConfig::new(listen, upstream).pixels(pixels);
        let proxy = py
            .detach(|| Proxy::create(cfg, path))
            .map_err(|e| to_py(py, Error::Io(e)))?;
        Ok(NativeRecorder { proxy })
    }

    fn address(&self) -> String {
        self.proxy.addr().to_string()
    }

    fn live_address(&self) -> String {
        self.proxy.live_addr().to_string()
    }

    fn stats(&self, py: Python<'_>) -> PyResult<Py<PyDict>> {
        stats_dict(py, &self.proxy.stats())
    }

    /// Closes every connection and finishes the file; returns the counters.
    fn stop(&self, py: Python<'_>) -> PyResult<Py<PyDict>> {
        let proxy = &self.proxy;
        let stats = py
            .detach(|| proxy.stop())
            .map_err(|e| to_py(py, Error::Io(e)))?;
        stats_dict(py, &stats)
    }
}

impl Drop for NativeRecorder {
    fn drop(&mut self) {
        let proxy = &self.proxy;
        Python::attach(|py| py.detach(|| proxy.stop().ok()));
    }
}
