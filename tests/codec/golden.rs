//! Golden byte vectors: every byte of every vector is checked, in both
//! directions (encode must produce exactly these bytes, decode must read
//! exactly these fields back).
//!
//! The vectors are written as hex dumps in the layout of `codec::hex_dump`
//! (and of `protocol.md`), so a failing test can be compared by eye with the
//! specification.

use std::io::{self, Read};

use flamingo_client::codec::{
    hex_dump, offset, CommandCode, Flags, FrameError, FrameReader, Message, END_MARKER,
    MESSAGE_LEN, START_MARKER, TEXT_LEN,
};

/// Parses a hex dump ("0000  54 e6 ..." lines; the first column is the offset).
fn parse_dump(dump: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for line in dump.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let mut cols = line.split_whitespace();
        let off = usize::from_str_radix(cols.next().unwrap(), 16).unwrap();
        assert_eq!(
            off,
            out.len(),
            "dump line {line:?} starts at the wrong offset"
        );
        out.extend(cols.map(|b| u8::from_str_radix(b, 16).unwrap()));
    }
    out
}

/// Names the field that covers byte `i`, for failure messages.
fn field_at(i: usize) -> &'static str {
    use offset::*;
    match i {
        _ if i < CODE => "start marker",
        _ if i < STATUS => "code",
        _ if i < HARDWARE_ID => "status",
        _ if i < SUBSYSTEM_ID => "hardware_id",
        _ if i < CLIENT_ID => "subsystem_id",
        _ if i < INT32_DATA0 => "client_id",
        _ if i < INT32_DATA1 => "int32_data0",
        _ if i < INT32_DATA2 => "int32_data1",
        _ if i < FLAGS => "int32_data2",
        _ if i < DOUBLE_DATA => "flags",
        _ if i < ADDITIONAL_DATA_BYTES => "double_data",
        _ if i < BUFFER => "additional_data_len",
        _ if i < END => "buffer",
        _ => "end marker",
    }
}

/// Asserts every one of the 128 bytes, naming the first differing offset and field.
fn assert_bytes(got: &[u8; MESSAGE_LEN], want: &[u8]) {
    assert_eq!(want.len(), MESSAGE_LEN, "golden vector must be 128 bytes");
    for i in 0..MESSAGE_LEN {
        assert_eq!(
            got[i],
            want[i],
            "byte {i:#04x} ({}) differs\n got:\n{}\nwant:\n{}",
            field_at(i),
            hex_dump(got),
            hex_dump(want)
        );
    }
}

/// Encodes `msg`, compares all 128 bytes with `dump`, decodes `dump` and
/// compares every field (bitwise) with `msg`.
fn check_golden(msg: Message, dump: &str) -> [u8; MESSAGE_LEN] {
    let want = parse_dump(dump);
    let got = msg.to_bytes();
    assert_bytes(&got, &want);
    let arr: [u8; MESSAGE_LEN] = want.as_slice().try_into().unwrap();
    let back = Message::decode(&arr).expect("golden vector decodes");
    assert_eq!(back.code, msg.code);
    assert_eq!(back.status, msg.status);
    assert_eq!(back.hardware_id, msg.hardware_id);
    assert_eq!(back.subsystem_id, msg.subsystem_id);
    assert_eq!(back.client_id, msg.client_id);
    assert_eq!(back.int32_data0, msg.int32_data0);
    assert_eq!(back.int32_data1, msg.int32_data1);
    assert_eq!(back.int32_data2, msg.int32_data2);
    assert_eq!(back.flags, msg.flags);
    assert_eq!(back.double_data.to_bits(), msg.double_data.to_bits());
    assert_eq!(back.additional_data_len, msg.additional_data_len);
    assert_eq!(back.buffer, msg.buffer);
    assert!(back.bitwise_eq(&msg));
    // The dump printer reproduces the golden text exactly.
    assert_eq!(normalise(&hex_dump(&arr)), normalise(dump));
    arr
}

