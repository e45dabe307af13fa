//! The recording file format, version 1: the file header, the record
//! framing and the body of every record kind (protocol.md, section 14).
//!
//! ```text
//! file    = header record*
//! header  = "FLAMREC" 0x00 | version u16 | header length u16 | flags u32     (16 bytes)
//! record  = body length u32 | kind u8 | detail u8 | reserved u16
//!         | connection u32 | time ns u64 | body | crc32 u32                   (24 + body bytes)
//! ```
//!
//! Every integer is little-endian. The CRC-32 (IEEE) covers the record's
//! header and body, so a flipped bit anywhere in a record is detected.

use std::fmt;
use std::time::Duration;

use byteorder::{ByteOrder, LittleEndian as LE};

use crate::codec::{LiveHeader, Message, LIVE_HEADER_LEN, MESSAGE_LEN};

/// The first 8 bytes of every recording.
pub const MAGIC: [u8; 8] = *b"FLAMREC\0";
/// The format version this library writes (and the newest it reads).
pub const VERSION: u16 = 1;
/// Bytes of the file header.
pub const FILE_HEADER_LEN: usize = 16;
/// Bytes in front of a record's body.
pub const RECORD_HEADER_LEN: usize = 20;
/// Bytes after a record's body (its checksum).
pub const RECORD_TRAILER_LEN: usize = 4;
/// The largest record body the writer produces and the reader accepts by
/// default: a full 64 MiB live frame (the client's default image limit) plus
/// its fixed fields, with room to spare.
pub const MAX_BODY_LEN: u32 = 64 * 1024 * 1024 + 64 * 1024;

/// Record kinds as numbered in the file.
pub(crate) mod kind {
    pub const META: u8 = 1;
    pub const OPEN: u8 = 2;
    pub const MESSAGE: u8 = 3;
    pub const SKIPPED: u8 = 4;
    pub const FRAME: u8 = 5;
    pub const UNPARSED: u8 = 6;
    pub const STREAM_END: u8 = 7;
    pub const NOTE: u8 = 8;
    pub const END: u8 = 9;
}

/// Which way bytes went through the recorder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the client (the vendor software, a script) to the instrument.
    ToInstrument,
    /// From the instrument to the client.
    ToClient,
}

impl Direction {
    pub(crate) fn wire(self) -> u8 {
        match self {
            Direction::ToInstrument => 0,
            Direction::ToClient => 1,
        }
    }
    pub(crate) fn from_wire(v: u8) -> Option<Direction> {
        match v {
            0 => Some(Direction::ToInstrument),
            1 => Some(Direction::ToClient),
            _ => None,
        }
    }
    /// `"to_instrument"` or `"to_client"`.
    pub fn name(self) -> &'static str {
        match self {
            Direction::ToInstrument => "to_instrument",
            Direction::ToClient => "to_client",
        }
    }
}

/// Which of the instrument's two ports a connection is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Port {
    /// The command port (128-byte messages both ways).
    Command,
    /// The live image port (command port + 1).
    Live,
}

impl Port {
    pub(crate) fn wire(self) -> u8 {
        match self {
            Port::Command => 0,
            Port::Live => 1,
        }
    }
    pub(crate) fn from_wire(v: u8) -> Option<Port> {
        match v {
            0 => Some(Port::Command),
            1 => Some(Port::Live),
            _ => None,
        }
    }
    /// `"command"` or `"live"`.
    pub fn name(self) -> &'static str {
        match self {
            Port::Command => "command",
            Port::Live => "live",
        }
    }
}

/// How one direction of a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndCause {
    /// The sender closed its side (end of stream).
    Closed,
    /// Reading from the sender or writing to the receiver failed (a reset,
    /// a dead link).
    Failed,
    /// The recorder was stopped.
    Stopped,
}

