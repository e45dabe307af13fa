//! TIFF files and display conversion, read back with an independent TIFF
//! decoder (the `tiff` crate): pixels, resolution tags, the ImageJ
//! description, multi-page stacks; and snapshots from the simulator saved
//! with the camera's pixel size.

use std::fs::{self, File};
use std::io::{BufReader, Cursor, Read, Seek};
use std::path::PathBuf;
use std::time::Duration;

use flamingo_client::codec::LiveHeader;
use flamingo_client::live::{DisplayLut, Frame, TiffMetadata, TiffStackWriter};
use flamingo_client::sim::{SimConfig, Simulator};
use flamingo_client::{Client, ClientConfig};
use tiff::decoder::{Decoder, DecodingResult};
use tiff::tags::{ResolutionUnit, Tag};
use tiff::ColorType;

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("flamingo-imaging-{}-{name}", std::process::id()))
}

/// A frame whose pixel values depend on the page, position and a seed.
fn frame(width: u32, height: u32, seed: u16) -> Frame {
    let px: Vec<u16> = (0..width * height)
        .map(|i| {
            (i as u16)
                .wrapping_mul(257)
                .wrapping_add(seed.wrapping_mul(4099))
        })
        .collect();
    Frame::from_pixels(width, height, &px).unwrap()
}

/// XResolution and YResolution (numerator, denominator) and ResolutionUnit.
type Resolution = ((u32, u32), (u32, u32), u16);

/// What the decoder finds in one page.
#[derive(Debug)]
struct Page {
    width: u32,
    height: u32,
    pixels: Vec<u16>,
    resolution: Option<Resolution>,
    description: Option<String>,
}

fn rational<R: Read + Seek>(d: &mut Decoder<R>, tag: Tag) -> (u32, u32) {
    match d.get_tag(tag).unwrap() {
        tiff::decoder::ifd::Value::Rational(n, m) => (n, m),
        other => panic!("{tag:?} is {other:?}, not a rational"),
    }
}

fn read_all<R: Read + Seek>(r: R) -> Vec<Page> {
    let mut d = Decoder::new(r).unwrap();
    let mut pages = Vec::new();
    loop {
        let (width, height) = d.dimensions().unwrap();
        assert_eq!(d.colortype().unwrap(), ColorType::Gray(16));
        let pixels = match d.read_image().unwrap() {
            DecodingResult::U16(v) => v,
            _ => panic!("not 16-bit"),
        };
        let resolution = d.find_tag(Tag::XResolution).unwrap().map(|_| {
            (
                rational(&mut d, Tag::XResolution),
                rational(&mut d, Tag::YResolution),
                d.get_tag_u32(Tag::ResolutionUnit).unwrap() as u16,
            )
        });
        let description = d
            .find_tag(Tag::ImageDescription)
            .unwrap()
            .map(|v| v.into_string().unwrap());
        pages.push(Page {
            width,
            height,
            pixels,
            resolution,
            description,
        });
        if !d.more_images() {
            return pages;
        }
        d.next_image().unwrap();
    }
}

/// The `key=value` lines of an ImageJ description, which must start with
/// the `ImageJ=` line.
fn imagej(description: &str) -> Vec<(String, String)> {
    assert!(description.starts_with("ImageJ="), "{description:?}");
    description
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('=').expect("key=value");
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn value<'a>(kv: &'a [(String, String)], key: &str) -> Option<&'a str> {
    kv.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

#[test]
fn single_frame_without_metadata_round_trips() {
    let f = frame(37, 11, 1);
    let mut file = Vec::new();
    f.write_tiff(&mut file).unwrap();
    let pages = read_all(Cursor::new(&file));
    assert_eq!(pages.len(), 1);
    let p = &pages[0];
    assert_eq!((p.width, p.height), (37, 11));
    assert_eq!(p.pixels, f.pixels());
    assert!(p.resolution.is_none());
    assert!(p.description.is_none());
}

