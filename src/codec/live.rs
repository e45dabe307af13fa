//! The 40-byte header in front of every frame on the live image port.

use std::fmt;

use byteorder::{ByteOrder, LittleEndian as LE};

/// Size of a live frame header in bytes.
pub const LIVE_HEADER_LEN: usize = 40;
/// Default maximum image size accepted from a live header: 64 MiB.
pub const DEFAULT_MAX_IMAGE_BYTES: u32 = 64 * 1024 * 1024;

/// The header of one live frame: ten little-endian `u32`, then
/// `image_size` bytes of little-endian `u16` pixels, row-major.
///
/// ```
/// use flamingo_client::codec::LiveHeader;
///
/// let h = LiveHeader { image_size: 8, width: 2, height: 2, frame_number: 7, ..Default::default() };
/// let bytes = h.to_bytes();
/// let back = LiveHeader::decode(&bytes);
/// assert_eq!(back, h);
/// assert_eq!(back.validate(1024).unwrap(), 8);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LiveHeader {
    /// Pixel bytes that follow the header.
    pub image_size: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Display scale minimum.
    pub scale_min: u32,
    /// Display scale maximum.
    pub scale_max: u32,
    /// Timestamp in milliseconds.
    pub timestamp_ms: u32,
    /// Frame counter.
    pub frame_number: u32,
    /// Exposure in microseconds.
    pub exposure_us: u32,
    /// Two reserved words, kept as received.
    pub reserved: [u32; 2],
}

/// Why a live header was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LiveHeaderError {
    /// `image_size` is not `width * height * 2`, or the image is empty.
    Inconsistent {
        /// Claimed image size.
        image_size: u32,
        /// Claimed width.
        width: u32,
        /// Claimed height.
        height: u32,
    },
    /// `image_size` exceeds the configured maximum.
    TooLarge {
        /// Claimed image size.
        image_size: u32,
        /// Configured maximum.
        limit: u32,
    },
}

impl fmt::Display for LiveHeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LiveHeaderError::Inconsistent {
                image_size,
                width,
                height,
            } => write!(
                f,
                "live frame header is inconsistent: image size {image_size} bytes for {width} x {height} pixels (expected width x height x 2, non-zero)"
            ),
            LiveHeaderError::TooLarge { image_size, limit } => write!(
                f,
                "live frame of {image_size} bytes exceeds the limit of {limit} bytes"
            ),
        }
    }
}

impl std::error::Error for LiveHeaderError {}

impl LiveHeader {
    /// Decodes 40 bytes. Any bytes decode; call [`validate`](LiveHeader::validate) next.
    pub fn decode(b: &[u8; LIVE_HEADER_LEN]) -> LiveHeader {
        let w = |i: usize| LE::read_u32(&b[i * 4..]);
        LiveHeader {
            image_size: w(0),
            width: w(1),
            height: w(2),
            scale_min: w(3),
            scale_max: w(4),
            timestamp_ms: w(5),
            frame_number: w(6),
            exposure_us: w(7),
            reserved: [w(8), w(9)],
        }
    }

    /// Encodes into a caller's buffer.
    pub fn encode(&self, out: &mut [u8; LIVE_HEADER_LEN]) {
        let words = [
            self.image_size,
            self.width,
            self.height,
            self.scale_min,
            self.scale_max,
            self.timestamp_ms,
            self.frame_number,
            self.exposure_us,
            self.reserved[0],
            self.reserved[1],
        ];
        LE::write_u32_into(&words, out);
    }

    /// Encodes into a new array.
    pub fn to_bytes(&self) -> [u8; LIVE_HEADER_LEN] {
        let mut b = [0u8; LIVE_HEADER_LEN];
        self.encode(&mut b);
        b
    }

    /// Checks `image_size == width * height * 2`, non-zero, and at most
    /// `max_image_bytes`; returns the pixel byte count to read.
    pub fn validate(&self, max_image_bytes: u32) -> Result<usize, LiveHeaderError> {
        // u128: width * height * 2 of two u32 can exceed u64.
        let expected = u128::from(self.width) * u128::from(self.height) * 2;
        if expected == 0 || expected != u128::from(self.image_size) {
            return Err(LiveHeaderError::Inconsistent {
                image_size: self.image_size,
                width: self.width,
                height: self.height,
            });
        }
        if self.image_size > max_image_bytes {
            return Err(LiveHeaderError::TooLarge {
                image_size: self.image_size,
                limit: max_image_bytes,
            });
        }
        Ok(self.image_size as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_lies() {
        let h = LiveHeader {
            image_size: u32::MAX,
            width: 65535,
            height: 65535,
            ..Default::default()
        };
        assert!(matches!(
            h.validate(u32::MAX),
            Err(LiveHeaderError::Inconsistent { .. })
        ));
        let h = LiveHeader {
            image_size: 2048 * 2048 * 2,
            width: 2048,
            height: 2048,
            ..Default::default()
        };
        assert_eq!(h.validate(DEFAULT_MAX_IMAGE_BYTES), Ok(2048 * 2048 * 2));
        assert!(matches!(
            h.validate(1000),
            Err(LiveHeaderError::TooLarge { .. })
        ));
        assert!(LiveHeader::default().validate(100).is_err());
    }

    #[test]
    fn field_order() {
        let mut b = [0u8; 40];
        for i in 0..10 {
            b[i * 4] = i as u8 + 1;
        }
        let h = LiveHeader::decode(&b);
        assert_eq!(
            [
                h.image_size,
                h.width,
                h.height,
                h.scale_min,
                h.scale_max,
                h.timestamp_ms,
                h.frame_number,
                h.exposure_us,
                h.reserved[0],
                h.reserved[1]
            ],
            [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
        );
        assert_eq!(h.to_bytes(), b);
    }

    /// width * height * 2 overflows u64 for dimensions near 2^32, so it is
    /// computed in u128: with u64, debug builds would panic on network input
    /// and release builds wrap and accept this header (65536 bytes "for"
    /// 2147516416 x 4294901761 pixels).
    #[test]
    fn validate_overflowing_dimensions() {
        let h = LiveHeader {
            image_size: 65536,
            width: 0x8000_8000,
            height: 0xFFFF_0001,
            ..Default::default()
        };
        assert!(matches!(
            h.validate(u32::MAX),
            Err(LiveHeaderError::Inconsistent { .. })
        ));
        let h = LiveHeader {
            image_size: 0,
            width: u32::MAX,
            height: u32::MAX,
            ..Default::default()
        };
        assert!(h.validate(u32::MAX).is_err());
    }
}