impl EndCause {
    pub(crate) fn wire(self) -> u8 {
        match self {
            EndCause::Closed => 0,
            EndCause::Failed => 1,
            EndCause::Stopped => 2,
        }
    }
    pub(crate) fn from_wire(v: u8) -> Option<EndCause> {
        match v {
            0 => Some(EndCause::Closed),
            1 => Some(EndCause::Failed),
            2 => Some(EndCause::Stopped),
            _ => None,
        }
    }
    /// `"closed"`, `"failed"` or `"stopped"`.
    pub fn name(self) -> &'static str {
        match self {
            EndCause::Closed => "closed",
            EndCause::Failed => "failed",
            EndCause::Stopped => "stopped",
        }
    }
}

/// One record of a recording: when, on which connection, and what.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// Time since the recording started (monotonic clock).
    pub time: Duration,
    /// The connection it belongs to: 1, 2... in the order the recorder
    /// accepted them (command and live connections share the numbering);
    /// 0 for records about the whole recording.
    pub conn: u32,
    /// What happened.
    pub entry: Entry,
}

/// What a [`Record`] holds (new kinds may be added: match with a `_` arm).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Entry {
    /// Facts about the session, as `key = value` pairs (always the first
    /// record): `tool`, `started_unix_ms`, `listen`, `upstream`, `pixels`...
    Meta(Vec<(String, String)>),
    /// A client connected to the recorder, which connected to the instrument.
    Open {
        /// The port.
        port: Port,
        /// The client's address.
        peer: String,
    },
    /// One complete command-port message.
    Message {
        /// Its direction.
        direction: Direction,
        /// The 128-byte message, exactly as on the wire.
        message: Message,
        /// Bytes of its additional data that went through: normally
        /// `message.additional_data_len`; fewer if the stream ended inside
        /// the data; 0 if the length was above the limit a client accepts
        /// (64 MiB: the bytes that follow are then framed as messages again,
        /// as a client does).
        data_seen: u32,
        /// The additional data as recorded: the first bytes of it (all of
        /// it unless the recorder's per-message cap is smaller).
        data: Vec<u8>,
    },
    /// Bytes on the command port that were not part of any message (the
    /// framing skipped them to find the next start marker).
    Skipped {
        /// Their direction.
        direction: Direction,
        /// How many.
        bytes: u64,
    },
    /// One live frame (instrument to client).
    Frame {
        /// Its 40-byte header.
        header: LiveHeader,
        /// 0: no pixels recorded. `s > 0`: every `s`-th pixel of every
        /// `s`-th row, starting with the first (`s = 1`: every pixel).
        subsample: u16,
        /// Pixel bytes that went through: `header.image_size` unless the
        /// stream ended inside the frame.
        pixels_seen: u32,
        /// The recorded pixels: `ceil(width / s) * ceil(height / s)`
        /// little-endian `u16`, row-major (zero where the stream ended
        /// early); empty when `subsample` is 0.
        pixels: Vec<u8>,
    },
    /// From here on a stream could not be parsed (a live header that
    /// fails validation); its bytes were still forwarded, unrecorded.
    Unparsed {
        /// The direction.
        direction: Direction,
        /// Why parsing stopped.
        reason: String,
        /// The bytes that could not be parsed (the header).
        bytes: Vec<u8>,
    },
    /// One direction of a connection ended.
    StreamEnd {
        /// The direction that ended.
        direction: Direction,
        /// How.
        cause: EndCause,
        /// Bytes forwarded in that direction over the connection's life.
        bytes: u64,
        /// The error, if it failed.
        detail: String,
    },
    /// A remark of the recorder (an upstream connection that failed...).
    Note(String),
    /// The recording was finished cleanly (always the last record).
    End {
        /// Records written before this one.
        records: u64,
        /// Records lost because the disk could not keep up.
        dropped_records: u64,
        /// Payload bytes of those records.
        dropped_bytes: u64,
    },
    /// A record of a kind this version does not know (written by a newer
    /// version of the format); readers skip it.
    Unknown {
        /// The kind number.
        kind: u8,
        /// The record's detail byte.
        detail: u8,
        /// Its body.
        body: Vec<u8>,
    },
}

