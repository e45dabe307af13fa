//! The deterministic test pattern every simulated camera frame carries.
//!
//! Pixel `(x, y)` of frame number `f` has the value
//!
//! ```text
//! ((x + 3·y + 7·f) XOR (y << 6) XOR (f << 12)) mod 65536
//! ```
//!
//! computed with wrapping 32-bit arithmetic. It changes with every pixel along
//! a row, every row and every frame, so a test can check each pixel of a
//! received frame (and that it is the frame it claims to be) with
//! [`pattern_pixel`] or [`verify_frame`].

/// The value of pixel `(x, y)` in frame `frame`:
/// `((x + 3·y + 7·frame) XOR (y << 6) XOR (frame << 12)) mod 65536`, with
/// wrapping 32-bit arithmetic. Every live frame the simulator sends carries
/// this pattern, for the frame number in its header.
///
/// ```
/// use flamingo_client::sim::pattern_pixel;
///
/// assert_eq!(pattern_pixel(0, 0, 0), 0);
/// assert_eq!(pattern_pixel(5, 0, 0), 5);
/// assert_eq!(pattern_pixel(0, 1, 0), 3 ^ 64);
/// assert_eq!(pattern_pixel(0, 0, 1), 7 ^ 4096);
/// ```
#[inline]
pub fn pattern_pixel(x: u32, y: u32, frame: u32) -> u16 {
    let a = x
        .wrapping_add(y.wrapping_mul(3))
        .wrapping_add(frame.wrapping_mul(7));
    (a ^ (y << 6) ^ (frame << 12)) as u16
}

/// Fills `out` with the pixels of frame `frame` as the live port sends them:
/// `width × height` little-endian `u16`, row-major. `out` is resized to
/// `width × height × 2` bytes; its allocation is reused.
///
/// ```
/// use flamingo_client::sim::{pattern_pixel, render_frame};
///
/// let mut buf = Vec::new();
/// render_frame(4, 3, 9, &mut buf);
/// assert_eq!(buf.len(), 4 * 3 * 2);
/// let px = u16::from_le_bytes([buf[2 * (4 * 2 + 1)], buf[2 * (4 * 2 + 1) + 1]]);
/// assert_eq!(px, pattern_pixel(1, 2, 9));
/// ```
pub fn render_frame(width: u32, height: u32, frame: u32, out: &mut Vec<u8>) {
    let w = width as usize;
    out.clear();
    out.resize(w * height as usize * 2, 0);
    if w == 0 {
        return;
    }
    for (y, row) in out.chunks_exact_mut(w * 2).enumerate() {
        let y = y as u32;
        let base = y.wrapping_mul(3).wrapping_add(frame.wrapping_mul(7));
        let mix = (y << 6) ^ (frame << 12);
        for (x, px) in row.chunks_exact_mut(2).enumerate() {
            let v = ((x as u32).wrapping_add(base) ^ mix) as u16;
            px.copy_from_slice(&v.to_le_bytes());
        }
    }
}

/// Checks received pixel bytes against the pattern of frame `frame`.
/// Returns `None` when every pixel matches, otherwise the first wrong pixel
/// `(x, y)`. A buffer of the wrong length reports `(width, height)`.
///
/// ```
/// use flamingo_client::sim::{render_frame, verify_frame};
///
/// let mut buf = Vec::new();
/// render_frame(8, 8, 3, &mut buf);
/// assert_eq!(verify_frame(8, 8, 3, &buf), None);
/// assert_eq!(verify_frame(8, 8, 4, &buf), Some((0, 0)));
/// ```
pub fn verify_frame(width: u32, height: u32, frame: u32, pixels: &[u8]) -> Option<(u32, u32)> {
    if pixels.len() != width as usize * height as usize * 2 {
        return Some((width, height));
    }
    let mut i = 0;
    for y in 0..height {
        for x in 0..width {
            let v = u16::from_le_bytes([pixels[i], pixels[i + 1]]);
            if v != pattern_pixel(x, y, frame) {
                return Some((x, y));
            }
            i += 2;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_matches_pixel_function() {
        let mut buf = Vec::new();
        for f in [0, 1, 77, u32::MAX] {
            render_frame(37, 19, f, &mut buf);
            assert_eq!(verify_frame(37, 19, f, &buf), None);
        }
        render_frame(0, 5, 1, &mut buf);
        assert!(buf.is_empty());
    }

    #[test]
    fn pattern_is_not_trivial() {
        assert_ne!(pattern_pixel(1, 0, 0), pattern_pixel(0, 1, 0));
        assert_ne!(pattern_pixel(0, 0, 1), pattern_pixel(0, 0, 2));
        assert_ne!(pattern_pixel(0, 1, 0), pattern_pixel(3, 0, 0));
    }
}