fn normalise(dump: &str) -> String {
    dump.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// protocol.md §2 / facts §8: CAMERA_IMAGE_SIZE_GET request with TRIGGER_CALL_BACK.
const IMAGE_SIZE_GET: &str = "
0000  54 e6 21 f3 27 30 00 00 00 00 00 00 00 00 00 00
0010  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0020  00 00 00 00 00 00 00 80 00 00 00 00 00 00 00 00
0030  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0040  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0050  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0060  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0070  00 00 00 00 00 00 00 00 00 00 00 00 21 43 dc fe
";

#[test]
fn camera_image_size_get_request() {
    let m = Message::new(CommandCode::CAMERA_IMAGE_SIZE_GET).with_flags(Flags::TRIGGER_CALL_BACK);
    let b = check_golden(m, IMAGE_SIZE_GET);
    // The markers are the documented wire bytes.
    assert_eq!(&b[..4], &START_MARKER.to_le_bytes());
    assert_eq!(&b[..4], &[0x54, 0xe6, 0x21, 0xf3]);
    assert_eq!(&b[124..], &END_MARKER.to_le_bytes());
    assert_eq!(&b[124..], &[0x21, 0x43, 0xdc, 0xfe]);
    // The old document's dump was 8 bytes short (120 bytes); ours is 128.
    assert_eq!(parse_dump(IMAGE_SIZE_GET).len(), 128);
}

#[test]
fn stage_position_get_axis_2() {
    let m = Message::new(CommandCode::STAGE_POSITION_GET)
        .with_int32_data0(2)
        .with_flags(Flags::TRIGGER_CALL_BACK);
    let b = check_golden(
        m,
        "
0000  54 e6 21 f3 08 60 00 00 00 00 00 00 00 00 00 00
0010  00 00 00 00 00 00 00 00 02 00 00 00 00 00 00 00
0020  00 00 00 00 00 00 00 80 00 00 00 00 00 00 00 00
0030  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0040  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0050  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0060  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0070  00 00 00 00 00 00 00 00 00 00 00 00 21 43 dc fe
",
    );
    // The axis sits at offset 24 (int32Data0), not at 12 as old documents label it.
    assert_eq!(offset::INT32_DATA0, 24);
    assert_eq!(&b[24..28], &[2, 0, 0, 0]);
    assert_eq!(&b[12..16], &[0, 0, 0, 0]);
    assert_eq!(&b[36..40], &[0x00, 0x00, 0x00, 0x80]);
}

#[test]
fn laser_level_reply_text() {
    let m = Message::new(CommandCode::LASER_LEVEL_GET)
        .with_int32_data0(3)
        .with_flags(Flags::TRIGGER_CALL_BACK)
        .with_text("11.49")
        .unwrap();
    let b = check_golden(
        m,
        "
0000  54 e6 21 f3 02 20 00 00 00 00 00 00 00 00 00 00
0010  00 00 00 00 00 00 00 00 03 00 00 00 00 00 00 00
0020  00 00 00 00 00 00 00 80 00 00 00 00 00 00 00 00
0030  00 00 00 00 31 31 2e 34 39 00 00 00 00 00 00 00
0040  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0050  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0060  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0070  00 00 00 00 00 00 00 00 00 00 00 00 21 43 dc fe
",
    );
    assert_eq!(&b[52..57], b"11.49");
    assert!(b[57..124].iter().all(|&x| x == 0), "NUL padded");
    let back = Message::decode(&b).unwrap();
    let t = back.text();
    assert_eq!(t.value, "11.49");
    assert!(!t.lossy);
    assert_eq!(back.text_bytes(), b"11.49");
    assert_eq!(back.buffer.len(), TEXT_LEN);
}

/// The CAMERA_IMAGE_SIZE_GET reply of a 2048 x 2048 camera: `00 08 00 00 00 08 00 00` at 0x18.
#[test]
fn image_size_reply_2048() {
    let m = Message::new(CommandCode::CAMERA_IMAGE_SIZE_GET)
        .with_int32_data0(2048)
        .with_int32_data1(2048)
        .with_flags(Flags::TRIGGER_CALL_BACK);
    let b = check_golden(
        m,
        "
0000  54 e6 21 f3 27 30 00 00 00 00 00 00 00 00 00 00
0010  00 00 00 00 00 00 00 00 00 08 00 00 00 08 00 00
0020  00 00 00 00 00 00 00 80 00 00 00 00 00 00 00 00
0030  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0040  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0050  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0060  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0070  00 00 00 00 00 00 00 00 00 00 00 00 21 43 dc fe
",
    );
    assert_eq!(
        &b[0x18..0x20],
        &[0x00, 0x08, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00]
    );
    assert_eq!(&b[0x24..0x28], &[0x00, 0x00, 0x00, 0x80]);
}

/// doubleData 7.635 (a stage target in mm, as the vendor GUI sends it).
#[test]
fn double_7_635() {
    let m = Message::new(CommandCode::STAGE_POSITION_SET_SLIDER)
        .with_int32_data0(1)
        .with_double_data(7.635)
        .with_flags(Flags::TRIGGER_CALL_BACK);
    let b = check_golden(
        m,
        "
0000  54 e6 21 f3 05 60 00 00 00 00 00 00 00 00 00 00
0010  00 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00
0020  00 00 00 00 00 00 00 80 0a d7 a3 70 3d 8a 1e 40
0030  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0040  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0050  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0060  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0070  00 00 00 00 00 00 00 00 00 00 00 00 21 43 dc fe
",
    );
    assert_eq!(
        &b[40..48],
        &[0x0a, 0xd7, 0xa3, 0x70, 0x3d, 0x8a, 0x1e, 0x40]
    );
    assert_eq!(Message::decode(&b).unwrap().double_data, 7.635);
}

/// Every field at once, each with a distinct value, so a swapped pair of
/// fields cannot go unnoticed.
#[test]
fn all_fields_distinct() {
    let mut m = Message::new(CommandCode(0x0403_0201))
        .with_status(0x0807_0605)
        .with_int32_data0(0x1817_1615)
        .with_int32_data1(0x1c1b_1a19)
        .with_int32_data2(0x201f_1e1d)
        .with_flags(Flags::from_bits(0x2423_2221))
        .with_double_data(f64::from_bits(0x2c2b_2a29_2827_2625))
        .with_additional_data_len(0x302f_2e2d);
    m.hardware_id = 0x0c0b_0a09;
    m.subsystem_id = 0x100f_0e0d;
    m.client_id = 0x1413_1211;
    for (i, b) in m.buffer.iter_mut().enumerate() {
        *b = 0x31 + i as u8;
    }
    check_golden(
        m,
        "
0000  54 e6 21 f3 01 02 03 04 05 06 07 08 09 0a 0b 0c
0010  0d 0e 0f 10 11 12 13 14 15 16 17 18 19 1a 1b 1c
0020  1d 1e 1f 20 21 22 23 24 25 26 27 28 29 2a 2b 2c
0030  2d 2e 2f 30 31 32 33 34 35 36 37 38 39 3a 3b 3c
0040  3d 3e 3f 40 41 42 43 44 45 46 47 48 49 4a 4b 4c
0050  4d 4e 4f 50 51 52 53 54 55 56 57 58 59 5a 5b 5c
0060  5d 5e 5f 60 61 62 63 64 65 66 67 68 69 6a 6b 6c
0070  6d 6e 6f 70 71 72 73 74 75 76 77 78 21 43 dc fe
",
    );
}

/// int32 fields are signed on the wire (two's complement, little-endian).
#[test]
fn negative_int32() {
    let b = Message::new(CommandCode(1))
        .with_int32_data0(-1)
        .with_int32_data1(i32::MIN)
        .with_int32_data2(-2)
        .to_bytes();
    assert_eq!(
        &b[24..36],
        &[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0x80, 0xfe, 0xff, 0xff, 0xff]
    );
    let m = Message::decode(&b).unwrap();
    assert_eq!(
        (m.int32_data0, m.int32_data1, m.int32_data2),
        (-1, i32::MIN, -2)
    );
}

const SETTINGS_LOAD_REPLY_HEADER: &str = "
0000  54 e6 21 f3 09 10 00 00 00 00 00 00 00 00 00 00
0010  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0020  00 00 00 00 00 00 00 80 00 00 00 00 00 00 00 00
0030  8e 0b 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0040  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0050  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0060  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0070  00 00 00 00 00 00 00 00 00 00 00 00 21 43 dc fe
";

fn scope_settings() -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/ScopeSettings.txt");
    std::fs::read(path).expect("fixtures/ScopeSettings.txt")
}