impl Entry {
    /// The kind's name, for reports (`"message"`, `"frame"`...).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Entry::Meta(_) => "meta",
            Entry::Open { .. } => "open",
            Entry::Message { .. } => "message",
            Entry::Skipped { .. } => "skipped",
            Entry::Frame { .. } => "frame",
            Entry::Unparsed { .. } => "unparsed",
            Entry::StreamEnd { .. } => "stream_end",
            Entry::Note(_) => "note",
            Entry::End { .. } => "end",
            Entry::Unknown { .. } => "unknown",
        }
    }

    /// Bytes this entry holds beyond its fixed fields (additional data,
    /// pixels, texts): what a queue of records costs in memory.
    pub fn payload_len(&self) -> usize {
        match self {
            Entry::Meta(kv) => kv.iter().map(|(k, v)| k.len() + v.len() + 2).sum(),
            Entry::Open { peer, .. } => peer.len(),
            Entry::Message { data, .. } => MESSAGE_LEN + data.len(),
            Entry::Frame { pixels, .. } => LIVE_HEADER_LEN + pixels.len(),
            Entry::Unparsed { reason, bytes, .. } => reason.len() + bytes.len(),
            Entry::StreamEnd { detail, .. } => detail.len(),
            Entry::Note(t) => t.len(),
            Entry::Unknown { body, .. } => body.len(),
            Entry::Skipped { .. } | Entry::End { .. } => 0,
        }
    }
}

/// `ceil(width / s) * ceil(height / s) * 2`: the pixel bytes a frame
/// subsampled by `s` records (0 for `s == 0`).
pub fn subsampled_len(width: u32, height: u32, s: u16) -> u64 {
    if s == 0 {
        return 0;
    }
    let s = u64::from(s);
    u64::from(width).div_ceil(s) * u64::from(height).div_ceil(s) * 2
}

/// The file header.
pub(crate) fn file_header() -> [u8; FILE_HEADER_LEN] {
    let mut h = [0u8; FILE_HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    LE::write_u16(&mut h[8..], VERSION);
    LE::write_u16(&mut h[10..], FILE_HEADER_LEN as u16);
    h
}

/// A record's kind, detail byte and body: `fixed` (encoded into the
/// caller's scratch buffer) followed by `tail` (borrowed: data, pixels).
pub(crate) struct Body<'a> {
    pub kind: u8,
    pub detail: u8,
    pub tail: &'a [u8],
}

