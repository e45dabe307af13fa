//! Saving frames: PNG through the examples' support module, TIFF through the library.

#[path = "../../examples/support/image_io.rs"]
mod support;

use std::fs;
use std::path::PathBuf;

use flamingo_client::live::Frame;

fn test_frame() -> Frame {
    let (w, h) = (37u32, 11u32);
    let pixels: Vec<u16> = (0..w * h)
        .map(|i| (i.wrapping_mul(2654435761) >> 16) as u16)
        .collect();
    Frame::from_pixels(w, h, &pixels).unwrap()
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("flamingo-live-{}-{name}", std::process::id()))
}

#[test]
fn png_round_trips_16_bit_grayscale() {
    let frame = test_frame();
    let path = temp_path("frame.png");
    support::save_image(&frame, &path).unwrap();
    let decoder = png::Decoder::new(fs::File::open(&path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    fs::remove_file(&path).unwrap();
    assert_eq!((info.width, info.height), (frame.width(), frame.height()));
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    assert_eq!(info.bit_depth, png::BitDepth::Sixteen);
    let back: Vec<u16> = buf[..info.buffer_size()]
        .chunks_exact(2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .collect();
    assert_eq!(back, frame.pixels());
}

#[test]
fn tiff_file_holds_header_and_exact_pixels() {
    let frame = test_frame();
    for name in ["frame.tif", "frame.TIFF"] {
        let path = temp_path(name);
        support::save_image(&frame, &path).unwrap();
        let file = fs::read(&path).unwrap();
        fs::remove_file(&path).unwrap();
        assert_eq!(&file[..4], b"II*\0");
        // One strip, after the IFD, holding the little-endian pixels unchanged.
        let offset = file.len() - frame.as_bytes().len();
        assert_eq!(&file[offset..], frame.as_bytes());
        assert_eq!(u16::from_le_bytes([file[8], file[9]]), 10, "IFD entries");
    }
}

#[test]
fn unknown_extension_is_a_clear_error() {
    let frame = test_frame();
    let err = support::save_image(&frame, &temp_path("frame.jpg")).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains(".png"), "{err}");
}

#[test]
fn unwritable_path_names_the_file() {
    let frame = test_frame();
    let path = temp_path("no-such-dir").join("frame.tif");
    let err = frame.save_tiff(&path).unwrap_err();
    assert!(err.to_string().contains("no-such-dir"), "{err}");
    let err = support::save_png(&frame, &path.with_extension("png")).unwrap_err();
    assert!(err.to_string().contains("no-such-dir"), "{err}");
}
