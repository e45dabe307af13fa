//! Memory bounds: lying length fields
//! give typed size-limit errors and allocate nothing. The only test in this
//! binary, so the process's peak memory figures (Linux: VmPeak, VmHWM in
//! /proc/self/status) are not disturbed by other tests.

mod common;
use common::{ECHO, LONG};

use std::io::Write;
use std::net::TcpListener;
use std::time::Instant;

use common::{poll_until, vm_kib, Conn, Next, TestServer};
use flamingo_client::codec::{CommandCode as C, LiveHeader, Message};
use flamingo_client::live::{LiveConfig, LiveStream};
use flamingo_client::sim::{SimConfig, Simulator};
use flamingo_client::{Client, ClientConfig, Error};

/// (VmPeak, VmHWM) in MiB, where the OS tells us.
fn peaks() -> Option<(u64, u64)> {
    Some((vm_kib("VmPeak")? / 1024, vm_kib("VmHWM")? / 1024))
}

/// Serves one live connection with `bytes`, then holds it open until the
/// client closes.
fn live_server(bytes: Vec<u8>) -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let _ = s.write_all(&bytes);
        let mut sink = [0u8; 16];
        let _ = std::io::Read::read(&mut s, &mut sink); // until the client closes
    });
    (addr, h)
}

fn header(width: u32, height: u32) -> LiveHeader {
    LiveHeader {
        image_size: width.wrapping_mul(height).wrapping_mul(2),
        width,
        height,
        ..LiveHeader::default()
    }
}