/// Encodes `entry`'s fixed fields into `fixed` (cleared first) and returns
/// the rest of its body.
pub(crate) fn encode_body<'a>(entry: &'a Entry, fixed: &mut Vec<u8>) -> Body<'a> {
    fixed.clear();
    let put_u32 = |v: &mut Vec<u8>, x: u32| v.extend_from_slice(&x.to_le_bytes());
    let put_u64 = |v: &mut Vec<u8>, x: u64| v.extend_from_slice(&x.to_le_bytes());
    match entry {
        Entry::Meta(kv) => {
            for (k, v) in kv {
                fixed.extend_from_slice(k.as_bytes());
                fixed.push(b'=');
                fixed.extend_from_slice(v.as_bytes());
                fixed.push(b'\n');
            }
            Body {
                kind: kind::META,
                detail: 0,
                tail: &[],
            }
        }
        Entry::Open { port, peer } => Body {
            kind: kind::OPEN,
            detail: port.wire(),
            tail: peer.as_bytes(),
        },
        Entry::Message {
            direction,
            message,
            data_seen,
            data,
        } => {
            fixed.extend_from_slice(&message.to_bytes());
            put_u32(fixed, *data_seen);
            Body {
                kind: kind::MESSAGE,
                detail: direction.wire(),
                tail: data,
            }
        }
        Entry::Skipped { direction, bytes } => {
            put_u64(fixed, *bytes);
            Body {
                kind: kind::SKIPPED,
                detail: direction.wire(),
                tail: &[],
            }
        }
        Entry::Frame {
            header,
            subsample,
            pixels_seen,
            pixels,
        } => {
            fixed.extend_from_slice(&header.to_bytes());
            fixed.extend_from_slice(&subsample.to_le_bytes());
            fixed.extend_from_slice(&[0, 0]);
            put_u32(fixed, *pixels_seen);
            Body {
                kind: kind::FRAME,
                detail: 0,
                tail: pixels,
            }
        }
        Entry::Unparsed {
            direction,
            reason,
            bytes,
        } => {
            let r = &reason.as_bytes()[..reason.len().min(u16::MAX as usize)];
            fixed.extend_from_slice(&(r.len() as u16).to_le_bytes());
            fixed.extend_from_slice(r);
            Body {
                kind: kind::UNPARSED,
                detail: direction.wire(),
                tail: bytes,
            }
        }
        Entry::StreamEnd {
            direction,
            cause,
            bytes,
            detail,
        } => {
            fixed.push(cause.wire());
            put_u64(fixed, *bytes);
            Body {
                kind: kind::STREAM_END,
                detail: direction.wire(),
                tail: detail.as_bytes(),
            }
        }
        Entry::Note(text) => Body {
            kind: kind::NOTE,
            detail: 0,
            tail: text.as_bytes(),
        },
        Entry::End {
            records,
            dropped_records,
            dropped_bytes,
        } => {
            put_u64(fixed, *records);
            put_u64(fixed, *dropped_records);
            put_u64(fixed, *dropped_bytes);
            Body {
                kind: kind::END,
                detail: 0,
                tail: &[],
            }
        }
        Entry::Unknown { kind, detail, body } => Body {
            kind: *kind,
            detail: *detail,
            tail: body,
        },
    }
}

/// Why a body could not be decoded (the reader adds the offset).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BadBody(pub String);

impl fmt::Display for BadBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn bad(kind: &str, what: impl fmt::Display) -> BadBody {
    BadBody(format!("a {kind} record {what}"))
}

