//! The camera facade (image size, pixel size, exposure, ROI) against the simulator.

use super::util;

use flamingo_client::codec::CommandCode as C;
use flamingo_client::devices::ImageSize;
use util::*;

#[test]
fn image_size_fov_and_exposure() {
    let sim = sim_with(base_config().pixel_fov_mm(0.000253).exposure_us(9002));
    let c = connect(&sim);
    let cam = c.camera();
    assert_eq!(
        cam.image_size().unwrap(),
        ImageSize {
            width: 64,
            height: 48
        }
    );
    assert_eq!(cam.pixel_fov_mm().unwrap(), 0.000253);
    assert_eq!(cam.exposure_us().unwrap(), 9002);
    cam.set_exposure_us(20_000).unwrap();
    assert_eq!(cam.exposure_us().unwrap(), 20_000);
    let set = sim
        .received()
        .into_iter()
        .find(|r| r.message.code == C::CAMERA_EXPOSURE_SET)
        .unwrap();
    assert_eq!(set.message.int32_data0, 20_000);
}

#[test]
fn region_of_interest() {
    let sim = sim();
    let c = connect(&sim);
    let cam = c.camera();
    cam.set_roi_left(100).unwrap();
    assert_eq!(cam.roi_left().unwrap(), 100);
    // Sent without waiting (0x3011 is also the stack-complete code).
    cam.set_roi_top(50).unwrap();
    assert_eq!(cam.roi_top().unwrap(), 50);
}

#[test]
fn refused_and_busy() {
    let sim = sim();
    let c = connect(&sim);
    let cam = c.camera();
    status_override(&sim, C::CAMERA_EXPOSURE_SET, 2);
    assert_refused(cam.set_exposure_us(1000), C::CAMERA_EXPOSURE_SET, 2);
    status_override(&sim, C::CAMERA_EXPOSURE_SET, 1);
    assert_busy(cam.set_exposure_us(1000), C::CAMERA_EXPOSURE_SET);
    assert_eq!(cam.exposure_us().unwrap(), 10_000);
}

#[test]
fn timeout_and_disconnected() {
    let sim = sim();
    let c = connect(&sim);
    never_answer(&sim, C::CAMERA_IMAGE_SIZE_GET);
    never_answer(&sim, C::CAMERA_EXPOSURE_SET);
    let cam = c.camera().timeout(SHORT);
    assert_timeout(cam.image_size());
    assert_timeout(cam.set_exposure_us(5));
    // The simulator's default: its 6.5 µm camera pixel through the settings'
    // 6.205x objective.
    assert_eq!(cam.pixel_fov_mm().unwrap(), 0.0065 / 6.205);
    disconnect(&sim, &c);
    assert_disconnected(cam.pixel_fov_mm());
    assert_disconnected(cam.set_exposure_us(5));
}

#[test]
fn invalid_arguments_send_nothing() {
    let sim = sim();
    let c = connect(&sim);
    let cam = c.camera();
    assert_invalid_and_nothing_sent(&sim, &c, || cam.set_exposure_us(0));
    assert_invalid_and_nothing_sent(&sim, &c, || cam.set_exposure_us(u32::MAX));
    assert_invalid_and_nothing_sent(&sim, &c, || cam.set_roi_left(0));
    assert_invalid_and_nothing_sent(&sim, &c, || cam.set_roi_top(0));
}

#[test]
fn submit_forms() {
    let sim = sim();
    let c = connect(&sim);
    let cam = c.camera();
    let size = cam.submit_image_size().unwrap();
    let fov = cam.submit_pixel_fov_mm().unwrap();
    let set = cam.submit_set_exposure_us(777).unwrap();
    assert_eq!(size.wait().unwrap().width, 64);
    assert!(fov.wait().unwrap() > 0.0);
    set.wait().unwrap();
    assert_eq!(cam.submit_exposure_us().unwrap().wait().unwrap(), 777);
}

#[test]
fn snapshot_returns_the_frame() {
    let sim = sim();
    let c = connect(&sim);
    let cam = c.camera();
    for _ in 0..3 {
        let f = cam.snapshot().unwrap();
        assert_eq!((f.width(), f.height()), (64, 48));
        assert_eq!(
            flamingo_client::sim::verify_frame(64, 48, f.frame_number(), f.as_bytes()),
            None
        );
    }
    assert_eq!(sim.counters().frames_sent, 3);
    // Non-blocking form, the live port already open.
    let mut op = cam.submit_snapshot().unwrap();
    let f = loop {
        if let Some(r) = op.try_get() {
            break r.unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    assert_eq!(f.width(), 64);
}

#[test]
fn live_start_and_stop() {
    let sim = sim_with(base_config().live_fps(200.0));
    let c = connect(&sim);
    let cam = c.camera();
    let live = cam.live_start().unwrap();
    assert!(sim.live_view_on());
    let a = live.next_frame(LONG).unwrap();
    let b = live.next_frame(LONG).unwrap();
    assert!(b.sequence() > a.sequence());
    cam.live_stop().unwrap();
    assert!(!sim.live_view_on());
    assert!(c.live_if_open().is_none());
    // A snapshot afterwards reconnects the live port.
    assert_eq!(cam.snapshot().unwrap().height(), 48);
}

#[test]
fn snapshot_errors() {
    let sim = sim();
    let c = connect(&sim);
    let cam = c.camera();
    status_override(&sim, C::CAMERA_SNAPSHOT_GET, 2);
    assert_refused(cam.snapshot(), C::CAMERA_SNAPSHOT_GET, 2);
    status_override(&sim, C::CAMERA_SNAPSHOT_GET, 1);
    assert_busy(cam.snapshot(), C::CAMERA_SNAPSHOT_GET);
    status_override(&sim, C::CAMERA_LIVE_VIEW_START, 1);
    assert_busy(cam.live_start(), C::CAMERA_LIVE_VIEW_START);
    sim.set_faults(Default::default());
    never_answer(&sim, C::CAMERA_SNAPSHOT_GET);
    assert_timeout(cam.clone().timeout(SHORT).snapshot());
    disconnect(&sim, &c);
    assert_disconnected(cam.live_stop());
    match cam.snapshot() {
        Err(e) if e.is_disconnected() => {}
        Err(flamingo_client::Error::Connect { .. }) => {} // the live port is gone too
        other => panic!("{other:?}"),
    }
    // The live port disabled: an invalid argument, nothing sent.
    let sim = util::sim();
    let c = flamingo_client::Client::connect(
        &sim.addr().to_string(),
        flamingo_client::ClientConfig::default().live(false),
    )
    .unwrap();
    assert_invalid_and_nothing_sent(&sim, &c, || c.camera().snapshot());
}
