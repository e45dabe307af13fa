//! Property tests of the live reader (`LiveStream`) with valid and mutated
//! valid input, through a real loopback socket (the
//! codec, framing and header parser properties are in tests/codec_props.rs).
//!
//! A stream of valid frames is mutated (bit flips, header fields replaced,
//! bytes inserted or deleted, truncation) and served once; what the reader
//! delivers must equal what a reference parser says the bytes contain: the
//! same frames, pixel for pixel, then the right typed end (`Disconnected` at
//! the end of the bytes, `Protocol` for an inconsistent header, `TooLarge`
//! for a consistent one over the limit). Never a panic, a hang or an
//! allocation of what a header claims.

use std::io::Write;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use flamingo_client::codec::{LiveHeader, LiveHeaderError, LIVE_HEADER_LEN};
use flamingo_client::live::{LiveConfig, LiveStream};
use flamingo_client::Error;
use proptest::collection::vec;
use proptest::prelude::*;

/// Frame-size limit of the reader under test (32 x 32 x 2 fits).
const LIMIT: u32 = 4096;
const WAIT: Duration = Duration::from_secs(20);

/// Delivered frames: (header bytes, pixel bytes).
type Frames = Vec<(Vec<u8>, Vec<u8>)>;

#[derive(Debug, PartialEq)]
enum End {
    /// The bytes ran out (cleanly or inside a frame).
    Eof,
    Protocol,
    TooLarge {
        size: u64,
    },
}

/// The reference: what a correct reader finds in `bytes`.
fn model(bytes: &[u8]) -> (Frames, End) {
    let mut frames = Vec::new();
    let mut pos = 0;
    loop {
        if bytes.len() - pos < LIVE_HEADER_LEN {
            return (frames, End::Eof);
        }
        let head: [u8; LIVE_HEADER_LEN] = bytes[pos..pos + LIVE_HEADER_LEN].try_into().unwrap();
        pos += LIVE_HEADER_LEN;
        match LiveHeader::decode(&head).validate(LIMIT) {
            Ok(n) => {
                if bytes.len() - pos < n {
                    return (frames, End::Eof);
                }
                frames.push((head.to_vec(), bytes[pos..pos + n].to_vec()));
                pos += n;
            }
            Err(LiveHeaderError::TooLarge { image_size, .. }) => {
                return (
                    frames,
                    End::TooLarge {
                        size: image_size.into(),
                    },
                )
            }
            Err(_) => return (frames, End::Protocol),
        }
    }
}

/// Serves `bytes` on a fresh live connection, then closes; runs the reader
/// to its end and returns what it delivered.
fn run_reader(bytes: Vec<u8>) -> (Frames, Error, u64) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let _ = s.write_all(&bytes);
        // Dropping `s` sends FIN: the reader sees the end of the bytes.
    });
    let cfg = LiveConfig::default()
        .with_max_image_bytes(LIMIT)
        .with_queue_depth(64)
        .with_reconnect_on_error(false);
    let live = LiveStream::connect(addr, cfg, Instant::now() + WAIT).unwrap();
    let mut got = Vec::new();
    let end = loop {
        match live.next_frame(WAIT) {
            Ok(f) => got.push((f.header().to_bytes().to_vec(), f.as_bytes().to_vec())),
            Err(e) => break e,
        }
    };
    server.join().unwrap();
    let bad = live.stats().bad_headers;
    live.close();
    (got, end, bad)
}

/// A valid frame of up to `max_side` x `max_side` pixels (above 45 x 45 it
/// is over [`LIMIT`]: consistent but too large).
fn arb_frame(max_side: u32) -> impl Strategy<Value = Vec<u8>> {
    (1..=max_side, 1..=max_side, any::<[u32; 7]>()).prop_flat_map(|(w, h, rest)| {
        vec(any::<u8>(), (w * h * 2) as usize).prop_map(move |pixels| {
            let header = LiveHeader {
                image_size: w * h * 2,
                width: w,
                height: h,
                scale_min: rest[0],
                scale_max: rest[1],
                timestamp_ms: rest[2],
                frame_number: rest[3],
                exposure_us: rest[4],
                reserved: [rest[5], rest[6]],
            };
            [header.to_bytes().to_vec(), pixels].concat()
        })
    })
}