/// Decodes the body of a record (its checksum already verified). Takes the
/// body by value so the payload moves into the entry without a copy.
pub(crate) fn decode_body(k: u8, detail: u8, mut body: Vec<u8>) -> Result<Entry, BadBody> {
    let direction = |name: &str| {
        Direction::from_wire(detail).ok_or_else(|| bad(name, format!("has direction {detail}")))
    };
    let need = |name: &str, body: &[u8], n: usize| {
        if body.len() < n {
            Err(bad(
                name,
                format!("has {} bytes, fewer than its {n} fixed bytes", body.len()),
            ))
        } else {
            Ok(())
        }
    };
    let exact = |name: &str, body: &[u8], n: usize| {
        if body.len() != n {
            Err(bad(
                name,
                format!("has {} bytes instead of {n}", body.len()),
            ))
        } else {
            Ok(())
        }
    };
    Ok(match k {
        kind::META => {
            let s = text(&body);
            let mut kv = Vec::new();
            for line in s.lines().filter(|l| !l.is_empty()) {
                let (k, v) = line
                    .split_once('=')
                    .ok_or_else(|| bad("meta", format!("has a line without '=': {line:?}")))?;
                kv.push((k.to_string(), v.to_string()));
            }
            Entry::Meta(kv)
        }
        kind::OPEN => Entry::Open {
            port: Port::from_wire(detail)
                .ok_or_else(|| bad("open", format!("has port {detail}")))?,
            peer: text(&body),
        },
        kind::MESSAGE => {
            let direction = direction("message")?;
            need("message", &body, MESSAGE_LEN + 4)?;
            let raw: &[u8; MESSAGE_LEN] = body[..MESSAGE_LEN].try_into().expect("length checked");
            let message = Message::decode(raw).map_err(|e| bad("message", format!("holds {e}")))?;
            let data_seen = LE::read_u32(&body[MESSAGE_LEN..]);
            let data = body.split_off(MESSAGE_LEN + 4);
            if data.len() as u64 > u64::from(data_seen) {
                return Err(bad(
                    "message",
                    format!(
                        "stores {} bytes of additional data but saw only {data_seen}",
                        data.len()
                    ),
                ));
            }
            Entry::Message {
                direction,
                message,
                data_seen,
                data,
            }
        }
        kind::SKIPPED => {
            let direction = direction("skipped")?;
            exact("skipped", &body, 8)?;
            Entry::Skipped {
                direction,
                bytes: LE::read_u64(&body),
            }
        }
        kind::FRAME => {
            const FIXED: usize = LIVE_HEADER_LEN + 8;
            need("frame", &body, FIXED)?;
            let raw: &[u8; LIVE_HEADER_LEN] =
                body[..LIVE_HEADER_LEN].try_into().expect("length checked");
            let header = LiveHeader::decode(raw);
            let subsample = LE::read_u16(&body[LIVE_HEADER_LEN..]);
            let pixels_seen = LE::read_u32(&body[LIVE_HEADER_LEN + 4..]);
            let consistent = u64::from(header.width) * u64::from(header.height) * 2;
            if consistent == 0 || consistent != u64::from(header.image_size) {
                return Err(bad(
                    "frame",
                    format!(
                        "has an inconsistent live header ({} bytes for {} x {} pixels)",
                        header.image_size, header.width, header.height
                    ),
                ));
            }
            if pixels_seen > header.image_size {
                return Err(bad(
                    "frame",
                    format!(
                        "saw {pixels_seen} pixel bytes of a {}-byte image",
                        header.image_size
                    ),
                ));
            }
            let pixels = body.split_off(FIXED);
            let want = subsampled_len(header.width, header.height, subsample);
            if pixels.len() as u64 != want {
                return Err(bad(
                    "frame",
                    format!(
                        "holds {} pixel bytes instead of {want} (subsampling {subsample})",
                        pixels.len()
                    ),
                ));
            }
            Entry::Frame {
                header,
                subsample,
                pixels_seen,
                pixels,
            }
        }
        kind::UNPARSED => {
            let direction = direction("unparsed")?;
            need("unparsed", &body, 2)?;
            let n = usize::from(LE::read_u16(&body));
            need("unparsed", &body, 2 + n)?;
            let reason = text(&body[2..2 + n]);
            let bytes = body.split_off(2 + n);
            Entry::Unparsed {
                direction,
                reason,
                bytes,
            }
        }
        kind::STREAM_END => {
            let direction = direction("stream end")?;
            need("stream end", &body, 9)?;
            let cause = EndCause::from_wire(body[0])
                .ok_or_else(|| bad("stream end", format!("has cause {}", body[0])))?;
            Entry::StreamEnd {
                direction,
                cause,
                bytes: LE::read_u64(&body[1..]),
                detail: text(&body[9..]),
            }
        }
        kind::NOTE => Entry::Note(text(&body)),
        kind::END => {
            exact("end", &body, 24)?;
            Entry::End {
                records: LE::read_u64(&body),
                dropped_records: LE::read_u64(&body[8..]),
                dropped_bytes: LE::read_u64(&body[16..]),
            }
        }
        k => Entry::Unknown {
            kind: k,
            detail,
            body,
        },
    })
}

/// CRC-32 (IEEE 802.3, reflected, as in zip and PNG) lookup table.
const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// A running CRC-32: `Crc::new().update(a).update(b).value()`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Crc(u32);

