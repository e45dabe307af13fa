//! Saving live frames as images that Fiji/ImageJ opens: 16-bit grayscale
//! TIFF (from the library) or PNG (with the `png` crate, a dev-dependency).
//!
//! Include it in an example with
//! `#[path = "support/image_io.rs"] mod image_io;`.
#![allow(dead_code)]

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::Path;

use flamingo_client::live::Frame;

/// Saves `frame` as a 16-bit grayscale PNG (samples big-endian, as PNG
/// requires). Pixel values are written unchanged.
pub fn save_png(frame: &Frame, path: &Path) -> io::Result<()> {
    let named = |e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("cannot write PNG file {}: {e}", path.display()),
        )
    };
    let file = File::create(path).map_err(named)?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), frame.width(), frame.height());
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Sixteen);
    let to_io = |e: png::EncodingError| match e {
        png::EncodingError::IoError(e) => named(e),
        other => named(io::Error::other(other)),
    };
    let mut writer = encoder.write_header().map_err(to_io)?;
    let mut be = Vec::with_capacity(frame.as_bytes().len());
    for &p in frame.pixels() {
        be.extend_from_slice(&p.to_be_bytes());
    }
    writer.write_image_data(&be).map_err(to_io)?;
    writer.finish().map_err(to_io)
}

/// Saves `frame` as TIFF (`.tif`, `.tiff`) or PNG (`.png`), chosen by the
/// file extension (any case). Other extensions are an `InvalidInput` error.
pub fn save_image(frame: &Frame, path: &Path) -> io::Result<()> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("tif") | Some("tiff") => frame.save_tiff(path),
        Some("png") => save_png(frame, path),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "cannot save {}: use a .tif, .tiff or .png file name",
                path.display()
            ),
        )),
    }
}
