//! The fixed 128-byte control message.

use std::borrow::Cow;
use std::fmt;

use byteorder::{ByteOrder, LittleEndian as LE};

use super::{CommandCode, Flags};

/// Size of every control message on the command port, in bytes.
pub const MESSAGE_LEN: usize = 128;
/// Size of the text buffer inside a message, in bytes.
pub const TEXT_LEN: usize = 72;
/// Start marker, the first four bytes of every message (`54 E6 21 F3` on the wire).
pub const START_MARKER: u32 = 0xF321_E654;
/// End marker, the last four bytes of every message (`21 43 DC FE` on the wire).
pub const END_MARKER: u32 = 0xFEDC_4321;

/// Byte offsets of the fields, as laid out on the wire.
pub mod offset {
    #![allow(missing_docs)]
    pub const START: usize = 0;
    pub const CODE: usize = 4;
    pub const STATUS: usize = 8;
    pub const HARDWARE_ID: usize = 12;
    pub const SUBSYSTEM_ID: usize = 16;
    pub const CLIENT_ID: usize = 20;
    pub const INT32_DATA0: usize = 24;
    pub const INT32_DATA1: usize = 28;
    pub const INT32_DATA2: usize = 32;
    pub const FLAGS: usize = 36;
    pub const DOUBLE_DATA: usize = 40;
    pub const ADDITIONAL_DATA_BYTES: usize = 48;
    pub const BUFFER: usize = 52;
    pub const END: usize = 124;
}

/// Why 128 bytes are not a valid message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The first four bytes are not [`START_MARKER`]; carries what was found.
    BadStartMarker(u32),
    /// The last four bytes are not [`END_MARKER`]; carries what was found.
    BadEndMarker(u32),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::BadStartMarker(v) => write!(
                f,
                "bad start marker {v:#010x} (expected {START_MARKER:#010x})"
            ),
            DecodeError::BadEndMarker(v) => {
                write!(f, "bad end marker {v:#010x} (expected {END_MARKER:#010x})")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Text that cannot be put in the 72-byte message buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextError {
    /// Longer than 72 bytes of UTF-8 (it is never truncated).
    TooLong {
        /// Length of the rejected text in bytes.
        len: usize,
    },
    /// Contains a NUL byte, which the receiver would read as the end of the text.
    InteriorNul {
        /// Byte offset of the NUL.
        at: usize,
    },
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TextError::TooLong { len } => write!(
                f,
                "text of {len} bytes does not fit the {TEXT_LEN}-byte message buffer"
            ),
            TextError::InteriorNul { at } => write!(
                f,
                "text contains a NUL byte at offset {at}, which would end it early on the instrument"
            ),
        }
    }
}

impl std::error::Error for TextError {}

/// The text read back from a message buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text<'a> {
    /// The text up to the first NUL, with invalid UTF-8 replaced by U+FFFD.
    pub value: Cow<'a, str>,
    /// True if invalid UTF-8 had to be replaced.
    pub lossy: bool,
}

/// One 128-byte control message, in either direction.
///
/// Fields are named as in the protocol (see `protocol.md`). A message is plain
/// data (`Copy`); encoding and decoding never allocate.
///
/// ```
/// use flamingo_client::codec::{CommandCode, Flags, Message};
///
/// let msg = Message::new(CommandCode::STAGE_POSITION_GET)
///     .with_int32_data0(2)
///     .with_flags(Flags::TRIGGER_CALL_BACK);
/// let bytes = msg.to_bytes();
/// assert_eq!(&bytes[..4], &[0x54, 0xE6, 0x21, 0xF3]);
/// assert_eq!(Message::decode(&bytes).unwrap(), msg);
/// ```
#[derive(Clone, Copy, PartialEq)]
pub struct Message {
    /// Command code (offset 4).
    pub code: CommandCode,
    /// Status (offset 8); its meaning depends on the command.
    pub status: u32,
    /// hardwareID (offset 12); the client sends 0.
    pub hardware_id: u32,
    /// subsystemID (offset 16); the client sends 0.
    pub subsystem_id: u32,
    /// clientID (offset 20); the client sends 0.
    pub client_id: u32,
    /// int32Data0 (offset 24): axis, laser index, reply integer...
    pub int32_data0: i32,
    /// int32Data1 (offset 28).
    pub int32_data1: i32,
    /// int32Data2 (offset 32).
    pub int32_data2: i32,
    /// cmdDataBits0 (offset 36).
    pub flags: Flags,
    /// doubleData (offset 40): positions, pixel size...
    pub double_data: f64,
    /// addDataBytes (offset 48): bytes of additional data that follow this message.
    pub additional_data_len: u32,
    /// The 72-byte NUL-padded text buffer (offset 52).
    pub buffer: [u8; TEXT_LEN],
}