/// The fixture is the 2958-byte settings text (counted with LF line ends, so
/// a CRLF checkout on Windows does not fail this test).
#[test]
fn scope_settings_fixture_is_2958_bytes() {
    let data = scope_settings();
    let lf = data.iter().filter(|&&b| b != b'\r').count();
    assert_eq!(lf, 2958);
}

/// The settings-load reply header: 0x1009 with additional_data_len = 2958 at offset 48.
#[test]
fn settings_load_reply_header() {
    let m = Message::new(CommandCode::COMMON_SCOPE_SETTINGS_LOAD)
        .with_flags(Flags::TRIGGER_CALL_BACK)
        .with_additional_data_len(2958);
    let b = check_golden(m, SETTINGS_LOAD_REPLY_HEADER);
    assert_eq!(&b[48..52], &2958u32.to_le_bytes());
    assert_eq!(&b[48..52], &[0x8e, 0x0b, 0x00, 0x00]);
}

/// A reader handing out at most `n` bytes per call.
struct Chunks<'a> {
    data: &'a [u8],
    n: usize,
}

impl Read for Chunks<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.n.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// The settings-load reply on the wire: header, the settings text, then the
/// next message. `read_frame` returns the text exactly and stays in sync.
#[test]
fn settings_load_reply_frame() {
    let text = scope_settings();
    let header = Message::new(CommandCode::COMMON_SCOPE_SETTINGS_LOAD)
        .with_flags(Flags::TRIGGER_CALL_BACK)
        .with_additional_data_len(text.len() as u32);
    let next = Message::new(CommandCode::SYSTEM_STATE_GET).with_int32_data0(0);
    let mut stream = header.to_bytes().to_vec();
    stream.extend_from_slice(&text);
    stream.extend_from_slice(&next.to_bytes());

    for chunk in [usize::MAX, 1, 7, 1000] {
        let mut src = Chunks {
            data: &stream,
            n: chunk,
        };
        let mut r = FrameReader::new(64 * 1024);
        let mut data = Vec::new();
        let m = r.read_frame(&mut src, &mut data).unwrap();
        assert!(m.bitwise_eq(&header));
        assert_eq!(data, text, "settings text (chunk {chunk})");
        let m2 = r.read_frame(&mut src, &mut data).unwrap();
        assert_eq!(m2.code, CommandCode::SYSTEM_STATE_GET);
        assert!(data.is_empty());
        assert!(matches!(
            r.read_frame(&mut src, &mut data),
            Err(FrameError::Closed)
        ));
        let s = r.stats();
        assert_eq!((s.messages, s.resyncs, s.bytes_skipped), (2, 0, 0));
    }
}

