//! Framing over any byte stream: one message at a time, resynchronising on
//! bad markers, with the additional data that may follow a message.

use std::fmt;
use std::io::{self, Read};

use super::message::{Message, MESSAGE_LEN, START_MARKER};

/// Default limit for `additionalDataBytes`: 64 MiB.
pub const DEFAULT_ADDITIONAL_DATA_LIMIT: u32 = 64 * 1024 * 1024;

const START_BYTES: [u8; 4] = START_MARKER.to_le_bytes();

/// Why a message could not be read from the stream.
#[derive(Debug)]
pub enum FrameError {
    /// The stream ended cleanly at a message boundary.
    Closed,
    /// The stream ended inside a message or its additional data.
    EofMidMessage {
        /// Bytes of the message (or of its additional data) received.
        got: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// A read failed (for example a read timeout) after part of a message
    /// arrived. For messages the bytes are kept: the next `read_message` call
    /// resumes where this one stopped.
    Partial {
        /// Bytes received so far.
        got: usize,
        /// Bytes expected.
        expected: usize,
        /// The read error.
        source: io::Error,
    },
    /// `additionalDataBytes` exceeds the limit. Nothing was read or allocated;
    /// the next `read_message` resynchronises past the data if it is there.
    TooLarge {
        /// The length the header claims.
        size: u32,
        /// The configured limit.
        limit: u32,
    },
    /// A read failed before any byte of a message arrived.
    Io(io::Error),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Closed => f.write_str("connection closed by the peer"),
            FrameError::EofMidMessage { got, expected } => write!(
                f,
                "connection closed in the middle of a message ({got} of {expected} bytes received)"
            ),
            FrameError::Partial {
                got,
                expected,
                source,
            } => write!(
                f,
                "read failed after {got} of {expected} bytes of a message: {source}"
            ),
            FrameError::TooLarge { size, limit } => write!(
                f,
                "additional data of {size} bytes exceeds the limit of {limit} bytes"
            ),
            FrameError::Io(e) => write!(f, "read failed: {e}"),
        }
    }
}

impl std::error::Error for FrameError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FrameError::Partial { source, .. } | FrameError::Io(source) => Some(source),
            _ => None,
        }
    }
}

/// Counters kept by a [`FrameReader`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FramingStats {
    /// Messages decoded.
    pub messages: u64,
    /// Times the reader had to skip bytes to find the next valid message.
    pub resyncs: u64,
    /// Bytes skipped while resynchronising.
    pub bytes_skipped: u64,
}

/// Reads messages from a byte stream, one at a time.
///
/// On a bad start or end marker it scans forward for the next start marker
/// and resynchronises, counting the bytes skipped. It keeps the bytes of a
/// partially read message across calls, so a read timeout does not lose sync.
///
/// ```
/// use flamingo_client::codec::{CommandCode, FrameReader, Message};
///
/// let a = Message::new(CommandCode::SYSTEM_STATE_GET).to_bytes();
/// let b = Message::new(CommandCode::STAGE_HALT).to_bytes();
/// let mut stream = Vec::new();
/// stream.extend_from_slice(&a);
/// stream.extend_from_slice(b"garbage!");
/// stream.extend_from_slice(&b);
///
/// let mut r = FrameReader::new(1024);
/// let mut src = &stream[..];
/// assert_eq!(r.read_message(&mut src).unwrap().code, CommandCode::SYSTEM_STATE_GET);
/// assert_eq!(r.read_message(&mut src).unwrap().code, CommandCode::STAGE_HALT);
/// assert_eq!(r.stats().bytes_skipped, 8);
/// assert_eq!(r.stats().resyncs, 1);
/// ```
#[derive(Debug)]
pub struct FrameReader {
    buf: [u8; MESSAGE_LEN],
    filled: usize,
    skipped_since_last: u64,
    limit: u32,
    stats: FramingStats,
}