impl Default for Message {
    fn default() -> Self {
        Message::new(CommandCode(0))
    }
}

impl Message {
    /// A message with the given code and every other field zero.
    pub const fn new(code: CommandCode) -> Message {
        Message {
            code,
            status: 0,
            hardware_id: 0,
            subsystem_id: 0,
            client_id: 0,
            int32_data0: 0,
            int32_data1: 0,
            int32_data2: 0,
            flags: Flags::NONE,
            double_data: 0.0,
            additional_data_len: 0,
            buffer: [0; TEXT_LEN],
        }
    }

    /// Sets `status`.
    #[must_use]
    pub const fn with_status(mut self, v: u32) -> Message {
        self.status = v;
        self
    }
    /// Sets `int32_data0`.
    #[must_use]
    pub const fn with_int32_data0(mut self, v: i32) -> Message {
        self.int32_data0 = v;
        self
    }
    /// Sets `int32_data1`.
    #[must_use]
    pub const fn with_int32_data1(mut self, v: i32) -> Message {
        self.int32_data1 = v;
        self
    }
    /// Sets `int32_data2`.
    #[must_use]
    pub const fn with_int32_data2(mut self, v: i32) -> Message {
        self.int32_data2 = v;
        self
    }
    /// Sets `flags`.
    #[must_use]
    pub const fn with_flags(mut self, v: Flags) -> Message {
        self.flags = v;
        self
    }
    /// Sets `double_data`.
    #[must_use]
    pub const fn with_double_data(mut self, v: f64) -> Message {
        self.double_data = v;
        self
    }
    /// Sets `additional_data_len`.
    #[must_use]
    pub const fn with_additional_data_len(mut self, v: u32) -> Message {
        self.additional_data_len = v;
        self
    }

    /// Sets the text buffer from UTF-8, NUL padded. Text longer than 72 bytes,
    /// or with a NUL inside, is an error; it is never truncated.
    ///
    /// ```
    /// use flamingo_client::codec::{CommandCode, Message};
    /// let m = Message::new(CommandCode::LASER_LEVEL_SET).with_text("11.49").unwrap();
    /// assert_eq!(m.text().value, "11.49");
    /// assert!(Message::new(CommandCode(1)).with_text(&"x".repeat(73)).is_err());
    /// ```
    pub fn with_text(mut self, text: &str) -> Result<Message, TextError> {
        self.set_text(text)?;
        Ok(self)
    }

    /// In-place form of [`with_text`](Message::with_text).
    pub fn set_text(&mut self, text: &str) -> Result<(), TextError> {
        let b = text.as_bytes();
        if b.len() > TEXT_LEN {
            return Err(TextError::TooLong { len: b.len() });
        }
        if let Some(at) = b.iter().position(|&c| c == 0) {
            return Err(TextError::InteriorNul { at });
        }
        self.buffer = [0; TEXT_LEN];
        self.buffer[..b.len()].copy_from_slice(b);
        Ok(())
    }