#[derive(Clone, Debug)]
enum Mutation {
    FlipBit {
        at: usize,
        bit: u8,
    },
    /// Replace the u32 at header offset 0, 4 or 8 (size, width, height) of
    /// the header that starts at the frame boundary nearest `at`.
    Field {
        at: usize,
        field: usize,
        value: u32,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Delete {
        at: usize,
        len: usize,
    },
    Truncate {
        at: usize,
    },
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    let pos = any::<usize>();
    let value = prop_oneof![
        any::<u32>(),
        Just(0u32),
        Just(u32::MAX),
        Just(LIMIT + 2),
        1u32..100,
        Just(0x8000_0000),
    ];
    prop_oneof![
        (pos, 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        (pos, 0usize..3, value).prop_map(|(at, field, value)| Mutation::Field { at, field, value }),
        (pos, vec(any::<u8>(), 1..64)).prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (pos, 1usize..64).prop_map(|(at, len)| Mutation::Delete { at, len }),
        pos.prop_map(|at| Mutation::Truncate { at }),
    ]
}

fn apply(stream: &mut Vec<u8>, starts: &[usize], m: &Mutation) {
    if stream.is_empty() {
        return;
    }
    let n = stream.len();
    match m {
        Mutation::FlipBit { at, bit } => stream[at % n] ^= 1 << bit,
        Mutation::Field { at, field, value } => {
            let start = starts[at % starts.len()] + field * 4;
            if start + 4 <= n {
                stream[start..start + 4].copy_from_slice(&value.to_le_bytes());
            }
        }
        Mutation::Insert { at, bytes } => {
            let at = at % (n + 1);
            stream.splice(at..at, bytes.iter().copied());
        }
        Mutation::Delete { at, len } => {
            let at = at % n;
            let end = (at + len).min(n);
            stream.drain(at..end);
        }
        Mutation::Truncate { at } => stream.truncate(at % n),
    }
}

fn check(bytes: Vec<u8>) -> Result<(), TestCaseError> {
    let (want, want_end) = model(&bytes);
    let (got, end, bad_headers) = run_reader(bytes);
    prop_assert_eq!(got.len(), want.len(), "frame count");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        prop_assert!(g == w, "frame {} differs", i);
    }
    match (&want_end, &end) {
        (End::Eof, Error::Disconnected { .. }) => prop_assert_eq!(bad_headers, 0),
        (End::Protocol, Error::Protocol { .. }) => prop_assert_eq!(bad_headers, 1),
        (End::TooLarge { size }, Error::TooLarge { size: s, limit, .. }) => {
            prop_assert_eq!(*size, *s);
            prop_assert_eq!(*limit, u64::from(LIMIT));
            prop_assert_eq!(bad_headers, 1);
        }
        _ => prop_assert!(false, "expected {:?}, got {:?}", want_end, end),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Valid frames are delivered exactly, then a clean end.
    #[test]
    fn live_reader_delivers_valid_streams_exactly(frames in vec(arb_frame(32), 0..8)) {
        let bytes = frames.concat();
        let (want, end) = model(&bytes);
        prop_assert_eq!(want.len(), frames.len());
        prop_assert_eq!(end, End::Eof);
        check(bytes)?;
    }

    /// Mutated valid streams: the reader agrees with the reference parser.
    #[test]
    fn live_reader_matches_the_reference_on_mutated_streams(
        frames in vec(arb_frame(48), 1..8),
        mutations in vec(arb_mutation(), 1..4),
    ) {
        let mut starts = Vec::new();
        let mut at = 0;
        for f in &frames {
            starts.push(at);
            at += f.len();
        }
        let mut bytes = frames.concat();
        for m in &mutations {
            apply(&mut bytes, &starts, m);
        }
        check(bytes)?;
    }
}