impl FrameReader {
    /// A reader refusing additional data above `additional_data_limit` bytes.
    pub fn new(additional_data_limit: u32) -> FrameReader {
        FrameReader {
            buf: [0; MESSAGE_LEN],
            filled: 0,
            skipped_since_last: 0,
            limit: additional_data_limit,
            stats: FramingStats::default(),
        }
    }

    /// The additional-data limit in bytes.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Counters so far.
    pub fn stats(&self) -> FramingStats {
        self.stats
    }

    /// Reads exactly one valid message (not its additional data).
    pub fn read_message<R: Read + ?Sized>(&mut self, r: &mut R) -> Result<Message, FrameError> {
        loop {
            while self.filled < MESSAGE_LEN {
                match r.read(&mut self.buf[self.filled..]) {
                    Ok(0) => {
                        let got = self.filled;
                        self.filled = 0;
                        return Err(if got == 0 && self.skipped_since_last == 0 {
                            FrameError::Closed
                        } else {
                            FrameError::EofMidMessage {
                                got,
                                expected: MESSAGE_LEN,
                            }
                        });
                    }
                    Ok(n) => self.filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        return Err(if self.filled == 0 {
                            FrameError::Io(e)
                        } else {
                            FrameError::Partial {
                                got: self.filled,
                                expected: MESSAGE_LEN,
                                source: e,
                            }
                        })
                    }
                }
            }
            match Message::decode(&self.buf) {
                Ok(m) => {
                    self.filled = 0;
                    self.stats.messages += 1;
                    if self.skipped_since_last > 0 {
                        self.stats.resyncs += 1;
                        log::warn!(
                            "resynchronised after skipping {} bytes of garbage",
                            self.skipped_since_last
                        );
                        self.skipped_since_last = 0;
                    }
                    return Ok(m);
                }
                Err(e) => {
                    // Find the next place the start marker could begin (a full
                    // marker, or a prefix of one at the very end) after offset 0.
                    let at = find_marker(&self.buf[1..]).map_or(MESSAGE_LEN, |p| p + 1);
                    if self.skipped_since_last == 0 {
                        log::debug!("{e}; scanning for the next start marker");
                    }
                    self.buf.copy_within(at.., 0);
                    self.filled = MESSAGE_LEN - at;
                    self.skipped_since_last += at as u64;
                    self.stats.bytes_skipped += at as u64;
                }
            }
        }
    }

    /// Reads `len` bytes of additional data into `out` (cleared first). The
    /// vector grows only as bytes actually arrive (at most about twice what
    /// arrived); a `len` above the limit is refused before anything is read
    /// or allocated.
    pub fn read_additional<R: Read + ?Sized>(
        &mut self,
        r: &mut R,
        len: u32,
        out: &mut Vec<u8>,
    ) -> Result<(), FrameError> {
        out.clear();
        if len > self.limit {
            return Err(FrameError::TooLarge {
                size: len,
                limit: self.limit,
            });
        }
        let expected = len as usize;
        // `take` + `read_to_end` grows the vector with what actually arrives
        // (amortised doubling, no repeated zero-filling), so a lying length
        // costs nothing up front.
        match r.take(u64::from(len)).read_to_end(out) {
            Ok(_) if out.len() == expected => Ok(()),
            Ok(_) => Err(FrameError::EofMidMessage {
                got: out.len(),
                expected,
            }),
            Err(source) => Err(FrameError::Partial {
                got: out.len(),
                expected,
                source,
            }),
        }
    }

    /// Reads one message and its additional data (into `data`, cleared first).
    pub fn read_frame<R: Read + ?Sized>(
        &mut self,
        r: &mut R,
        data: &mut Vec<u8>,
    ) -> Result<Message, FrameError> {
        let m = self.read_message(r)?;
        self.read_additional(r, m.additional_data_len, data)?;
        Ok(m)
    }
}

