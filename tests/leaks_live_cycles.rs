//! Live restarts under load: stopping and
//! starting live view 200 times while frames stream surfaces no error,
//! never shows a stale ("frozen") frame after a restart, and leaks nothing.
//! The only test in this binary, so the process-wide thread and file
//! descriptor counts are not disturbed by other tests.

mod common;
use common::LONG;

use common::{poll_until, proc_counts, thread_names, wait_for_counts};
use flamingo_client::codec::{CommandCode as C, Message};
use flamingo_client::sim::{verify_frame, SimConfig, Simulator};
use flamingo_client::{Client, ClientConfig};

const CYCLES: u32 = 200;
/// Frame side: 2 MiB frames in release builds (a frame is usually in flight
/// at teardown); smaller in debug builds, where rendering is slow.
const SIDE: u32 = if cfg!(debug_assertions) { 256 } else { 1024 };

fn live_threads() -> usize {
    thread_names()
        .iter()
        .filter(|n| n.starts_with("flamingo-live"))
        .count()
}

/// 200 cycles of `live()`, LIVE_VIEW_START, a frame, then either
/// LIVE_VIEW_STOP and `close_live()` or `close_live()` with 2 MiB frames
/// still streaming at 1000 fps (the socket torn down under the reader): every frame is
/// pixel-exact and newer than the last cycle's, no call fails, no stream
/// ends with an error, the command link never drops, and threads and file
/// descriptors return to the baseline.
#[test]
fn live_view_restarts_while_streaming_surface_no_error_and_leak_nothing() {
    let base = proc_counts();
    let sim =
        Simulator::start(SimConfig::default().image_size(SIDE, SIDE).live_fps(1000.0)).unwrap();
    let c = Client::connect(&sim.addr().to_string(), ClientConfig::default()).unwrap();
    let mut last_frame = None::<u32>;
    let mut frames = 0u64;
    for cycle in 0..CYCLES {
        let live = c
            .live(LONG)
            .unwrap_or_else(|e| panic!("cycle {cycle}: live(): {e}"));
        c.request_checked(Message::new(C::CAMERA_LIVE_VIEW_START), LONG)
            .unwrap_or_else(|e| panic!("cycle {cycle}: start: {e}"));
        for _ in 0..2 {
            let f = live
                .next_frame(LONG)
                .unwrap_or_else(|e| panic!("cycle {cycle}: next_frame: {e}"));
            assert_eq!((f.width(), f.height()), (SIDE, SIDE));
            assert_eq!(
                verify_frame(SIDE, SIDE, f.frame_number(), f.as_bytes()),
                None,
                "cycle {cycle}: pixel-exact"
            );
            if let Some(last) = last_frame {
                assert!(f.frame_number() > last, "cycle {cycle}: a fresh frame");
            }
            last_frame = Some(f.frame_number());
            frames += 1;
        }
        if cycle % 2 == 0 {
            c.request_checked(Message::new(C::CAMERA_LIVE_VIEW_STOP), LONG)
                .unwrap_or_else(|e| panic!("cycle {cycle}: stop: {e}"));
        }
        c.close_live();
        assert!(live.is_finished(), "cycle {cycle}");
        assert!(live.error().is_none(), "cycle {cycle}: {:?}", live.error());
        assert!(c.live_if_open().is_none());
        drop(live);
        // close_live() joined the reader (it may linger in /proc a moment).
        poll_until("the live reader to leave /proc", LONG, || {
            live_threads() == 0
        });
    }
    c.request_checked(Message::new(C::CAMERA_LIVE_VIEW_STOP), LONG)
        .unwrap();
    let s = c.stats();
    assert_eq!((s.disconnects, s.timeouts), (0, 0));
    let k = sim.counters();
    assert_eq!(k.live_connections, u64::from(CYCLES));
    c.close();
    drop(c);
    drop(sim);
    wait_for_counts(base, "after 200 live cycles");
    eprintln!(
        "{CYCLES} live cycles, {frames} frames checked, {} frames sent and {} dropped by the simulator \
         (written while or after the client tore the live socket down), no error, counts back to {base:?}",
        k.frames_sent, k.frames_dropped
    );
}