    /// The raw bytes of the buffer up to the first NUL (all 72 if there is none).
    pub fn text_bytes(&self) -> &[u8] {
        let end = self.buffer.iter().position(|&b| b == 0).unwrap_or(TEXT_LEN);
        &self.buffer[..end]
    }

    /// The buffer as text up to the first NUL, lossy-decoded; `lossy` reports
    /// whether invalid UTF-8 was replaced. Borrows when the text is valid.
    pub fn text(&self) -> Text<'_> {
        let bytes = self.text_bytes();
        match std::str::from_utf8(bytes) {
            Ok(s) => Text {
                value: Cow::Borrowed(s),
                lossy: false,
            },
            Err(_) => Text {
                value: String::from_utf8_lossy(bytes),
                lossy: true,
            },
        }
    }

    /// Encodes into a caller's buffer. Never allocates.
    pub fn encode(&self, out: &mut [u8; MESSAGE_LEN]) {
        use offset::*;
        LE::write_u32(&mut out[START..], START_MARKER);
        LE::write_u32(&mut out[CODE..], self.code.0);
        LE::write_u32(&mut out[STATUS..], self.status);
        LE::write_u32(&mut out[HARDWARE_ID..], self.hardware_id);
        LE::write_u32(&mut out[SUBSYSTEM_ID..], self.subsystem_id);
        LE::write_u32(&mut out[CLIENT_ID..], self.client_id);
        LE::write_i32(&mut out[INT32_DATA0..], self.int32_data0);
        LE::write_i32(&mut out[INT32_DATA1..], self.int32_data1);
        LE::write_i32(&mut out[INT32_DATA2..], self.int32_data2);
        LE::write_u32(&mut out[FLAGS..], self.flags.bits());
        LE::write_u64(&mut out[DOUBLE_DATA..], self.double_data.to_bits());
        LE::write_u32(&mut out[ADDITIONAL_DATA_BYTES..], self.additional_data_len);
        out[BUFFER..END].copy_from_slice(&self.buffer);
        LE::write_u32(&mut out[END..], END_MARKER);
    }

    /// Encodes into a new array.
    pub fn to_bytes(&self) -> [u8; MESSAGE_LEN] {
        let mut out = [0u8; MESSAGE_LEN];
        self.encode(&mut out);
        out
    }

    /// Decodes 128 bytes, validating both markers. Never allocates.
    ///
    /// ```
    /// use flamingo_client::codec::{DecodeError, Message};
    /// let mut bytes = [0u8; 128];
    /// assert_eq!(Message::decode(&bytes), Err(DecodeError::BadStartMarker(0)));
    /// ```
    pub fn decode(b: &[u8; MESSAGE_LEN]) -> Result<Message, DecodeError> {
        use offset::*;
        let start = LE::read_u32(&b[START..]);
        if start != START_MARKER {
            return Err(DecodeError::BadStartMarker(start));
        }
        let end = LE::read_u32(&b[END..]);
        if end != END_MARKER {
            return Err(DecodeError::BadEndMarker(end));
        }
        let mut buffer = [0u8; TEXT_LEN];
        buffer.copy_from_slice(&b[BUFFER..END]);
        Ok(Message {
            code: CommandCode(LE::read_u32(&b[CODE..])),
            status: LE::read_u32(&b[STATUS..]),
            hardware_id: LE::read_u32(&b[HARDWARE_ID..]),
            subsystem_id: LE::read_u32(&b[SUBSYSTEM_ID..]),
            client_id: LE::read_u32(&b[CLIENT_ID..]),
            int32_data0: LE::read_i32(&b[INT32_DATA0..]),
            int32_data1: LE::read_i32(&b[INT32_DATA1..]),
            int32_data2: LE::read_i32(&b[INT32_DATA2..]),
            flags: Flags::from_bits(LE::read_u32(&b[FLAGS..])),
            double_data: f64::from_bits(LE::read_u64(&b[DOUBLE_DATA..])),
            additional_data_len: LE::read_u32(&b[ADDITIONAL_DATA_BYTES..]),
            buffer,
        })
    }

    /// Bitwise equality, treating NaN payloads as equal when their bits are.
    pub fn bitwise_eq(&self, other: &Message) -> bool {
        self.to_bytes() == other.to_bytes()
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Message");
        d.field("code", &self.code).field("status", &self.status);
        if self.hardware_id != 0 || self.subsystem_id != 0 || self.client_id != 0 {
            d.field("hardware_id", &self.hardware_id)
                .field("subsystem_id", &self.subsystem_id)
                .field("client_id", &self.client_id);
        }
        d.field("int32_data0", &self.int32_data0)
            .field("int32_data1", &self.int32_data1)
            .field("int32_data2", &self.int32_data2)
            .field("flags", &self.flags)
            .field("double_data", &self.double_data)
            .field("additional_data_len", &self.additional_data_len);
        let t = self.text();
        if !t.value.is_empty() {
            d.field("text", &t.value);
        }
        d.finish()
    }
}

