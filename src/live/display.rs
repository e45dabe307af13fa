//! 16-bit to 8-bit display conversion: what a GUI needs to paint a frame.

/// A display window mapping 16-bit pixel values to 8-bit gray levels, as a
/// 65,536-entry lookup table.
///
/// With `min < max`, values at or below `min` are 0, values at or above
/// `max` are 255, and values between map linearly, rounded to the nearest
/// level: `round((v - min) * 255 / (max - min))`, computed exactly in
/// integers.
///
/// With `min >= max` the window is empty and the mapping is a threshold:
/// values at or below `min` are 0, values above it are 255 (what ImageJ
/// shows for a zero-width display range).
///
/// Building the table costs about as much as converting 65,536 pixels; a
/// GUI keeps one and rebuilds it only when the window changes (see
/// [`window`](DisplayLut::window)). Converting is one table look-up per
/// pixel, on the calling thread; BENCHMARKS.md ("Imaging") has the time
/// for a 2048 x 2048 frame.
///
/// ```
/// use flamingo_client::live::DisplayLut;
///
/// let lut = DisplayLut::new(100, 1100);
/// assert_eq!(lut.map(0), 0);
/// assert_eq!(lut.map(100), 0);
/// assert_eq!(lut.map(600), 128); // 500 * 255 / 1000 = 127.5, rounded up
/// assert_eq!(lut.map(1100), 255);
/// assert_eq!(lut.map(65535), 255);
///
/// let mut out = [0u8; 3];
/// lut.apply(&[50, 350, 5000], &mut out);
/// assert_eq!(out, [0, 64, 255]);
///
/// // An empty window is a threshold at min.
/// let t = DisplayLut::new(10, 10);
/// assert_eq!((t.map(10), t.map(11)), (0, 255));
/// ```
#[derive(Clone)]
pub struct DisplayLut {
    min: u16,
    max: u16,
    table: Box<[u8]>,
}

impl DisplayLut {
    /// The table for the window `min..=max` (see the type's documentation
    /// for `min >= max`).
    pub fn new(min: u16, max: u16) -> DisplayLut {
        let mut table = vec![0u8; 1 << 16].into_boxed_slice();
        if min < max {
            let range = u32::from(max - min);
            let lo = usize::from(min);
            let hi = usize::from(max);
            for (d, slot) in table[lo..=hi].iter_mut().enumerate() {
                // d <= range <= 65535: d * 255 * 2 fits u32 easily.
                let d = d as u32;
                *slot = ((d * 255 * 2 + range) / (range * 2)) as u8;
            }
            table[hi..].fill(255);
        } else {
            table[usize::from(min) + 1..].fill(255);
        }
        DisplayLut { min, max, table }
    }

    /// The window from a live header's display scale (`scale_min`,
    /// `scale_max`), each clamped to 0..=65535.
    pub fn from_scale(scale_min: u32, scale_max: u32) -> DisplayLut {
        let clamp = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
        DisplayLut::new(clamp(scale_min), clamp(scale_max))
    }

    /// The window `(min, max)` this table was built for.
    pub fn window(&self) -> (u16, u16) {
        (self.min, self.max)
    }

    /// The gray level of one pixel value.
    #[inline]
    pub fn map(&self, value: u16) -> u8 {
        self.table[usize::from(value)]
    }

    /// Converts `pixels` into `out`, one byte per pixel.
    ///
    /// # Panics
    ///
    /// If `out.len() != pixels.len()`.
    pub fn apply(&self, pixels: &[u16], out: &mut [u8]) {
        assert_eq!(
            out.len(),
            pixels.len(),
            "the output needs one byte per pixel"
        );
        let table: &[u8; 1 << 16] = (&*self.table).try_into().expect("65536 entries");
        for (o, &p) in out.iter_mut().zip(pixels) {
            *o = table[usize::from(p)];
        }
    }

    /// Converts little-endian `u16` pixels as received on the wire
    /// ([`Frame::as_bytes`](super::Frame::as_bytes)) into `out`, one byte
    /// per pixel, without converting them to `u16` first.
    ///
    /// # Panics
    ///
    /// If `out.len() * 2 != pixels_le.len()`.
    pub fn apply_le_bytes(&self, pixels_le: &[u8], out: &mut [u8]) {
        assert_eq!(
            out.len() * 2,
            pixels_le.len(),
            "the output needs one byte per two-byte pixel"
        );
        let table: &[u8; 1 << 16] = (&*self.table).try_into().expect("65536 entries");
        for (o, p) in out.iter_mut().zip(pixels_le.chunks_exact(2)) {
            *o = table[usize::from(u16::from_le_bytes([p[0], p[1]]))];
        }
    }
}

impl std::fmt::Debug for DisplayLut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DisplayLut")
            .field("min", &self.min)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table against the formula computed in floating point.
    #[test]
    fn matches_the_formula_everywhere() {
        for (min, max) in [(0u16, 65535u16), (100, 1100), (0, 1), (4000, 4255), (7, 9)] {
            let lut = DisplayLut::new(min, max);
            for v in 0..=u16::MAX {
                let want = if v <= min {
                    0.0
                } else if v >= max {
                    255.0
                } else {
                    // Exact halves round up, as the integer formula does.
                    (f64::from(v - min) * 255.0 / f64::from(max - min) + 0.5).floor()
                };
                assert_eq!(f64::from(lut.map(v)), want, "v {v} in {min}..{max}");
            }
        }
    }

    #[test]
    fn monotonic_and_threshold() {
        let lut = DisplayLut::new(300, 200);
        assert_eq!(lut.window(), (300, 200));
        assert_eq!(lut.map(300), 0);
        assert_eq!(lut.map(301), 255);
        let lut = DisplayLut::new(u16::MAX, u16::MAX);
        assert_eq!(lut.map(u16::MAX), 0);
        let lut = DisplayLut::new(1000, 3000);
        let mut last = 0;
        for v in 0..=u16::MAX {
            assert!(lut.map(v) >= last);
            last = lut.map(v);
        }
    }

    #[test]
    fn from_scale_clamps() {
        assert_eq!(DisplayLut::from_scale(5, 70_000).window(), (5, 65535));
        assert_eq!(DisplayLut::from_scale(0, 0).window(), (0, 0));
    }

    #[test]
    fn bytes_and_words_agree() {
        let px: Vec<u16> = (0..1000u32).map(|i| (i * 65) as u16).collect();
        let mut le = Vec::new();
        for p in &px {
            le.extend_from_slice(&p.to_le_bytes());
        }
        let lut = DisplayLut::new(1000, 50_000);
        let (mut a, mut b) = (vec![0; px.len()], vec![0; px.len()]);
        lut.apply(&px, &mut a);
        lut.apply_le_bytes(&le, &mut b);
        assert_eq!(a, b);
    }
}
