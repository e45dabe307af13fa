//! A minimal baseline TIFF writer for 16-bit grayscale frames: uncompressed,
//! little-endian, one strip per page, with the pixel size as resolution tags
//! and an ImageJ description, so Fiji/ImageJ shows real units. Single frames
//! and multi-page stacks.
//!
//! Layouts (both valid baseline TIFF; offsets are 32-bit, so a file stays
//! under 4 GiB):
//!
//! - one frame: header, the IFD and its values, then the pixels;
//! - a stack: header, the pixels of every page back to back, then one IFD
//!   per page. This is the layout ImageJ writes itself: it reads an ImageJ
//!   stack as `images` contiguous pages from the first page's offset, while
//!   other readers follow the IFD chain. Writing the IFDs last lets pages be
//!   appended as they arrive, with memory independent of the page count.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::frame::Frame;

const ASCII: u16 = 2;
const SHORT: u16 = 3;
const LONG: u16 = 4;
const RATIONAL: u16 = 5;

/// Size of the TIFF file header.
const HEADER_LEN: u32 = 8;

/// Metadata written into TIFF files: the physical pixel size and, for
/// stacks, the spacing of the planes.
///
/// Sizes are in microns. With a pixel size, each page gets `XResolution`
/// and `YResolution` (pixels per micron, as rationals) and `ResolutionUnit`
/// 1 ("no absolute unit"), and the first page an `ImageDescription` in
/// ImageJ's format with `unit=micron`: the convention ImageJ and Fiji write
/// and read, so Fiji's Image > Properties shows µm and its measurements are
/// in microns. (TIFF's own units are inches and centimetres; ImageJ ignores
/// them in favour of the description's unit.)
///
/// ```
/// use flamingo_client::live::TiffMetadata;
///
/// // Camera::pixel_fov_mm() gives millimetres per pixel; 0 means unknown.
/// let meta = TiffMetadata::from_pixel_fov_mm(0.000_65).with_z_spacing_um(2.5);
/// assert_eq!(meta.pixel_size_um, Some(0.65));
/// assert_eq!(TiffMetadata::from_pixel_fov_mm(0.0).pixel_size_um, None);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct TiffMetadata {
    /// Width (= height) of one pixel on the sample, in microns. `None`
    /// writes no resolution tags and no unit.
    pub pixel_size_um: Option<f64>,
    /// Distance between the planes of a stack, in microns (`spacing=` in
    /// the ImageJ description, which then calls the pages `slices`). Not
    /// written for single frames.
    pub z_spacing_um: Option<f64>,
}

impl TiffMetadata {
    /// No metadata: the file holds only the pixels and their layout.
    pub fn new() -> TiffMetadata {
        TiffMetadata::default()
    }

    /// The pixel size from the camera's pixel field of view in millimetres
    /// ([`Camera::pixel_fov_mm`](crate::devices::Camera::pixel_fov_mm));
    /// a value that is not finite and positive means "unknown" (`None`).
    pub fn from_pixel_fov_mm(mm: f64) -> TiffMetadata {
        TiffMetadata::new().with_pixel_size_um(mm * 1000.0)
    }

    /// Sets [`pixel_size_um`](TiffMetadata::pixel_size_um); a value that
    /// is not finite and positive clears it.
    #[must_use]
    pub fn with_pixel_size_um(mut self, um: f64) -> TiffMetadata {
        self.pixel_size_um = positive(um);
        self
    }

    /// Sets [`z_spacing_um`](TiffMetadata::z_spacing_um); a value that is
    /// not finite and positive clears it.
    #[must_use]
    pub fn with_z_spacing_um(mut self, um: f64) -> TiffMetadata {
        self.z_spacing_um = positive(um);
        self
    }

    /// True if nothing would be written beyond the pixels.
    fn is_empty(&self, pages: u32) -> bool {
        self.pixel_size_um.is_none() && pages <= 1
    }

