//! A minimal baseline TIFF writer: one uncompressed 16-bit grayscale strip,
//! little-endian, as Fiji/ImageJ, napari and every TIFF reader open it.

use std::io::{self, Write};

/// IFD entries written (sorted by tag, as TIFF requires).
const ENTRIES: u16 = 10;
/// Header (8) + entry count (2) + entries (12 each) + next-IFD offset (4).
pub(crate) const DATA_OFFSET: u32 = 8 + 2 + 12 * ENTRIES as u32 + 4;

const SHORT: u16 = 3;
const LONG: u16 = 4;

/// Writes `width x height` little-endian `u16` pixels (`pixels_le`, row-major)
/// as a TIFF file. The caller guarantees `pixels_le.len() == width * height * 2`.
pub(crate) fn write_gray16(
    mut w: impl Write,
    width: u32,
    height: u32,
    pixels_le: &[u8],
) -> io::Result<()> {
    let byte_count = u32::try_from(pixels_le.len()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "image too large for a baseline TIFF (over 4 GiB)",
        )
    })?;
    let mut head = Vec::with_capacity(DATA_OFFSET as usize);
    head.extend_from_slice(b"II");
    head.extend_from_slice(&42u16.to_le_bytes());
    head.extend_from_slice(&8u32.to_le_bytes()); // first IFD right after the header
    head.extend_from_slice(&ENTRIES.to_le_bytes());
    let mut entry = |tag: u16, typ: u16, value: u32| {
        head.extend_from_slice(&tag.to_le_bytes());
        head.extend_from_slice(&typ.to_le_bytes());
        head.extend_from_slice(&1u32.to_le_bytes()); // count
        if typ == SHORT {
            // A SHORT value sits left-justified in the 4-byte value field.
            head.extend_from_slice(&(value as u16).to_le_bytes());
            head.extend_from_slice(&[0, 0]);
        } else {
            head.extend_from_slice(&value.to_le_bytes());
        }
    };
    entry(256, LONG, width); // ImageWidth
    entry(257, LONG, height); // ImageLength
    entry(258, SHORT, 16); // BitsPerSample
    entry(259, SHORT, 1); // Compression: none
    entry(262, SHORT, 1); // PhotometricInterpretation: BlackIsZero
    entry(273, LONG, DATA_OFFSET); // StripOffsets
    entry(277, SHORT, 1); // SamplesPerPixel
    entry(278, LONG, height); // RowsPerStrip: one strip
    entry(279, LONG, byte_count); // StripByteCounts
    entry(284, SHORT, 1); // PlanarConfiguration: chunky
    head.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
    debug_assert_eq!(head.len(), DATA_OFFSET as usize);
    w.write_all(&head)?;
    w.write_all(pixels_le)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use byteorder::{ByteOrder, LittleEndian as LE};

    /// A small TIFF reader for the fields we write: returns (tag -> value)
    /// and the strip bytes.
    fn parse(file: &[u8]) -> (Vec<(u16, u16, u32)>, Vec<u8>) {
        assert_eq!(&file[..4], b"II*\0");
        let ifd = LE::read_u32(&file[4..]) as usize;
        let n = LE::read_u16(&file[ifd..]) as usize;
        let mut tags = Vec::new();
        for i in 0..n {
            let e = &file[ifd + 2 + 12 * i..];
            let (tag, typ, count) = (
                LE::read_u16(e),
                LE::read_u16(&e[2..]),
                LE::read_u32(&e[4..]),
            );
            assert_eq!(count, 1);
            let value = if typ == SHORT {
                u32::from(LE::read_u16(&e[8..]))
            } else {
                LE::read_u32(&e[8..])
            };
            tags.push((tag, typ, value));
        }
        assert_eq!(LE::read_u32(&file[ifd + 2 + 12 * n..]), 0, "single IFD");
        let get = |t: u16| tags.iter().find(|e| e.0 == t).unwrap().2 as usize;
        let (off, len) = (get(273), get(279));
        (tags.clone(), file[off..off + len].to_vec())
    }

    #[test]
    fn writes_parseable_gray16() {
        let (w, h) = (5u32, 3u32);
        let pixels: Vec<u16> = (0..w * h).map(|i| (i * 4099) as u16).collect();
        let mut le = vec![0u8; pixels.len() * 2];
        LE::write_u16_into(&pixels, &mut le);
        let mut file = Vec::new();
        write_gray16(&mut file, w, h, &le).unwrap();
        assert_eq!(file.len(), DATA_OFFSET as usize + le.len());
        assert_eq!(DATA_OFFSET % 2, 0, "pixel data word-aligned");
        let (tags, strip) = parse(&file);
        let sorted: Vec<u16> = tags.iter().map(|t| t.0).collect();
        let mut expect = sorted.clone();
        expect.sort_unstable();
        assert_eq!(sorted, expect, "tags ascending");
        let value = |t: u16| tags.iter().find(|e| e.0 == t).unwrap().2;
        assert_eq!(value(256), w);
        assert_eq!(value(257), h);
        assert_eq!(value(258), 16);
        assert_eq!(value(259), 1);
        assert_eq!(value(262), 1);
        assert_eq!(value(277), 1);
        assert_eq!(value(278), h);
        assert_eq!(value(279), w * h * 2);
        assert_eq!(value(284), 1);
        let mut back = vec![0u16; pixels.len()];
        LE::read_u16_into(&strip, &mut back);
        assert_eq!(back, pixels);
    }
}