/// Hex dump of a byte slice, 16 bytes a line, for trace logging and tests.
pub fn hex_dump(bytes: &[u8]) -> String {
    use fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 3 + bytes.len() / 16 * 7);
    for (i, chunk) in bytes.chunks(16).enumerate() {
        let _ = write!(s, "{:04x} ", i * 16);
        for b in chunk {
            let _ = write!(s, " {b:02x}");
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The golden CAMERA_IMAGE_SIZE_GET request from the protocol facts.
    #[test]
    fn golden_image_size_get() {
        let m =
            Message::new(CommandCode::CAMERA_IMAGE_SIZE_GET).with_flags(Flags::TRIGGER_CALL_BACK);
        let b = m.to_bytes();
        let mut want = [0u8; 128];
        want[..8].copy_from_slice(&[0x54, 0xe6, 0x21, 0xf3, 0x27, 0x30, 0, 0]);
        want[0x27] = 0x80;
        want[124..].copy_from_slice(&[0x21, 0x43, 0xdc, 0xfe]);
        assert_eq!(b, want);
    }

    #[test]
    fn double_golden() {
        let b = Message::new(CommandCode(0))
            .with_double_data(7.635)
            .to_bytes();
        assert_eq!(
            &b[40..48],
            &[0x0a, 0xd7, 0xa3, 0x70, 0x3d, 0x8a, 0x1e, 0x40]
        );
    }

    #[test]
    fn end_marker_error_names_value() {
        let mut b = Message::new(CommandCode(1)).to_bytes();
        b[124] = 0;
        let e = Message::decode(&b).unwrap_err();
        assert_eq!(e, DecodeError::BadEndMarker(0xFEDC_4300));
        assert!(e.to_string().contains("end marker 0xfedc4300"));
    }

    #[test]
    fn text_exactly_72_and_lossy() {
        let s = "a".repeat(72);
        let m = Message::new(CommandCode(1)).with_text(&s).unwrap();
        assert_eq!(m.text().value, s);
        let mut m = Message::new(CommandCode(1));
        m.buffer[..3].copy_from_slice(&[b'o', 0xff, b'k']);
        let t = m.text();
        assert!(t.lossy);
        assert_eq!(t.value, "o\u{fffd}k");
        assert_eq!(m.with_text("").unwrap().text_bytes(), b"");
    }

    #[test]
    fn set_text_clears_previous() {
        let mut m = Message::new(CommandCode(1))
            .with_text("long text here")
            .unwrap();
        m.set_text("ab").unwrap();
        assert_eq!(m.text().value, "ab");
        assert!(m.buffer[2..].iter().all(|&b| b == 0));
    }

    /// The receiver reads the buffer up to the first NUL, so a text with a NUL
    /// inside would arrive silently truncated; the spec says text is never
    /// truncated, so `with_text` should refuse it.
    #[test]
    fn text_with_interior_nul_is_refused() {
        assert!(Message::new(CommandCode(1)).with_text("1.5\0junk").is_err());
    }
}