    /// The ImageJ description for a file of `pages` pages.
    fn imagej_description(&self, pages: u32) -> String {
        // ImageJ and tifffile recognise the description by this first line;
        // 1.11a is the version string tifffile writes too.
        let mut s = String::from("ImageJ=1.11a\n");
        if pages > 1 {
            let _ = writeln!(s, "images={pages}");
            if self.z_spacing_um.is_some() {
                let _ = writeln!(s, "slices={pages}");
            }
        }
        if self.pixel_size_um.is_some() {
            s.push_str("unit=micron\n");
        }
        if let (true, Some(z)) = (pages > 1, self.z_spacing_um) {
            let _ = writeln!(s, "spacing={z}");
        }
        if pages > 1 {
            s.push_str("loop=false\n");
        }
        s
    }
}

fn positive(v: f64) -> Option<f64> {
    (v.is_finite() && v > 0.0).then_some(v)
}

/// `pixels_per_um` as a TIFF rational: the largest power-of-ten
/// denominator (at most 10^6) whose numerator fits 32 bits.
fn rational(pixels_per_um: f64) -> (u32, u32) {
    let mut den: u32 = 1_000_000;
    while den > 1 && pixels_per_um * f64::from(den) > f64::from(u32::MAX) {
        den /= 10;
    }
    let num = (pixels_per_um * f64::from(den))
        .round()
        .clamp(1.0, f64::from(u32::MAX));
    (num as u32, den)
}

fn too_large() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "image too large for a baseline TIFF (the file would exceed 4 GiB)",
    )
}

/// One page's IFD, built in memory and written at `at` (its file offset).
struct Ifd {
    entries: Vec<[u8; 12]>,
    /// Values too large for an entry, written right after the IFD.
    extra: Vec<u8>,
}

impl Ifd {
    /// The IFD of one page whose IFD starts at file offset `at`; with a
    /// `description` (first page only) and, if `meta` has a pixel size, the
    /// resolution tags, whose values follow the IFD.
    fn page(
        width: u32,
        height: u32,
        strip_offset: u32,
        byte_count: u32,
        description: Option<&str>,
        meta: &TiffMetadata,
        at: u32,
    ) -> io::Result<Ifd> {
        let mut entries: Vec<(u16, u16, u32, u32)> = vec![
            (256, LONG, 1, width),        // ImageWidth
            (257, LONG, 1, height),       // ImageLength
            (258, SHORT, 1, 16),          // BitsPerSample
            (259, SHORT, 1, 1),           // Compression: none
            (262, SHORT, 1, 1),           // PhotometricInterpretation: BlackIsZero
            (273, LONG, 1, strip_offset), // StripOffsets
            (277, SHORT, 1, 1),           // SamplesPerPixel
            (278, LONG, 1, height),       // RowsPerStrip: one strip
            (279, LONG, 1, byte_count),   // StripByteCounts
            (284, SHORT, 1, 1),           // PlanarConfiguration: chunky
        ];
        let mut extra = Vec::new();
        let n_extra_tags =
            usize::from(description.is_some()) + if meta.pixel_size_um.is_some() { 3 } else { 0 };
        let ifd_len = 2 + 12 * (entries.len() + n_extra_tags) + 4;
        let extra_at = |extra: &Vec<u8>| -> io::Result<u32> {
            u32::try_from(at as usize + ifd_len + extra.len()).map_err(|_| too_large())
        };
        if let Some(text) = description {
            let offset = extra_at(&extra)?;
            extra.extend_from_slice(text.as_bytes());
            extra.push(0);
            let count = u32::try_from(text.len() + 1).map_err(|_| too_large())?;
            entries.push((270, ASCII, count, offset)); // ImageDescription
            if extra.len() % 2 == 1 {
                extra.push(0); // keep the next value word-aligned
            }
        }
        if let Some(um) = meta.pixel_size_um {
            let (num, den) = rational(1.0 / um);
            let offset = extra_at(&extra)?;
            for _ in 0..2 {
                extra.extend_from_slice(&num.to_le_bytes());
                extra.extend_from_slice(&den.to_le_bytes());
            }
            entries.push((282, RATIONAL, 1, offset)); // XResolution
            entries.push((283, RATIONAL, 1, offset + 8)); // YResolution
            entries.push((296, SHORT, 1, 1)); // ResolutionUnit: none (ImageJ: unit in description)
        }
        entries.sort_by_key(|e| e.0); // TIFF requires ascending tags
        let entries = entries
            .into_iter()
            .map(|(tag, typ, count, value)| {
                let mut e = [0u8; 12];
                e[..2].copy_from_slice(&tag.to_le_bytes());
                e[2..4].copy_from_slice(&typ.to_le_bytes());
                e[4..8].copy_from_slice(&count.to_le_bytes());
                if typ == SHORT {
                    // A SHORT sits left-justified in the 4-byte value field.
                    e[8..10].copy_from_slice(&(value as u16).to_le_bytes());
                } else {
                    e[8..12].copy_from_slice(&value.to_le_bytes());
                }
                e
            })
            .collect();
        Ok(Ifd { entries, extra })
    }