#[test]
fn single_frame_carries_pixel_size_in_microns() {
    let f = frame(64, 48, 2);
    let path = temp_path("single.tif");
    let meta = TiffMetadata::from_pixel_fov_mm(0.000_406_25); // 0.40625 µm per pixel
    f.save_tiff_with(&path, &meta).unwrap();
    let pages = read_all(BufReader::new(File::open(&path).unwrap()));
    fs::remove_file(&path).unwrap();
    assert_eq!(pages.len(), 1);
    let p = &pages[0];
    assert_eq!(p.pixels, f.pixels());
    let (x, y, unit) = p.resolution.expect("resolution tags");
    assert_eq!(x, y);
    assert_eq!(unit, ResolutionUnit::None as u16);
    let pixel_um = f64::from(x.1) / f64::from(x.0);
    assert!((pixel_um - 0.40625).abs() < 1e-6, "{pixel_um}");
    let kv = imagej(p.description.as_deref().expect("ImageJ description"));
    assert_eq!(value(&kv, "unit"), Some("micron"));
    assert_eq!(value(&kv, "images"), None, "one image: no stack keys");
}

#[test]
fn z_stack_round_trips_pages_and_spacing() {
    let (w, h, n) = (33u32, 17u32, 7u16);
    let path = temp_path("stack.tif");
    let meta = TiffMetadata::new()
        .with_pixel_size_um(0.65)
        .with_z_spacing_um(2.5);
    let frames: Vec<Frame> = (0..n).map(|z| frame(w, h, z)).collect();
    let mut stack = TiffStackWriter::create(&path, meta).unwrap();
    for f in &frames {
        stack.push(f).unwrap();
    }
    stack.finish().unwrap();

    let bytes = fs::read(&path).unwrap();
    let pages = read_all(Cursor::new(&bytes));
    fs::remove_file(&path).unwrap();
    assert_eq!(pages.len(), usize::from(n));
    for (p, f) in pages.iter().zip(&frames) {
        assert_eq!((p.width, p.height), (w, h));
        assert_eq!(p.pixels, f.pixels());
        let (x, _, unit) = p.resolution.expect("every page has the pixel size");
        assert_eq!(x, (1_538_462, 1_000_000));
        assert_eq!(unit, 1);
    }
    let kv = imagej(pages[0].description.as_deref().unwrap());
    assert_eq!(value(&kv, "images"), Some("7"));
    assert_eq!(value(&kv, "slices"), Some("7"));
    assert_eq!(value(&kv, "unit"), Some("micron"));
    assert_eq!(value(&kv, "spacing"), Some("2.5"));
    assert!(pages[1..].iter().all(|p| p.description.is_none()));

    // ImageJ reads an ImageJ stack as `images` pages back to back from the
    // first page's pixels: check the file has that layout too.
    let page_bytes = (w * h * 2) as usize;
    let mut contiguous = Vec::new();
    for f in &frames {
        contiguous.extend_from_slice(f.as_bytes());
    }
    assert_eq!(&bytes[8..8 + page_bytes * usize::from(n)], &contiguous[..]);
}

#[test]
fn stack_without_spacing_and_single_page_stack() {
    let mut stack = TiffStackWriter::new(Cursor::new(Vec::new()), TiffMetadata::new()).unwrap();
    let f = frame(5, 4, 9);
    stack.push(&f).unwrap();
    let file = stack.finish().unwrap().into_inner();
    let pages = read_all(Cursor::new(&file));
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0].pixels, f.pixels());

    let mut stack = TiffStackWriter::new(Cursor::new(Vec::new()), TiffMetadata::new()).unwrap();
    for s in 0..3 {
        stack.push(&frame(5, 4, s)).unwrap();
    }
    let file = stack.finish().unwrap().into_inner();
    let pages = read_all(Cursor::new(&file));
    assert_eq!(pages.len(), 3);
    let kv = imagej(pages[0].description.as_deref().unwrap());
    assert_eq!(value(&kv, "images"), Some("3"));
    assert_eq!(value(&kv, "slices"), None);
    assert_eq!(value(&kv, "unit"), None);
}

/// A stack written after other bytes (the writer's position is the TIFF's
/// start) is still a valid TIFF from that position.
#[test]
fn stack_starts_at_the_writers_position() {
    let mut cursor = Cursor::new(vec![0xEEu8; 6]);
    cursor.set_position(6);
    let mut stack =
        TiffStackWriter::new(cursor, TiffMetadata::new().with_pixel_size_um(1.0)).unwrap();
    stack.push(&frame(3, 3, 1)).unwrap();
    stack.push(&frame(3, 3, 2)).unwrap();
    let file = stack.finish().unwrap().into_inner();
    assert_eq!(&file[..6], &[0xEE; 6]);
    let pages = read_all(Cursor::new(&file[6..]));
    assert_eq!(pages.len(), 2);
    assert_eq!(pages[1].pixels, frame(3, 3, 2).pixels());
}