impl Crc {
    pub(crate) fn new() -> Crc {
        Crc(0xFFFF_FFFF)
    }
    pub(crate) fn update(mut self, bytes: &[u8]) -> Crc {
        for &b in bytes {
            self.0 = CRC_TABLE[((self.0 ^ u32::from(b)) & 0xFF) as usize] ^ (self.0 >> 8);
        }
        self
    }
    pub(crate) fn value(self) -> u32 {
        !self.0
    }
}

/// Encodes a record header.
pub(crate) fn record_header(
    body_len: u32,
    kind: u8,
    detail: u8,
    conn: u32,
    time: Duration,
) -> [u8; RECORD_HEADER_LEN] {
    let mut h = [0u8; RECORD_HEADER_LEN];
    LE::write_u32(&mut h, body_len);
    h[4] = kind;
    h[5] = detail;
    LE::write_u32(&mut h[8..], conn);
    LE::write_u64(
        &mut h[12..],
        u64::try_from(time.as_nanos()).unwrap_or(u64::MAX),
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_of_the_standard_check_string() {
        assert_eq!(Crc::new().update(b"123456789").value(), 0xCBF4_3926);
        assert_eq!(
            Crc::new().update(b"1234").update(b"56789").value(),
            0xCBF4_3926
        );
    }

    #[test]
    fn subsampled_sizes() {
        assert_eq!(subsampled_len(2048, 2048, 0), 0);
        assert_eq!(subsampled_len(2048, 2048, 1), 2048 * 2048 * 2);
        assert_eq!(subsampled_len(5, 3, 2), 3 * 2 * 2);
        assert_eq!(subsampled_len(1, 1, 65535), 2);
    }

    #[test]
    fn bodies_round_trip() {
        let entries = vec![
            Entry::Meta(vec![("tool".into(), "x".into()), ("a".into(), "".into())]),
            Entry::Open {
                port: Port::Live,
                peer: "127.0.0.1:5".into(),
            },
            Entry::Message {
                direction: Direction::ToClient,
                message: Message::new(crate::codec::CommandCode(0x1009))
                    .with_additional_data_len(5),
                data_seen: 5,
                data: b"abc".to_vec(),
            },
            Entry::Skipped {
                direction: Direction::ToInstrument,
                bytes: 7,
            },
            Entry::Frame {
                header: LiveHeader {
                    image_size: 5 * 3 * 2,
                    width: 5,
                    height: 3,
                    ..Default::default()
                },
                subsample: 2,
                pixels_seen: 30,
                pixels: vec![1; 12],
            },
            Entry::Unparsed {
                direction: Direction::ToClient,
                reason: "bad".into(),
                bytes: vec![9; 40],
            },
            Entry::StreamEnd {
                direction: Direction::ToClient,
                cause: EndCause::Failed,
                bytes: 1234,
                detail: "reset".into(),
            },
            Entry::Note("hello".into()),
            Entry::End {
                records: 9,
                dropped_records: 1,
                dropped_bytes: 2,
            },
            Entry::Unknown {
                kind: 200,
                detail: 3,
                body: vec![1, 2, 3],
            },
        ];
        let mut fixed = Vec::new();
        for e in entries {
            let b = encode_body(&e, &mut fixed);
            let mut body = fixed.clone();
            body.extend_from_slice(b.tail);
            let back = decode_body(b.kind, b.detail, body).unwrap();
            assert_eq!(back, e);
        }
    }

    #[test]
    fn bad_bodies_are_refused() {
        assert!(decode_body(kind::MESSAGE, 0, vec![0; 10]).is_err());
        assert!(decode_body(kind::MESSAGE, 7, vec![0; 132]).is_err());
        assert!(decode_body(kind::SKIPPED, 0, vec![0; 7]).is_err());
        assert!(decode_body(kind::FRAME, 0, vec![0; 48]).is_err());
        assert!(decode_body(kind::END, 0, vec![0; 23]).is_err());
        assert!(decode_body(kind::STREAM_END, 0, vec![9; 9]).is_err());
        assert!(decode_body(kind::META, 0, b"no equals sign".to_vec()).is_err());
    }
}