    /// Bytes this IFD and its values take.
    fn len(&self) -> usize {
        2 + 12 * self.entries.len() + 4 + self.extra.len()
    }

    fn write(&self, w: &mut impl Write, next: u32) -> io::Result<()> {
        let mut buf = Vec::with_capacity(self.len());
        buf.extend_from_slice(&(self.entries.len() as u16).to_le_bytes());
        for e in &self.entries {
            buf.extend_from_slice(e);
        }
        buf.extend_from_slice(&next.to_le_bytes());
        buf.extend_from_slice(&self.extra);
        w.write_all(&buf)
    }
}

fn header(first_ifd: u32) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..2].copy_from_slice(b"II");
    h[2..4].copy_from_slice(&42u16.to_le_bytes());
    h[4..].copy_from_slice(&first_ifd.to_le_bytes());
    h
}

/// Writes one frame: `width x height` little-endian `u16` pixels
/// (`pixels_le`, row-major), header and IFD first, pixels last. The caller
/// guarantees `pixels_le.len() == width * height * 2`.
pub(crate) fn write_gray16(
    mut w: impl Write,
    width: u32,
    height: u32,
    pixels_le: &[u8],
    meta: &TiffMetadata,
) -> io::Result<()> {
    let byte_count = u32::try_from(pixels_le.len()).map_err(|_| too_large())?;
    let description = (!meta.is_empty(1)).then(|| meta.imagej_description(1));
    // The strip offset depends on the IFD's length, which does not depend on it.
    let probe = Ifd::page(
        width,
        height,
        0,
        byte_count,
        description.as_deref(),
        meta,
        8,
    )?;
    let data_at = u32::try_from(HEADER_LEN as usize + probe.len()).map_err(|_| too_large())?;
    data_at.checked_add(byte_count).ok_or_else(too_large)?;
    let ifd = Ifd::page(
        width,
        height,
        data_at,
        byte_count,
        description.as_deref(),
        meta,
        HEADER_LEN,
    )?;
    w.write_all(&header(HEADER_LEN))?;
    ifd.write(&mut w, 0)?;
    w.write_all(pixels_le)?;
    w.flush()
}

