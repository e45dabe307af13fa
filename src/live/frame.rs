//! [`Frame`]: one camera image from the live port, backed by pooled buffers.

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use byteorder::{ByteOrder, LittleEndian as LE};

use super::display::DisplayLut;
use super::pool::Pools;
use super::tiff::{self, TiffMetadata};
use crate::codec::LiveHeader;

/// One camera frame: its [`LiveHeader`] and its pixels.
///
/// Cloning is cheap (a reference count); all clones share the pixel buffers,
/// which go back to the stream's pool when the last clone drops. Holding
/// frames for long therefore makes the stream allocate new buffers; drop them
/// (or copy what you need) when done.
///
/// The pixels arrive as little-endian bytes and are kept that way
/// ([`as_bytes`](Frame::as_bytes), zero copy). [`pixels`](Frame::pixels)
/// converts them to `u16` once, on the calling thread, into a pooled buffer
/// cached in the frame (a plain copy on little-endian machines).
///
/// ```
/// use flamingo_client::live::Frame;
///
/// // Frames normally come from a LiveStream; from_pixels builds one for tests.
/// let frame = Frame::from_pixels(3, 2, &[0, 1, 2, 100, 200, 65535])?;
/// assert_eq!((frame.width(), frame.height()), (3, 2));
/// assert_eq!(frame.pixel(2, 1), 65535);
/// assert_eq!(frame.pixels()[3], 100);
/// assert_eq!(&frame.as_bytes()[..4], &[0, 0, 1, 0]);
/// # Ok::<(), flamingo_client::Error>(())
/// ```
#[derive(Clone)]
pub struct Frame {
    inner: Arc<Inner>,
}

struct Inner {
    header: LiveHeader,
    sequence: u64,
    received_at: Instant,
    /// Pixel bytes, little-endian, exactly `header.image_size` long.
    bytes: Vec<u8>,
    /// `bytes` as `u16`, converted on first use.
    words: OnceLock<Vec<u16>>,
    /// Where the buffers go back to; `None` for frames built by the caller.
    pools: Option<Arc<Pools>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(pools) = &self.pools {
            pools.bytes.put(std::mem::take(&mut self.bytes));
            if let Some(words) = self.words.take() {
                pools.words.put(words);
            }
        }
    }
}

impl Frame {
    /// A frame read by the live reader. `bytes.len()` is the validated image size.
    pub(crate) fn new(
        header: LiveHeader,
        sequence: u64,
        bytes: Vec<u8>,
        pools: Option<Arc<Pools>>,
    ) -> Frame {
        debug_assert_eq!(bytes.len(), header.image_size as usize);
        Frame {
            inner: Arc::new(Inner {
                header,
                sequence,
                received_at: Instant::now(),
                bytes,
                words: OnceLock::new(),
                pools,
            }),
        }
    }

    /// Builds a frame from `width x height` row-major pixels, for tests,
    /// simulations and image processing code. Header fields other than the
    /// size are zero; the frame's [`sequence`](Frame::sequence) is 0.
    ///
    /// Fails with [`Error::InvalidArgument`](crate::Error::InvalidArgument)
    /// when `pixels.len() != width * height`, the size is zero, or the image
    /// would exceed 4 GiB.
    ///
    /// ```
    /// use flamingo_client::live::Frame;
    ///
    /// assert!(Frame::from_pixels(2, 2, &[1, 2, 3]).is_err());
    /// let f = Frame::from_pixels(2, 2, &[1, 2, 3, 4])?;
    /// assert_eq!(f.header().image_size, 8);
    /// # Ok::<(), flamingo_client::Error>(())
    /// ```
    pub fn from_pixels(width: u32, height: u32, pixels: &[u16]) -> crate::Result<Frame> {
        let count = u64::from(width) * u64::from(height);
        if count == 0 || count != pixels.len() as u64 {
            return Err(crate::Error::invalid(format!(
                "a {width} x {height} frame needs {count} pixels (non-zero), got {}",
                pixels.len()
            )));
        }
        let image_size = u32::try_from(count * 2).map_err(|_| {
            crate::Error::invalid(format!("a {width} x {height} frame exceeds 4 GiB"))
        })?;
        let header = LiveHeader {
            image_size,
            width,
            height,
            ..LiveHeader::default()
        };
        let mut bytes = vec![0u8; pixels.len() * 2];
        LE::write_u16_into(pixels, &mut bytes);
        let frame = Frame::new(header, 0, bytes, None);
        let _ = frame.inner.words.set(pixels.to_vec());
        Ok(frame)
    }