/// Position of the first full start marker in `hay`, or of a marker prefix
/// that runs to the end of `hay`.
fn find_marker(hay: &[u8]) -> Option<usize> {
    (0..hay.len()).find(|&i| {
        let n = (hay.len() - i).min(4);
        hay[i..i + n] == START_BYTES[..n]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::CommandCode;

    fn msg(code: u32) -> [u8; 128] {
        Message::new(CommandCode(code)).to_bytes()
    }

    /// A reader that hands out at most `n` bytes per call and then fails with a timeout once.
    struct Trickle<'a> {
        data: &'a [u8],
        n: usize,
        fail_at: Option<usize>,
        pos: usize,
    }
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if Some(self.pos) == self.fail_at {
                self.fail_at = None;
                return Err(io::ErrorKind::TimedOut.into());
            }
            let n = self.n.min(buf.len()).min(self.data.len() - self.pos);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    #[test]
    fn closed_vs_eof_mid_message() {
        let mut r = FrameReader::new(10);
        assert!(matches!(
            r.read_message(&mut &[][..]),
            Err(FrameError::Closed)
        ));
        let half = &msg(1)[..60];
        assert!(matches!(
            r.read_message(&mut &half[..]),
            Err(FrameError::EofMidMessage {
                got: 60,
                expected: 128
            })
        ));
    }

    #[test]
    fn partial_read_resumes() {
        let data = msg(7);
        let mut t = Trickle {
            data: &data,
            n: 5,
            fail_at: Some(50),
            pos: 0,
        };
        let mut r = FrameReader::new(10);
        match r.read_message(&mut t) {
            Err(FrameError::Partial { got: 50, .. }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(r.read_message(&mut t).unwrap().code, CommandCode(7));
    }

    #[test]
    fn marker_split_across_boundary() {
        // 126 bytes of garbage ending with the first two marker bytes, then the rest.
        let good = msg(9);
        let mut s = vec![0xAAu8; 126];
        s.extend_from_slice(&good);
        let mut r = FrameReader::new(10);
        let m = r
            .read_message(&mut Trickle {
                data: &s,
                n: 3,
                fail_at: None,
                pos: 0,
            })
            .unwrap();
        assert_eq!(m.code, CommandCode(9));
        assert_eq!(r.stats().bytes_skipped, 126);
    }

    #[test]
    fn bad_end_marker_resyncs_to_next() {
        let mut bad = msg(1);
        bad[127] = 0;
        let mut s = bad.to_vec();
        s.extend_from_slice(&msg(2));
        let mut r = FrameReader::new(10);
        assert_eq!(r.read_message(&mut &s[..]).unwrap().code, CommandCode(2));
        assert_eq!(r.stats().bytes_skipped, 128);
    }

    #[test]
    fn additional_data_limit_and_eof() {
        let mut r = FrameReader::new(100);
        let mut out = Vec::new();
        assert!(matches!(
            r.read_additional(&mut &[0u8; 10][..], 101, &mut out),
            Err(FrameError::TooLarge {
                size: 101,
                limit: 100
            })
        ));
        assert_eq!(out.capacity(), 0);
        assert!(matches!(
            r.read_additional(&mut &[1u8; 10][..], 20, &mut out),
            Err(FrameError::EofMidMessage {
                got: 10,
                expected: 20
            })
        ));
        r.read_additional(&mut &[1u8; 10][..], 10, &mut out)
            .unwrap();
        assert_eq!(out, [1u8; 10]);
    }

    #[test]
    fn lying_length_never_allocates_claim() {
        let mut r = FrameReader::new(u32::MAX);
        let mut out = Vec::new();
        let _ = r.read_additional(&mut &[1u8; 10][..], u32::MAX, &mut out);
        assert!(out.capacity() <= 2 * 64 * 1024, "{}", out.capacity());
    }

    /// A reader that serves `n` bytes per call. It writes 0xEE into the part
    /// of each buffer it does not fill (the `Read` contract allows this) and
    /// counts, on later calls, how many of those bytes were zeroed again
    /// before being offered: the zero-filling work spent on bytes that had
    /// already been zero-filled once.
    struct Rezeroed<'a> {
        data: &'a [u8],
        n: usize,
        pos: usize,
        scribbled_to: usize,
        rezeroed: usize,
    }
    impl Read for Rezeroed<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let seen = self.scribbled_to.saturating_sub(self.pos).min(buf.len());
            self.rezeroed += buf[..seen].iter().filter(|&&b| b == 0).count();
            let n = self.n.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            buf[n..].fill(0xEE);
            self.data = &self.data[n..];
            self.pos += n;
            self.scribbled_to = self.pos + (buf.len() - n);
            Ok(n)
        }
    }

    /// A lying header costs at most one 64 KiB chunk: after 10 bytes of a
    /// claimed 4 GiB arrive, the vector holds no more than 64 KiB.
    #[test]
    fn lying_header_costs_one_chunk() {
        let mut r = FrameReader::new(u32::MAX);
        let mut out = Vec::new();
        let e = r.read_additional(&mut &[1u8; 10][..], u32::MAX, &mut out);
        assert!(matches!(e, Err(FrameError::EofMidMessage { got: 10, .. })));
        assert!(out.capacity() <= 64 * 1024, "{}", out.capacity());
    }

    /// Zero-filling is linear in the length: no byte offered to `read()` is
    /// zero-filled twice, even when the stream delivers small reads (4 KiB
    /// reads of 1 MiB here). Truncating the vector back to the received
    /// length after every read and resizing it again would zero-fill about
    /// 64 MiB, quadratic in the length.
    #[test]
    fn zero_fill_is_linear() {
        let data = vec![3u8; 1 << 20];
        let mut src = Rezeroed {
            data: &data,
            n: 4096,
            pos: 0,
            scribbled_to: 0,
            rezeroed: 0,
        };
        let mut r = FrameReader::new(u32::MAX);
        let mut out = Vec::new();
        r.read_additional(&mut src, data.len() as u32, &mut out)
            .unwrap();
        assert_eq!(out, data);
        assert_eq!(src.rezeroed, 0, "bytes zero-filled more than once");
    }

    #[test]
    fn eof_after_garbage_is_mid_message_and_not_counted_twice() {
        // 200 bytes without 0x54: 128 are skipped, 72 are left when the stream ends.
        let s = [0xAAu8; 200];
        let mut r = FrameReader::new(0);
        match r.read_message(&mut &s[..]) {
            Err(FrameError::EofMidMessage {
                got: 72,
                expected: 128,
            }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(r.stats().bytes_skipped, 128);
        assert_eq!(r.stats().messages, 0);
        assert_eq!(r.stats().resyncs, 0);
    }

    #[test]
    fn garbage_start_marker_can_frame_a_phantom() {
        // No checksum: a start marker in garbage followed 124 bytes later by an
        // end marker is a message to any receiver. protocol.md documents this.
        let real = msg(5);
        let mut s = START_BYTES.to_vec();
        s.extend_from_slice(&real[4..]); // a copy of a message: a phantom
        s.extend_from_slice(&real);
        let mut r = FrameReader::new(0);
        assert_eq!(r.read_message(&mut &s[..]).unwrap().code, CommandCode(5));
        assert_eq!(r.stats().bytes_skipped, 0);
    }

    #[test]
    fn resumes_additional_data_only_through_garbage() {
        // A read error inside additional data is not resumable: the rest of
        // the data is skipped as garbage by the next read_message.
        let head = Message::new(CommandCode(0x1009)).with_additional_data_len(40);
        let mut s = head.to_bytes().to_vec();
        s.extend_from_slice(&[0x11; 40]);
        s.extend_from_slice(&msg(6));
        let mut t = Trickle {
            data: &s,
            n: 16,
            fail_at: Some(128 + 16),
            pos: 0,
        };
        let mut r = FrameReader::new(100);
        let mut out = Vec::new();
        match r.read_frame(&mut t, &mut out) {
            Err(FrameError::Partial {
                got: 16,
                expected: 40,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(out, [0x11; 16]);
        assert_eq!(r.read_message(&mut t).unwrap().code, CommandCode(6));
        assert_eq!(r.stats().bytes_skipped, 24);
    }
}