/// Writes a multi-page 16-bit grayscale TIFF (a z-stack, a time series),
/// one [`Frame`] per page, as the frames arrive.
///
/// Pixels go to the writer at once; only the page count and sizes are kept,
/// so memory does not grow with the stack. [`finish`](TiffStackWriter::finish)
/// writes the directories and must be called: a writer dropped without it
/// leaves a file that readers reject. All pages must have the size of the
/// first. The file is a classic TIFF, so the stack must stay under 4 GiB
/// (511 pages of 2048 x 2048); a page that would pass it is refused with
/// `InvalidInput` and the pages before it can still be finished.
///
/// ImageJ/Fiji opens the file as a stack (z-stack with
/// [`z_spacing_um`](TiffMetadata::z_spacing_um)), with the pixel size of
/// [`pixel_size_um`](TiffMetadata::pixel_size_um).
///
/// ```
/// use flamingo_client::live::{Frame, TiffMetadata, TiffStackWriter};
/// use std::io::Cursor;
///
/// let meta = TiffMetadata::new().with_pixel_size_um(0.65).with_z_spacing_um(2.5);
/// let mut stack = TiffStackWriter::new(Cursor::new(Vec::new()), meta)?;
/// for z in 0..3u16 {
///     stack.push(&Frame::from_pixels(2, 2, &[z, z, z, z])?)?;
/// }
/// assert_eq!(stack.pages(), 3);
/// let file = stack.finish()?.into_inner();
/// assert_eq!(&file[..4], b"II*\0");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct TiffStackWriter<W: Write + Seek> {
    w: W,
    meta: TiffMetadata,
    /// Stream position of the TIFF header (offsets are relative to it).
    base: u64,
    /// Width, height and byte count of every page, from the first.
    page: Option<(u32, u32, u32)>,
    pages: u32,
    /// Offset (from `base`) where the next page's pixels go.
    end: u64,
    path: Option<PathBuf>,
}

impl TiffStackWriter<BufWriter<File>> {
    /// Creates (or replaces) the file at `path` and starts a stack in it.
    /// Errors name the path.
    pub fn create(path: impl AsRef<Path>, meta: TiffMetadata) -> io::Result<Self> {
        let path = path.as_ref();
        let file = File::create(path).map_err(|e| named(path, e))?;
        let mut w = TiffStackWriter::new(BufWriter::new(file), meta).map_err(|e| named(path, e))?;
        w.path = Some(path.to_path_buf());
        Ok(w)
    }
}

fn named(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("cannot write TIFF file {}: {e}", path.display()),
    )
}

impl<W: Write + Seek> TiffStackWriter<W> {
    /// Starts a stack at the writer's current position (normally the start
    /// of an empty file). Writes the 8-byte TIFF header.
    pub fn new(mut w: W, meta: TiffMetadata) -> io::Result<Self> {
        let base = w.stream_position()?;
        // The first IFD's offset is filled in by finish(); 0 until then.
        w.write_all(&header(0))?;
        Ok(TiffStackWriter {
            w,
            meta,
            base,
            page: None,
            pages: 0,
            end: u64::from(HEADER_LEN),
            path: None,
        })
    }

    fn named(&self, e: io::Error) -> io::Error {
        match &self.path {
            Some(p) => named(p, e),
            None => e,
        }
    }

    /// Appends `frame` as the next page.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if the frame's size differs from the first page's or
    /// the file would exceed 4 GiB (nothing is written then); any error of
    /// the writer.
    pub fn push(&mut self, frame: &Frame) -> io::Result<()> {
        self.push_le(frame.width(), frame.height(), frame.as_bytes())
            .map_err(|e| self.named(e))
    }

