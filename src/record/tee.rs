//! One direction of a proxied connection: bytes are read from one socket in
//! chunks, parsed into records, and written on unchanged.
//!
//! A chunk is forwarded as soon as the parser has gone through it, before
//! the next read: the records of the messages it completes are queued
//! before the peer can have received them, so a reply (which can only
//! follow its request's bytes) is always queued after its request, and
//! the file's order is the order of cause and effect.

use std::io::{self, Read};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use crate::transport;

/// Reads `src` in chunks and serves their bytes through [`Read`] (for the
/// codec's framing) or [`consume`](Tee::consume) (for payloads, without a
/// copy); a chunk goes on to `dst` once it has been served whole, before
/// the next read.
pub(crate) struct Tee<'a> {
    src: &'a TcpStream,
    dst: &'a TcpStream,
    stopping: &'a AtomicBool,
    forwarded: &'a AtomicU64,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// The chunk in `buf[..end]` has not been forwarded yet.
    pending: bool,
    /// When the chunk being served arrived.
    pub(crate) fill_time: Instant,
    /// Bytes forwarded over this direction's life.
    pub(crate) total: u64,
    /// Set when writing to `dst` failed (the receiving side is gone).
    pub(crate) write_error: Option<io::Error>,
}

impl<'a> Tee<'a> {
    pub(crate) fn new(
        src: &'a TcpStream,
        dst: &'a TcpStream,
        stopping: &'a AtomicBool,
        forwarded: &'a AtomicU64,
        chunk: usize,
    ) -> Tee<'a> {
        Tee {
            src,
            dst,
            stopping,
            forwarded,
            buf: vec![0; chunk.max(1)],
            pos: 0,
            end: 0,
            pending: false,
            fill_time: Instant::now(),
            total: 0,
            write_error: None,
        }
    }

    /// Forwards the chunk served so far, if not done yet.
    pub(crate) fn forward_pending(&mut self) -> io::Result<()> {
        if !self.pending {
            return Ok(());
        }
        self.pending = false;
        if let Err(e) = io::Write::write_all(&mut &*self.dst, &self.buf[..self.end]) {
            let kind = e.kind();
            self.write_error = Some(e);
            return Err(io::Error::new(kind, "forwarding failed"));
        }
        self.total += self.end as u64;
        self.forwarded.fetch_add(self.end as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Forwards the chunk just served, then reads the next one. `Ok(false)`
    /// at the end of the stream.
    fn fill(&mut self) -> io::Result<bool> {
        debug_assert_eq!(self.pos, self.end);
        self.forward_pending()?;
        loop {
            match (&mut &*self.src).read(&mut self.buf) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.fill_time = Instant::now();
                    self.pos = 0;
                    self.end = n;
                    self.pending = true;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if transport::is_poll_timeout(&e) && !self.stopping.load(Ordering::SeqCst) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Passes `n` bytes of the stream to `f` in the pieces they arrived in;
    /// returns how many there were (fewer than `n` if the stream ended).
    pub(crate) fn consume(&mut self, n: u64, mut f: impl FnMut(&[u8])) -> io::Result<u64> {
        let mut done = 0u64;
        while done < n {
            if self.pos == self.end && !self.fill()? {
                break;
            }
            let k = (self.end - self.pos).min(usize::try_from(n - done).unwrap_or(usize::MAX));
            f(&self.buf[self.pos..self.pos + k]);
            self.pos += k;
            done += k as u64;
        }
        Ok(done)
    }

    /// Forwards everything until the stream ends, parsing nothing.
    pub(crate) fn pass_through(&mut self) -> io::Result<()> {
        self.pos = self.end;
        while self.fill()? {
            self.pos = self.end;
        }
        Ok(())
    }

    /// Reads until `out` is full or the stream ends; returns the bytes read.
    pub(crate) fn read_full(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < out.len() {
            match self.read(&mut out[n..])? {
                0 => break,
                k => n += k,
            }
        }
        Ok(n)
    }
}

impl Read for Tee<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.end && !self.fill()? {
            return Ok(0);
        }
        let k = (self.end - self.pos).min(out.len());
        out[..k].copy_from_slice(&self.buf[self.pos..self.pos + k]);
        self.pos += k;
        Ok(k)
    }
}

/// Keeps every `s`-th pixel of every `s`-th row of a frame as its bytes
/// stream past.
pub(crate) struct Subsampler {
    width: u64,
    s: u64,
    sub_w: u64,
    /// Byte offset in the image of the next byte fed.
    off: u64,
    pub(crate) out: Vec<u8>,
}

impl Subsampler {
    /// For a frame `width` pixels wide whose subsampled pixels take `len`
    /// bytes (from `subsampled_len`).
    pub(crate) fn new(width: u32, s: u16, len: usize) -> Subsampler {
        let s = u64::from(s.max(1));
        Subsampler {
            width: u64::from(width),
            s,
            sub_w: u64::from(width).div_ceil(s),
            off: 0,
            out: vec![0; len],
        }
    }

    pub(crate) fn feed(&mut self, chunk: &[u8]) {
        let start = self.off;
        self.off += chunk.len() as u64;
        if self.width == 0 {
            return;
        }
        if self.s == 1 {
            let a = usize::try_from(start)
                .unwrap_or(usize::MAX)
                .min(self.out.len());
            let b = (a + chunk.len()).min(self.out.len());
            self.out[a..b].copy_from_slice(&chunk[..b - a]);
            return;
        }
        let row_bytes = self.width * 2;
        let mut b = start;
        let end = self.off;
        while b < end {
            let row = b / row_bytes;
            let row_end = (row + 1) * row_bytes;
            let seg_end = row_end.min(end);
            if row.is_multiple_of(self.s) {
                let sub_row = row / self.s;
                // Kept columns whose bytes fall in [b, seg_end).
                let first_col = (b - row * row_bytes) / 2;
                // The first kept column at or after it (its first byte may
                // have come in the previous chunk).
                let mut col = first_col.div_ceil(self.s) * self.s;
                while col < self.width {
                    let pb = row * row_bytes + col * 2;
                    if pb >= seg_end {
                        break;
                    }
                    let dst = ((sub_row * self.sub_w + col / self.s) * 2) as usize;
                    for k in 0..2u64 {
                        let byte = pb + k;
                        if byte >= b && byte < seg_end {
                            if let Some(d) = self.out.get_mut(dst + k as usize) {
                                *d = chunk[(byte - start) as usize];
                            }
                        }
                    }
                    col += self.s;
                }
            }
            b = seg_end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::format::subsampled_len;

    fn reference(w: u32, h: u32, s: u16, img: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for y in (0..h).step_by(usize::from(s)) {
            for x in (0..w).step_by(usize::from(s)) {
                let i = ((y * w + x) * 2) as usize;
                out.extend_from_slice(&img[i..i + 2]);
            }
        }
        out
    }

    #[test]
    fn subsampling_matches_a_reference_in_any_chunking() {
        for (w, h) in [(1, 1), (5, 3), (7, 7), (16, 4), (13, 11)] {
            let img: Vec<u8> = (0..w * h * 2).map(|i| (i * 7 + 3) as u8).collect();
            for s in [1u16, 2, 3, 4, 20] {
                let want = reference(w, h, s, &img);
                for chunk in [1usize, 2, 3, 5, 64, 10_000] {
                    let len = subsampled_len(w, h, s) as usize;
                    let mut sub = Subsampler::new(w, s, len);
                    for c in img.chunks(chunk) {
                        sub.feed(c);
                    }
                    assert_eq!(sub.out, want, "{w}x{h} s={s} chunk={chunk}");
                }
            }
        }
    }
}
