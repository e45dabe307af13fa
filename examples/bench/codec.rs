//! Codec speed on one core: encode, decode, and framed decode from memory.

use std::hint::black_box;
use std::time::{Duration, Instant};

use flamingo_client::codec::{CommandCode, FrameReader, Message, MESSAGE_LEN};

use crate::report::{done, median, progress, rate, Report};
use crate::Opts;

/// Calls `f` in batches until `window` has passed; calls per second.
fn per_second(window: Duration, mut f: impl FnMut(u64)) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    loop {
        for _ in 0..4096 {
            f(n);
            n += 1;
        }
        let e = start.elapsed();
        if e >= window {
            return n as f64 / e.as_secs_f64();
        }
    }
}

/// Median of three windows of `f`.
fn median3(mut f: impl FnMut() -> f64) -> f64 {
    median((0..3).map(|_| f()).collect())
}

pub fn bench(opts: &Opts, out: &mut Report) {
    let t = progress("codec");
    let window = Duration::from_millis(opts.pick(250, 120));
    let msg = Message::new(CommandCode::STAGE_POSITION_SET)
        .with_int32_data0(3)
        .with_double_data(12.5)
        .with_text("bench")
        .expect("a short text fits");
    // Encode: Message -> 128 bytes.
    let enc = median3(|| {
        per_second(window, |i| {
            let mut b = [0u8; MESSAGE_LEN];
            black_box(msg).with_int32_data1(i as i32).encode(&mut b);
            black_box(&b);
        })
    });
    // Decode: 128 bytes -> Message (both markers validated).
    let bytes = msg.to_bytes();
    let dec = median3(|| {
        per_second(window, |_| {
            let m = Message::decode(black_box(&bytes)).expect("a valid message");
            black_box(m);
        })
    });
    // Framed decode: FrameReader over an in-memory stream of 1024 messages.
    let mut stream = Vec::with_capacity(1024 * MESSAGE_LEN);
    for i in 0..1024 {
        stream.extend_from_slice(&msg.with_int32_data1(i).to_bytes());
    }
    let framed = median3(|| {
        let mut fr = FrameReader::new(1 << 20);
        let mut src = &stream[..];
        per_second(window, |_| {
            if src.is_empty() {
                src = &stream[..];
            }
            let m = fr.read_message(&mut src).expect("a valid stream");
            black_box(m);
        })
    });
    done(t);
    out.num("encode_msgs_per_s", enc);
    out.num("decode_msgs_per_s", dec);
    out.num("framed_decode_msgs_per_s", framed);
    out.info("codec: encode (1 core)", rate(enc, "msg/s"));
    out.info("codec: decode (1 core)", rate(dec, "msg/s"));
    out.info(
        "codec: FrameReader over a byte slice",
        rate(framed, "msg/s"),
    );
}
