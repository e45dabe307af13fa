//! Live port of the simulator: snapshot, live view, one client at a time.
#![cfg(feature = "sim")]

use super::util;

use std::time::Duration;

use flamingo_client::codec::{CommandCode as C, LiveHeaderError};
use flamingo_client::sim::{pattern_pixel, verify_frame, SimConfig, Simulator};
use util::*;

fn small() -> SimConfig {
    SimConfig::default().image_size(64, 48).exposure_us(1234)
}

#[test]
fn snapshot_frame_is_pixel_exact() {
    let sim = Simulator::start(small()).unwrap();
    let mut live = LiveClient::connect(sim.live_addr());
    let mut c = Client::connect(sim.addr());
    assert_eq!(sim.live_addr().port(), sim.addr().port() + 1);
    let ack = c.request(flagged(C::CAMERA_SNAPSHOT_GET));
    assert_eq!(ack.status, 0);
    let (h, px) = live.frame();
    assert_eq!((h.width, h.height, h.image_size), (64, 48, 64 * 48 * 2));
    assert_eq!((h.scale_min, h.scale_max, h.exposure_us), (0, 65535, 1234));
    assert_eq!(h.frame_number, 0);
    assert_eq!(h.reserved, [0, 0]);
    for y in 0..48u32 {
        for x in 0..64u32 {
            let i = 2 * (y * 64 + x) as usize;
            assert_eq!(
                u16::from_le_bytes([px[i], px[i + 1]]),
                pattern_pixel(x, y, 0),
                "({x}, {y})"
            );
        }
    }
    // A second snapshot is frame 1.
    c.request(flagged(C::CAMERA_SNAPSHOT_GET));
    let (h, px) = live.frame();
    assert_eq!(h.frame_number, 1);
    assert_eq!(verify_frame(64, 48, 1, &px), None);
    assert_eq!(sim.counters().frames_sent, 2);
}

#[test]
fn snapshot_waits_for_a_late_live_client() {
    let sim = Simulator::start(small()).unwrap();
    let mut c = Client::connect(sim.addr());
    assert_eq!(c.request(flagged(C::CAMERA_SNAPSHOT_GET)).status, 0);
    // Connecting after the request is within the grace period.
    let mut live = LiveClient::connect(sim.live_addr());
    let (h, px) = live.frame();
    assert_eq!(verify_frame(h.width, h.height, h.frame_number, &px), None);
}

#[test]
fn snapshot_without_live_client_is_dropped() {
    let sim = Simulator::start(small().live_connect_grace(Duration::ZERO)).unwrap();
    let mut c = Client::connect(sim.addr());
    c.request(flagged(C::CAMERA_SNAPSHOT_GET));
    wait_until("the dropped frame", || sim.counters().frames_dropped == 1);
    assert_eq!(sim.counters().frames_sent, 0);
    assert_eq!(c.request(flagged(C::SYSTEM_STATE_GET)).int32_data0, 0);
}

#[test]
fn live_view_streams_increasing_frames() {
    let sim = Simulator::start(small().live_fps(200.0)).unwrap();
    let mut live = LiveClient::connect(sim.live_addr());
    let mut c = Client::connect(sim.addr());
    assert_eq!(c.request(flagged(C::CAMERA_LIVE_VIEW_START)).status, 0);
    assert!(sim.live_view_on());
    let mut last = None;
    for _ in 0..10 {
        let (h, px) = live.frame();
        assert_eq!(verify_frame(64, 48, h.frame_number, &px), None);
        if let Some(l) = last {
            assert!(h.frame_number > l, "{} after {l}", h.frame_number);
        }
        last = Some(h.frame_number);
    }
    assert_eq!(c.request(flagged(C::CAMERA_LIVE_VIEW_STOP)).status, 0);
    assert!(!sim.live_view_on());
}

#[test]
fn new_live_connection_replaces_the_old_one() {
    let sim = Simulator::start(small().live_fps(100.0)).unwrap();
    let mut first = LiveClient::connect(sim.live_addr());
    let mut c = Client::connect(sim.addr());
    c.request(flagged(C::CAMERA_LIVE_VIEW_START));
    first.frame();
    let mut second = LiveClient::connect(sim.live_addr());
    assert!(first.closed(), "the old live connection is closed");
    let (h, px) = second.frame();
    assert_eq!(verify_frame(64, 48, h.frame_number, &px), None);
    assert_eq!(sim.counters().live_connections, 2);
}

#[test]
fn bad_live_header_then_good_frames() {
    let sim = Simulator::start(small()).unwrap();
    let mut live = LiveClient::connect(sim.live_addr());
    let mut c = Client::connect(sim.addr());
    sim.update_faults(|f| f.bad_live_header = true);
    c.request(flagged(C::CAMERA_SNAPSHOT_GET));
    let h = live.header();
    assert!(matches!(
        h.validate(u32::MAX),
        Err(LiveHeaderError::Inconsistent { .. })
    ));
    assert!(!sim.faults().bad_live_header, "one-shot");
    // The client closes and reconnects its live socket, as after any bad
    // header; the next snapshot goes to the new connection.
    drop(live);
    let mut live = LiveClient::connect(sim.live_addr());
    c.request(flagged(C::CAMERA_SNAPSHOT_GET));
    let (h, px) = live.frame();
    assert_eq!(verify_frame(64, 48, h.frame_number, &px), None);
    assert_eq!(sim.counters().bad_live_headers, 1);
}

#[test]
fn workflow_with_live_view_sends_frames() {
    let sim = Simulator::start(small()).unwrap();
    let mut live = LiveClient::connect(sim.live_addr());
    let mut c = Client::connect(sim.addr());
    c.send_with(
        flagged(C::CAMERA_WORK_FLOW_START),
        include_bytes!("../../fixtures/Snapshot.txt"),
    );
    c.recv_until(C::SYSTEM_STATE_IDLE);
    let (h, px) = live.frame();
    assert_eq!(verify_frame(64, 48, h.frame_number, &px), None);
}

#[test]
fn full_size_frame() {
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let mut live = LiveClient::connect(sim.live_addr());
    let mut c = Client::connect(sim.addr());
    assert_eq!(
        c.request(flagged(C::CAMERA_IMAGE_SIZE_GET)).int32_data0,
        2048
    );
    c.request(flagged(C::CAMERA_SNAPSHOT_GET));
    let (h, px) = live.frame();
    assert_eq!((h.width, h.height), (2048, 2048));
    assert_eq!(verify_frame(2048, 2048, h.frame_number, &px), None);
}