    /// Builds a frame from a live header and its raw little-endian pixel
    /// bytes, as they would arrive on the wire.
    ///
    /// Fails with [`Error::Protocol`](crate::Error::Protocol) when the header
    /// is inconsistent (see [`LiveHeader::validate`]) and with
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) when
    /// `bytes.len() != header.image_size`.
    ///
    /// ```
    /// use flamingo_client::codec::LiveHeader;
    /// use flamingo_client::live::Frame;
    ///
    /// let header = LiveHeader { image_size: 4, width: 2, height: 1, frame_number: 9, ..Default::default() };
    /// let f = Frame::from_header_and_bytes(header, vec![1, 0, 0, 1])?;
    /// assert_eq!(f.pixels(), &[1, 256]);
    /// assert_eq!(f.frame_number(), 9);
    /// # Ok::<(), flamingo_client::Error>(())
    /// ```
    pub fn from_header_and_bytes(header: LiveHeader, bytes: Vec<u8>) -> crate::Result<Frame> {
        let len = header.validate(u32::MAX)?;
        if bytes.len() != len {
            return Err(crate::Error::invalid(format!(
                "the header announces {len} pixel bytes, got {}",
                bytes.len()
            )));
        }
        Ok(Frame::new(header, 0, bytes, None))
    }

    /// The frame's header exactly as received.
    pub fn header(&self) -> &LiveHeader {
        &self.inner.header
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.inner.header.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.inner.header.height
    }

    /// The instrument's frame counter.
    pub fn frame_number(&self) -> u32 {
        self.inner.header.frame_number
    }

    /// The instrument's timestamp in milliseconds.
    pub fn timestamp_ms(&self) -> u32 {
        self.inner.header.timestamp_ms
    }

    /// Exposure in microseconds.
    pub fn exposure_us(&self) -> u32 {
        self.inner.header.exposure_us
    }

    /// Display scale minimum suggested by the instrument.
    pub fn scale_min(&self) -> u32 {
        self.inner.header.scale_min
    }

    /// Display scale maximum suggested by the instrument.
    pub fn scale_max(&self) -> u32 {
        self.inner.header.scale_max
    }

    /// This stream's count of complete frames received when this one
    /// completed: 1 for the first frame, increasing by one per frame,
    /// including frames later dropped for a slow consumer. Compare it with
    /// [`LiveStats::frames`](super::LiveStats::frames) taken earlier to tell
    /// whether a frame arrived after some moment (see
    /// [`LiveStream::next_frame_after`](super::LiveStream::next_frame_after)).
    /// 0 for frames built with [`from_pixels`](Frame::from_pixels).
    pub fn sequence(&self) -> u64 {
        self.inner.sequence
    }

    /// When the last pixel byte of this frame was read.
    pub fn received_at(&self) -> Instant {
        self.inner.received_at
    }

    /// Number of pixels (`width * height`).
    pub fn pixel_count(&self) -> usize {
        self.inner.bytes.len() / 2
    }

    /// The pixels as received: little-endian `u16`, row-major, two bytes per
    /// pixel. No copy, no conversion.
    pub fn as_bytes(&self) -> &[u8] {
        &self.inner.bytes
    }

    /// The pixels as `u16`, row-major (`pixels()[y * width + x]`).
    ///
    /// The first call on a frame (or any of its clones) converts the bytes
    /// into a pooled buffer on the calling thread; later calls return the
    /// same slice.
    pub fn pixels(&self) -> &[u16] {
        let inner = &*self.inner;
        inner.words.get_or_init(|| {
            let n = inner.bytes.len() / 2;
            let mut words = match &inner.pools {
                Some(pools) => pools.words.take(n),
                None => vec![0; n],
            };
            LE::read_u16_into(&inner.bytes, &mut words);
            words
        })
    }

    /// The pixel at column `x`, row `y`, read straight from the bytes.
    ///
    /// # Panics
    ///
    /// If `x >= width()` or `y >= height()`, like slice indexing.
    pub fn pixel(&self, x: u32, y: u32) -> u16 {
        let (w, h) = (self.width(), self.height());
        assert!(
            x < w && y < h,
            "pixel ({x}, {y}) is outside the {w} x {h} frame"
        );
        let i = (y as usize * w as usize + x as usize) * 2;
        LE::read_u16(&self.inner.bytes[i..i + 2])
    }

    /// The display window for this frame: the header's display scale
    /// (`scale_min`, `scale_max`, clamped to 0..=65535) when
    /// `scale_min < scale_max`; otherwise (the instrument sent no usable
    /// scale) the frame's own darkest and brightest pixel values, found in
    /// one pass over the pixels. A flat frame gives `(v, v)`, which
    /// [`DisplayLut`] shows as black.
    ///
    /// ```
    /// use flamingo_client::codec::LiveHeader;
    /// use flamingo_client::live::Frame;
    ///
    /// let f = Frame::from_pixels(3, 1, &[500, 900, 700])?;
    /// assert_eq!(f.display_window(), (500, 900)); // no scale in the header
    /// let h = LiveHeader { image_size: 2, width: 1, height: 1, scale_min: 100, scale_max: 4000, ..Default::default() };
    /// let g = Frame::from_header_and_bytes(h, vec![0, 1])?;
    /// assert_eq!(g.display_window(), (100, 4000));
    /// # Ok::<(), flamingo_client::Error>(())
    /// ```
    pub fn display_window(&self) -> (u16, u16) {
        let h = &self.inner.header;
        if h.scale_min < h.scale_max {
            let clamp = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
            return (clamp(h.scale_min), clamp(h.scale_max));
        }
        let (mut lo, mut hi) = (u16::MAX, 0);
        for p in self.inner.bytes.chunks_exact(2) {
            let v = u16::from_le_bytes([p[0], p[1]]);
            lo = lo.min(v);
            hi = hi.max(v);
        }
        (lo, hi)
    }

    /// Converts the frame to 8-bit gray levels for display, one byte per
    /// pixel, row-major, into `out` (resized to
    /// [`pixel_count`](Frame::pixel_count); its allocation is reused), with
    /// the window of [`display_window`](Frame::display_window) (the header's
    /// display scale). See [`DisplayLut`] for the mapping.
    ///
    /// This builds a 64 KiB lookup table per call; a GUI painting every
    /// frame keeps a [`DisplayLut`] and calls
    /// [`to_display_8bit_with`](Frame::to_display_8bit_with) instead.
    ///
    /// ```
    /// use flamingo_client::live::Frame;
    ///
    /// let f = Frame::from_pixels(3, 1, &[1000, 1500, 2000])?;
    /// let mut gray = Vec::new();
    /// f.to_display_8bit(&mut gray);
    /// assert_eq!(gray, [0, 128, 255]);
    /// # Ok::<(), flamingo_client::Error>(())
    /// ```
    pub fn to_display_8bit(&self, out: &mut Vec<u8>) {
        let (min, max) = self.display_window();
        self.to_display_8bit_with(&DisplayLut::new(min, max), out);
    }

    /// Converts the frame to 8-bit gray levels with `lut`, into `out`
    /// (resized to [`pixel_count`](Frame::pixel_count); no allocation once
    /// it has the capacity). Reads the received bytes directly: no `u16`
    /// conversion first.
    ///
    /// ```
    /// use flamingo_client::live::{DisplayLut, Frame};
    ///
    /// let lut = DisplayLut::new(0, 1000);
    /// let mut gray = Vec::new();
    /// Frame::from_pixels(2, 1, &[0, 2000])?.to_display_8bit_with(&lut, &mut gray);
    /// assert_eq!(gray, [0, 255]);
    /// # Ok::<(), flamingo_client::Error>(())
    /// ```
    pub fn to_display_8bit_with(&self, lut: &DisplayLut, out: &mut Vec<u8>) {
        out.resize(self.pixel_count(), 0);
        lut.apply_le_bytes(&self.inner.bytes, out);
    }

    /// Writes the frame as an uncompressed 16-bit grayscale TIFF (baseline,
    /// little-endian, one strip), which Fiji/ImageJ, napari, Python's
    /// `tifffile` and every TIFF reader open. Pixel values are written
    /// unchanged; the display scale is not applied. No physical pixel size:
    /// see [`write_tiff_with`](Frame::write_tiff_with).
    ///
    /// ```
    /// use flamingo_client::live::Frame;
    ///
    /// let frame = Frame::from_pixels(2, 1, &[7, 65535])?;
    /// let mut file = Vec::new();
    /// frame.write_tiff(&mut file)?;
    /// assert_eq!(&file[..4], b"II*\0");
    /// assert!(file.ends_with(&[7, 0, 255, 255]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_tiff(&self, w: impl Write) -> io::Result<()> {
        self.write_tiff_with(w, &TiffMetadata::new())
    }

    /// Writes the frame as a 16-bit grayscale TIFF (see
    /// [`write_tiff`](Frame::write_tiff)) carrying `meta`: with a pixel
    /// size, Fiji shows the image in microns (see [`TiffMetadata`]).
    ///
    /// ```
    /// use flamingo_client::live::{Frame, TiffMetadata};
    ///
    /// let frame = Frame::from_pixels(2, 1, &[7, 65535])?;
    /// let mut file = Vec::new();
    /// frame.write_tiff_with(&mut file, &TiffMetadata::from_pixel_fov_mm(0.000_65))?;
    /// let text = String::from_utf8_lossy(&file);
    /// assert!(text.contains("ImageJ=1.11a\nunit=micron\n"));
    /// assert!(file.ends_with(&[7, 0, 255, 255]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_tiff_with(&self, w: impl Write, meta: &TiffMetadata) -> io::Result<()> {
        tiff::write_gray16(w, self.width(), self.height(), self.as_bytes(), meta)
    }

    /// Saves the frame as a 16-bit grayscale TIFF file (see
    /// [`write_tiff`](Frame::write_tiff)), replacing any existing file. The
    /// error names the path.
    ///
    /// ```no_run
    /// # let frame = flamingo_client::live::Frame::from_pixels(1, 1, &[0])?;
    /// frame.save_tiff("snapshot.tif")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn save_tiff(&self, path: impl AsRef<Path>) -> io::Result<()> {
        self.save_tiff_with(path, &TiffMetadata::new())
    }

    /// Saves the frame as a TIFF file carrying `meta` (see
    /// [`write_tiff_with`](Frame::write_tiff_with)), replacing any existing
    /// file. The error names the path.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client: flamingo_client::Client = unimplemented!();
    /// use flamingo_client::live::TiffMetadata;
    ///
    /// let camera = client.camera();
    /// let meta = TiffMetadata::from_pixel_fov_mm(camera.pixel_fov_mm()?);
    /// camera.snapshot()?.save_tiff_with("snapshot.tif", &meta)?;
    /// # Ok(()) }
    /// ```
    pub fn save_tiff_with(&self, path: impl AsRef<Path>, meta: &TiffMetadata) -> io::Result<()> {
        let path = path.as_ref();
        let named = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("cannot write TIFF file {}: {e}", path.display()),
            )
        };
        let file = File::create(path).map_err(named)?;
        self.write_tiff_with(BufWriter::new(file), meta)
            .map_err(named)
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("sequence", &self.inner.sequence)
            .field("header", &self.inner.header)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_buffers_return_when_last_clone_drops() {
        let pools = Arc::new(Pools::new(4));
        let header = LiveHeader {
            image_size: 8,
            width: 2,
            height: 2,
            ..Default::default()
        };
        let bytes = pools.bytes.take(8);
        let f = Frame::new(header, 1, bytes, Some(pools.clone()));
        let g = f.clone();
        assert_eq!(g.pixels(), &[0, 0, 0, 0]);
        drop(f);
        drop(g);
        // Both buffers are idle now: taking them again allocates nothing.
        let again = Frame::new(header, 2, pools.bytes.take(8), Some(pools.clone()));
        let _ = again.pixels();
        assert_eq!(pools.bytes.allocated(), 1);
        assert_eq!(pools.words.allocated(), 1);
    }

    #[test]
    fn pixel_access_matches_pixels() {
        let px: Vec<u16> = (0..12).map(|i| i * 5000).collect();
        let f = Frame::from_pixels(4, 3, &px).unwrap();
        for y in 0..3 {
            for x in 0..4 {
                assert_eq!(f.pixel(x, y), px[(y * 4 + x) as usize]);
            }
        }
        assert_eq!(f.pixel_count(), 12);
        assert!(Frame::from_pixels(0, 3, &[]).is_err());
        assert!(Frame::from_pixels(65535, 65535, &[1]).is_err());
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn pixel_out_of_range_panics() {
        Frame::from_pixels(1, 1, &[0]).unwrap().pixel(1, 0);
    }

    #[test]
    fn header_and_bytes_are_checked() {
        let header = LiveHeader {
            image_size: 4,
            width: 2,
            height: 1,
            ..Default::default()
        };
        assert!(Frame::from_header_and_bytes(header, vec![0; 3]).is_err());
        let bad = LiveHeader {
            image_size: 5,
            ..header
        };
        assert!(Frame::from_header_and_bytes(bad, vec![0; 5]).is_err());
        let absurd = LiveHeader {
            image_size: u32::MAX,
            width: u32::MAX,
            height: u32::MAX,
            ..header
        };
        assert!(Frame::from_header_and_bytes(absurd, vec![]).is_err());
    }
}