#[test]
fn display_conversion_uses_the_header_scale() {
    let header = LiveHeader {
        image_size: 8,
        width: 4,
        height: 1,
        scale_min: 1000,
        scale_max: 3000,
        ..Default::default()
    };
    let mut bytes = Vec::new();
    for v in [0u16, 1000, 2000, 60000] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    let f = Frame::from_header_and_bytes(header, bytes).unwrap();
    assert_eq!(f.display_window(), (1000, 3000));
    let mut gray = vec![9; 1];
    f.to_display_8bit(&mut gray);
    assert_eq!(gray, [0, 0, 128, 255]);

    // A header with an empty scale: the frame's own range.
    let flat = LiveHeader {
        scale_min: 5,
        scale_max: 5,
        ..header
    };
    let mut bytes = Vec::new();
    for v in [200u16, 300, 400, 250] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    let f = Frame::from_header_and_bytes(flat, bytes).unwrap();
    assert_eq!(f.display_window(), (200, 400));
    f.to_display_8bit(&mut gray);
    assert_eq!(gray, [0, 128, 255, 64]);

    // The same through a LUT kept by the caller, and the buffer is reused.
    let lut = DisplayLut::from_scale(200, 400);
    let capacity = gray.capacity();
    f.to_display_8bit_with(&lut, &mut gray);
    assert_eq!(gray, [0, 128, 255, 64]);
    assert_eq!(gray.capacity(), capacity);
}

/// The simulator's snapshot saved with the camera's pixel size, as the CLI
/// does, reads back with that size and the exact pixels.
#[test]
fn simulator_snapshot_saved_with_camera_pixel_size() {
    let sim = Simulator::start(SimConfig::default().image_size(64, 48)).unwrap();
    let client = Client::connect(&sim.addr().to_string(), ClientConfig::default()).unwrap();
    let camera = client.camera().timeout(Duration::from_secs(10));
    let fov_mm = camera.pixel_fov_mm().unwrap();
    assert!(fov_mm > 0.0);
    let frame = camera.snapshot().unwrap();
    let path = temp_path("snapshot.tif");
    frame
        .save_tiff_with(&path, &TiffMetadata::from_pixel_fov_mm(fov_mm))
        .unwrap();
    let pages = read_all(BufReader::new(File::open(&path).unwrap()));
    fs::remove_file(&path).unwrap();
    let p = &pages[0];
    assert_eq!((p.width, p.height), (64, 48));
    assert_eq!(p.pixels, frame.pixels());
    let (x, _, _) = p.resolution.unwrap();
    let pixel_um = f64::from(x.1) / f64::from(x.0);
    assert!(
        (pixel_um - fov_mm * 1000.0).abs() < 1e-5,
        "{pixel_um} vs {fov_mm} mm"
    );

    // Several snapshots as one stack, as `snapshot --count N` saves them.
    let path = temp_path("snapshots.tif");
    let meta = TiffMetadata::from_pixel_fov_mm(fov_mm);
    let mut stack = TiffStackWriter::create(&path, meta).unwrap();
    let mut frames = Vec::new();
    for _ in 0..3 {
        let f = camera.snapshot().unwrap();
        stack.push(&f).unwrap();
        frames.push(f);
    }
    stack.finish().unwrap();
    let pages = read_all(BufReader::new(File::open(&path).unwrap()));
    fs::remove_file(&path).unwrap();
    assert_eq!(pages.len(), 3);
    for (p, f) in pages.iter().zip(&frames) {
        assert_eq!(p.pixels, f.pixels());
        assert_eq!(
            flamingo_client::sim::verify_frame(64, 48, f.frame_number(), f.as_bytes()),
            None
        );
    }
    let kv = imagej(pages[0].description.as_deref().unwrap());
    assert_eq!(value(&kv, "images"), Some("3"));
    assert_eq!(value(&kv, "unit"), Some("micron"));
    client.close();
}