/// additionalDataBytes of 2 GiB (simulator fault) and of 4 GiB - 1
/// (scripted server), a real 2 MiB payload over a 1 MiB limit, a live header
/// claiming a consistent 4 GiB frame and one whose size disagrees with its
/// dimensions: each gives its typed error, the connections recover, and the
/// process's peak virtual memory (which any allocation of the claimed size
/// would raise by gigabytes) and resident high-water mark barely move.
#[test]
fn lying_lengths_give_typed_errors_and_allocate_nothing() {
    // Text with no start-marker byte (0x54), so skipping it is exact.
    let text: Vec<u8> = (0..2u32 << 20).map(|i| b'a' + (i % 26) as u8).collect();
    let sim = Simulator::start(
        SimConfig::default()
            .image_size(64, 48)
            .settings_text(text.clone()),
    )
    .unwrap();
    let addr = sim.addr().to_string();
    let c = Client::connect(&addr, ClientConfig::default()).unwrap();
    let small = Client::connect(
        &addr,
        ClientConfig::default().additional_data_limit(1 << 20),
    )
    .unwrap();
    let liar = TestServer::start(|| {
        |m: Message, _d: Vec<u8>, conn: &mut Conn| {
            if m.int32_data0 == 1 {
                conn.send(&m.with_additional_data_len(u32::MAX));
            } else {
                conn.send(&m);
            }
            Next::Continue
        }
    });
    let lc = Client::connect(&liar.addr(), ClientConfig::default()).unwrap();
    // Warm-up: the same operations with honest sizes, so threads, buffers and
    // allocator arenas exist before the baseline.
    c.request(Message::new(C::CAMERA_IMAGE_SIZE_GET), LONG)
        .unwrap();
    assert_eq!(
        c.request(Message::new(C::COMMON_SCOPE_SETTINGS_LOAD), LONG)
            .unwrap()
            .data,
        text
    );
    small.request(Message::new(ECHO), LONG).unwrap();
    lc.request(Message::new(ECHO), LONG).unwrap();
    let (good_addr, good) =
        live_server([header(64, 48).to_bytes().to_vec(), vec![0u8; 64 * 48 * 2]].concat());
    let live =
        LiveStream::connect(good_addr, LiveConfig::default(), Instant::now() + LONG).unwrap();
    live.next_frame(LONG).unwrap();
    live.close();
    good.join().unwrap();
    let before = peaks();

    // 2 GiB claimed by the simulator, nothing follows.
    sim.update_faults(|f| f.absurd_additional_len = Some(C::CAMERA_IMAGE_SIZE_GET));
    match c.request(Message::new(C::CAMERA_IMAGE_SIZE_GET), LONG) {
        Err(Error::TooLarge { size, limit, .. }) => {
            assert_eq!((size, limit), (0x8000_0000, 64 << 20))
        }
        other => panic!("{other:?}"),
    }
    sim.update_faults(|f| f.absurd_additional_len = None);
    let r = c
        .request(Message::new(C::CAMERA_IMAGE_SIZE_GET), LONG)
        .unwrap();
    assert_eq!(
        (r.message.int32_data0, r.message.additional_data_len),
        (64, 0)
    );

    // 4 GiB - 1 claimed by a scripted server.
    match lc.request(Message::new(ECHO).with_int32_data0(1), LONG) {
        Err(Error::TooLarge { size, .. }) => assert_eq!(size, u64::from(u32::MAX)),
        other => panic!("{other:?}"),
    }
    let r = lc
        .request(Message::new(ECHO).with_int32_data2(7), LONG)
        .unwrap();
    assert_eq!(r.message.int32_data2, 7);

    // A real 2 MiB payload over a 1 MiB limit: refused, skipped, not kept.
    match small.request(Message::new(C::COMMON_SCOPE_SETTINGS_LOAD), LONG) {
        Err(Error::TooLarge { size, limit, .. }) => assert_eq!((size, limit), (2 << 20, 1 << 20)),
        other => panic!("{other:?}"),
    }
    let r = small
        .request(Message::new(ECHO).with_int32_data2(8), LONG)
        .unwrap();
    assert_eq!(r.message.int32_data2, 8);
    assert_eq!(
        small.stats().bytes_skipped,
        2 << 20,
        "the payload was skipped"
    );

    // A live header claiming a consistent 4 GiB frame (65535 x 32768 x 2).
    let (addr4, h4) = live_server(header(65535, 32768).to_bytes().to_vec());
    let cfg = LiveConfig::default().with_reconnect_on_error(false);
    let live = LiveStream::connect(addr4, cfg.clone(), Instant::now() + LONG).unwrap();
    match live.next_frame(LONG) {
        Err(Error::TooLarge { size, limit, .. }) => {
            assert_eq!(size, 65535 * 32768 * 2);
            assert_eq!(limit, u64::from(cfg.max_image_bytes));
        }
        other => panic!("{other:?}"),
    }
    let s = live.stats();
    assert_eq!((s.bad_headers, s.frames, s.buffers_allocated), (1, 0, 0));
    live.close();
    h4.join().unwrap();

    // The simulator's inconsistent header (size 0xFFFF_FFFF for 64 x 48):
    // counted, the stream reconnects, the next frames are good.
    let live = c.live(LONG).unwrap();
    sim.update_faults(|f| f.bad_live_header = true);
    c.request_checked(Message::new(C::CAMERA_SNAPSHOT_GET), LONG)
        .unwrap();
    poll_until("the bad header to be seen", LONG, || {
        live.stats().bad_headers == 1
    });
    poll_until("the live stream to reconnect", LONG, || {
        live.stats().reconnects == 1 && sim.counters().live_connections == 2
    });
    let mark = live.stats().frames;
    c.request_checked(Message::new(C::CAMERA_SNAPSHOT_GET), LONG)
        .unwrap();
    let f = live.next_frame_after(mark, LONG).unwrap();
    assert_eq!((f.width(), f.height()), (64, 48));

    let s = c.stats();
    assert_eq!((s.oversized, s.disconnects), (1, 0));
    assert_eq!(small.stats().oversized, 1);
    assert_eq!(lc.stats().oversized, 1);
    if let (Some((peak0, hwm0)), Some((peak1, hwm1))) = (before, peaks()) {
        eprintln!(
            "VmPeak {peak0} -> {peak1} MiB, VmHWM {hwm0} -> {hwm1} MiB (claims: 2 GiB, 4 GiB - 1, 2 MiB over a 1 MiB limit, 4 GiB live)"
        );
        assert!(
            peak1 - peak0 < 1024,
            "peak virtual memory grew {} MiB",
            peak1 - peak0
        );
        assert!(
            hwm1 - hwm0 < 64,
            "resident high-water mark grew {} MiB",
            hwm1 - hwm0
        );
    }
}
