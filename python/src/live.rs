//! `NativeLive` (the live stream) and TIFF files written by the library's
//! encoder, with the pixel size in their resolution tags.

use std::sync::Arc;

use flamingo_client::codec::LiveHeader;
use flamingo_client::live::{Frame, LiveStream, TiffMetadata, TiffStackWriter};
use flamingo_client::Error;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::convert::{frame_tuple, FrameTuple};
use crate::util::{block, invalid, secs, to_py};

/// The live stream.
#[pyclass(module = "flamingo_client._native", frozen)]
pub struct NativeLive {
    stream: Arc<LiveStream>,
}

impl NativeLive {
    pub fn new(stream: Arc<LiveStream>) -> NativeLive {
        NativeLive { stream }
    }
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

/// (width, height, frame_number, timestamp_ms, exposure_us, little-endian pixel bytes)
type FrameParts<'a> = (u32, u32, u32, u32, u32, &'a [u8]);

fn frame(parts: FrameParts<'_>) -> flamingo_client::Result<Frame> {
    let (width, height, frame_number, timestamp_ms, exposure_us, bytes) = parts;
    let image_size = u32::try_from(bytes.len())
        .map_err(|_| Error::invalid("a frame of 4 GiB or more cannot be saved as TIFF"))?;
    let header = LiveHeader {
        image_size,
        width,
        height,
        frame_number,
        timestamp_ms,
        exposure_us,
        ..LiveHeader::default()
    };
    Frame::from_header_and_bytes(header, bytes.to_vec())
}

fn metadata(pixel_size_um: Option<f64>, z_spacing_um: Option<f64>) -> TiffMetadata {
    let mut meta = TiffMetadata::new();
    if let Some(um) = pixel_size_um {
        meta = meta.with_pixel_size_um(um);
    }
    if let Some(um) = z_spacing_um {
        meta = meta.with_z_spacing_um(um);
    }
    meta
}

fn checked_size(py: Python<'_>, what: &str, v: Option<f64>) -> PyResult<()> {
    match v {
        Some(x) if !(x.is_finite() && x > 0.0) => Err(invalid(
            py,
            format!("{what} must be a positive number of microns or None, not {x}"),
        )),
        _ => Ok(()),
    }
}

/// Saves one frame as a 16-bit TIFF file; `pixel_size_um` goes into the
/// resolution tags and the ImageJ description (microns).
#[pyfunction]
#[pyo3(signature = (path, frame_parts, pixel_size_um))]
pub fn save_tiff(
    py: Python<'_>,
    path: std::path::PathBuf,
    frame_parts: FrameParts<'_>,
    pixel_size_um: Option<f64>,
) -> PyResult<()> {
    checked_size(py, "the pixel size", pixel_size_um)?;
    let f = frame(frame_parts).map_err(|e| to_py(py, e))?;
    let meta = metadata(pixel_size_um, None);
    block(py, || f.save_tiff_with(&path, &meta).map_err(Error::Io))
}

/// Saves frames as one multi-page TIFF file (a stack), with the pixel size
/// and the spacing between planes (microns).
#[pyfunction]
#[pyo3(signature = (path, frames, pixel_size_um, z_spacing_um))]
pub fn save_tiff_stack<'py>(
    py: Python<'py>,
    path: std::path::PathBuf,
    frames: Vec<(u32, u32, u32, u32, u32, Bound<'py, PyBytes>)>,
    pixel_size_um: Option<f64>,
    z_spacing_um: Option<f64>,
) -> PyResult<u32> {
    checked_size(py, "the pixel size", pixel_size_um)?;
    checked_size(py, "the plane spacing", z_spacing_um)?;
    if frames.is_empty() {
        return Err(invalid(py, "a TIFF stack needs at least one frame".into()));
    }
    let frames = frames
        .iter()
        .map(|(w, h, n, ts, ex, b)| frame((*w, *h, *n, *ts, *ex, b.as_bytes())))
        .collect::<flamingo_client::Result<Vec<_>>>()
        .map_err(|e| to_py(py, e))?;
    let meta = metadata(pixel_size_um, z_spacing_um);
    block(py, || {
        // The writer's errors name the path.
        let mut w = TiffStackWriter::create(&path, meta).map_err(Error::Io)?;
        for f in &frames {
            w.push(f).map_err(Error::Io)?;
        }
        let pages = w.pages();
        w.finish().map_err(Error::Io)?;
        Ok(pages)
    })
}