/// Client to instrument: WORKFLOW_START header followed by the workflow file,
/// unchanged. The bytes that follow the header are exactly the file.
#[test]
fn workflow_start_upload_layout() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/ZStack.txt");
    let file = std::fs::read(path).unwrap();
    let header = Message::new(CommandCode::CAMERA_WORK_FLOW_START)
        .with_flags(Flags::TRIGGER_CALL_BACK)
        .with_additional_data_len(file.len() as u32);
    let b = header.to_bytes();
    assert_eq!(&b[4..8], &[0x04, 0x30, 0, 0]);
    assert_eq!(&b[36..40], &[0, 0, 0, 0x80]);
    assert_eq!(&b[48..52], &(file.len() as u32).to_le_bytes());
    assert!(b[52..124].iter().all(|&x| x == 0), "buffer is all zero");
    let mut wire = b.to_vec();
    wire.extend_from_slice(&file);
    let mut r = FrameReader::new(1 << 20);
    let mut data = Vec::new();
    let m = r.read_frame(&mut &wire[..], &mut data).unwrap();
    assert_eq!(m.additional_data_len as usize, file.len());
    assert_eq!(data, file);
}

/// Additional data above the limit is refused before anything is read or
/// allocated; the next read resynchronises past the data.
#[test]
fn oversized_additional_data_refused_then_resync() {
    let big = Message::new(CommandCode::COMMON_SCOPE_SETTINGS_LOAD).with_additional_data_len(300);
    let next = Message::new(CommandCode::STAGE_HALT);
    let mut stream = big.to_bytes().to_vec();
    stream.extend(std::iter::repeat_n(b'x', 300));
    stream.extend_from_slice(&next.to_bytes());
    let mut r = FrameReader::new(299);
    let mut data = Vec::new();
    let mut src = &stream[..];
    match r.read_frame(&mut src, &mut data) {
        Err(FrameError::TooLarge {
            size: 300,
            limit: 299,
        }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(data.capacity(), 0, "nothing allocated");
    // Only the header was consumed; the data is skipped as garbage.
    assert_eq!(src.len(), stream.len() - 128);
    let m = r.read_frame(&mut src, &mut data).unwrap();
    assert_eq!(m.code, CommandCode::STAGE_HALT);
    assert_eq!(r.stats().bytes_skipped, 300);
    assert_eq!(r.stats().resyncs, 1);
    let e: flamingo_client::Error = FrameError::TooLarge {
        size: 300,
        limit: 299,
    }
    .into();
    assert!(matches!(
        e,
        flamingo_client::Error::TooLarge {
            size: 300,
            limit: 299,
            ..
        }
    ));
}
