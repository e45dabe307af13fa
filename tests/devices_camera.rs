//! The camera facade (image size, pixel size, exposure, ROI) against the simulator.

#[path = "devices_util.rs"]
mod util;

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
    assert_eq!(cam.pixel_fov_mm().unwrap(), 0.000253);
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