    fn push_le(&mut self, width: u32, height: u32, pixels_le: &[u8]) -> io::Result<()> {
        let bytes = u32::try_from(pixels_le.len()).map_err(|_| too_large())?;
        let page = (width, height, bytes);
        match self.page {
            Some(first) if first != page => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "a {width} x {height} frame cannot join a stack of {} x {} pages",
                        first.0, first.1
                    ),
                ))
            }
            _ => {}
        }
        // Room for this page and the directories of every page after it.
        let ifds = (u64::from(self.pages) + 1) * 512;
        if self.end + u64::from(bytes) + ifds > u64::from(u32::MAX) {
            return Err(too_large());
        }
        self.w.write_all(pixels_le)?;
        self.page = Some(page);
        self.pages += 1;
        self.end += u64::from(bytes);
        Ok(())
    }

    /// Pages written so far.
    pub fn pages(&self) -> u32 {
        self.pages
    }

    /// Writes the directories of all pages and points the header at them;
    /// returns the writer, flushed.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if no page was pushed; any error of the writer.
    pub fn finish(mut self) -> io::Result<W> {
        let result = self.write_directories();
        result.map_err(|e| self.named(e))?;
        Ok(self.w)
    }

    fn write_directories(&mut self) -> io::Result<()> {
        let Some((width, height, bytes)) = self.page else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a TIFF stack needs at least one page",
            ));
        };
        let first_ifd = u32::try_from(self.end).map_err(|_| too_large())?;
        let description = self.meta.imagej_description(self.pages);
        let mut at = first_ifd;
        for i in 0..self.pages {
            let strip = HEADER_LEN + i * bytes;
            let text = (i == 0).then_some(description.as_str());
            let ifd = Ifd::page(width, height, strip, bytes, text, &self.meta, at)?;
            let after = u32::try_from(at as usize + ifd.len()).map_err(|_| too_large())?;
            let next = if i + 1 < self.pages { after } else { 0 };
            ifd.write(&mut self.w, next)?;
            at = after;
        }
        self.w.seek(SeekFrom::Start(self.base))?;
        self.w.write_all(&header(first_ifd))?;
        self.w.seek(SeekFrom::End(0))?;
        self.w.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rationals() {
        assert_eq!(rational(1.0 / 0.65), (1_538_462, 1_000_000));
        assert_eq!(rational(2.0), (2_000_000, 1_000_000));
        let (n, d) = rational(1e9);
        assert_eq!(d, 1);
        assert_eq!(n, 1_000_000_000);
        assert_eq!(rational(1e12), (u32::MAX, 1));
    }

    #[test]
    fn descriptions() {
        let none = TiffMetadata::new();
        assert!(none.is_empty(1));
        assert!(!none.is_empty(2));
        assert_eq!(
            none.imagej_description(3),
            "ImageJ=1.11a\nimages=3\nloop=false\n"
        );
        let m = TiffMetadata::new()
            .with_pixel_size_um(0.65)
            .with_z_spacing_um(2.5);
        assert_eq!(m.imagej_description(1), "ImageJ=1.11a\nunit=micron\n");
        assert_eq!(
            m.imagej_description(4),
            "ImageJ=1.11a\nimages=4\nslices=4\nunit=micron\nspacing=2.5\nloop=false\n"
        );
        assert_eq!(TiffMetadata::new().with_pixel_size_um(f64::NAN), none);
        assert_eq!(TiffMetadata::new().with_z_spacing_um(-1.0), none);
    }

    #[test]
    fn plain_frame_keeps_the_ten_entry_layout() {
        let mut file = Vec::new();
        write_gray16(&mut file, 2, 1, &[1, 0, 2, 0], &TiffMetadata::new()).unwrap();
        assert_eq!(file.len(), 8 + 2 + 12 * 10 + 4 + 4);
        assert_eq!(u16::from_le_bytes([file[8], file[9]]), 10);
        assert!(file.ends_with(&[1, 0, 2, 0]));
    }

    #[test]
    fn stack_rejects_mixed_sizes_and_empty() {
        let mut s = TiffStackWriter::new(io::Cursor::new(Vec::new()), TiffMetadata::new()).unwrap();
        s.push(&Frame::from_pixels(2, 1, &[1, 2]).unwrap()).unwrap();
        let e = s
            .push(&Frame::from_pixels(1, 2, &[1, 2]).unwrap())
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(s.pages(), 1);
        let empty = TiffStackWriter::new(io::Cursor::new(Vec::new()), TiffMetadata::new()).unwrap();
        assert_eq!(
            empty.finish().unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
