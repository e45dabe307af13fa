//! Lasers, LED and filter wheel against the simulator.

use super::util;

use flamingo_client::codec::CommandCode as C;
use flamingo_client::devices::{LedColour, LED_LEVEL_MAX, LED_LEVEL_MIN};
use flamingo_client::Error;
use util::*;

#[test]
fn laser_levels_round_trip_as_text() {
    let sim = sim();
    let c = connect(&sim);
    let lasers = c.lasers();
    assert_eq!(lasers.set_level_percent(2, 11.494).unwrap(), 11.49);
    assert_eq!(lasers.level_percent(2).unwrap(), 11.49);
    assert_eq!(sim.laser_level(2), Some(11.49));
    assert_eq!(lasers.set_level_percent(4, 100.0).unwrap(), 100.0);
    assert_eq!(lasers.set_level_percent(1, 0.0).unwrap(), 0.0);
    let set = sim
        .received()
        .into_iter()
        .find(|r| r.message.code == C::LASER_LEVEL_SET)
        .unwrap()
        .message;
    assert_eq!(set.int32_data0, 2);
    assert_eq!(set.text().value, "11.49");
    assert!(set
        .flags
        .contains(flamingo_client::codec::Flags::TRIGGER_CALL_BACK));
}

#[test]
fn laser_set_works_when_the_instrument_acknowledges_it() {
    let sim = sim_with(base_config().laser_set_acks(true));
    let c = connect(&sim);
    let lasers = c.lasers();
    for i in 0..20 {
        let p = f64::from(i) * 5.0;
        assert_eq!(lasers.set_level_percent(3, p).unwrap(), p);
    }
    assert_eq!(c.stats().pending_requests, 0);
}

#[test]
fn laser_preview_and_all_off() {
    let sim = sim();
    let c = connect(&sim);
    let lasers = c.lasers();
    lasers.preview_enable(3).unwrap();
    lasers.preview_disable(3).unwrap();
    lasers.all_off().unwrap();
    let off: Vec<i32> = sim
        .received()
        .iter()
        .filter(|r| r.message.code == C::LASER_ALL_DISABLE)
        .map(|r| r.message.int32_data0)
        .collect();
    assert_eq!(off, vec![1, 2, 3, 4]);
}

#[test]
fn laser_refused_and_busy() {
    // Refusals of the set show when the instrument acknowledges it.
    let sim = sim_with(base_config().laser_set_acks(true));
    let c = connect(&sim);
    let lasers = c.lasers();
    status_override(&sim, C::LASER_LEVEL_SET, 2);
    assert_refused(lasers.set_level_percent(1, 50.0), C::LASER_LEVEL_SET, 2);
    status_override(&sim, C::LASER_LEVEL_SET, 1);
    assert_busy(lasers.set_level_percent(1, 50.0), C::LASER_LEVEL_SET);
    status_override(&sim, C::LASER_PREVIEW_ENABLE, 2);
    assert_refused(lasers.preview_enable(1), C::LASER_PREVIEW_ENABLE, 2);
    status_override(&sim, C::LASER_ALL_DISABLE, 1);
    assert_busy(lasers.all_off(), C::LASER_ALL_DISABLE);
    // Without an acknowledgement, the level read back tells.
    let sim = util::sim();
    let c = connect(&sim);
    status_override(&sim, C::LASER_LEVEL_SET, 2);
    let before = c.lasers().level_percent(1).unwrap();
    assert_eq!(c.lasers().set_level_percent(1, 42.0).unwrap(), before);
}

#[test]
fn laser_timeout_and_disconnected() {
    let sim = sim();
    let c = connect(&sim);
    never_answer(&sim, C::LASER_LEVEL_GET);
    let lasers = c.lasers().timeout(SHORT);
    assert_timeout(lasers.level_percent(1));
    assert_timeout(lasers.set_level_percent(1, 5.0));
    disconnect(&sim, &c);
    assert_disconnected(lasers.preview_enable(1));
    assert_disconnected(lasers.set_level_percent(1, 5.0));
    assert_disconnected(lasers.all_off());
}

#[test]
fn laser_invalid_arguments_send_nothing() {
    let sim = sim();
    let c = connect(&sim);
    let lasers = c.lasers();
    assert_invalid_and_nothing_sent(&sim, &c, || lasers.level_percent(0));
    assert_invalid_and_nothing_sent(&sim, &c, || lasers.level_percent(5));
    assert_invalid_and_nothing_sent(&sim, &c, || lasers.set_level_percent(5, 1.0));
    assert_invalid_and_nothing_sent(&sim, &c, || lasers.set_level_percent(1, f64::NAN));
    assert_invalid_and_nothing_sent(&sim, &c, || lasers.set_level_percent(1, 100.01));
    assert_invalid_and_nothing_sent(&sim, &c, || lasers.set_level_percent(1, -0.5));
    assert_invalid_and_nothing_sent(&sim, &c, || lasers.preview_enable(0));
    let e = lasers.level_percent(5).unwrap_err();
    assert!(e.to_string().contains("numbered 1 to 4"), "{e}");
}

#[test]
fn led_set_and_preview() {
    let sim = sim();
    let c = connect(&sim);
    let led = c.led();
    led.set(LedColour::Blue, 50_000).unwrap();
    led.set_percent(LedColour::White, 100.0).unwrap();
    led.preview_enable().unwrap();
    led.preview_disable().unwrap();
    let sets: Vec<(i32, i32)> = sim
        .received()
        .iter()
        .filter(|r| r.message.code == C::LED_SET)
        .map(|r| (r.message.int32_data0, r.message.int32_data1))
        .collect();
    assert_eq!(sets, vec![(2, 50_000), (3, LED_LEVEL_MAX as i32)]);
}

#[test]
fn led_errors() {
    let sim = sim();
    let c = connect(&sim);
    let led = c.led();
    assert_invalid_and_nothing_sent(&sim, &c, || led.set(LedColour::Red, LED_LEVEL_MIN - 1));
    assert_invalid_and_nothing_sent(&sim, &c, || led.set(LedColour::Red, LED_LEVEL_MAX + 1));
    assert_invalid_and_nothing_sent(&sim, &c, || led.set_percent(LedColour::Red, f64::NAN));
    status_override(&sim, C::LED_SET, 2);
    assert_refused(led.set(LedColour::Red, LED_LEVEL_MIN), C::LED_SET, 2);
    status_override(&sim, C::LED_SET, 1);
    assert_busy(led.set(LedColour::Red, LED_LEVEL_MIN), C::LED_SET);
    never_answer(&sim, C::LED_PREVIEW_ENABLE);
    assert_timeout(led.clone().timeout(SHORT).preview_enable());
    disconnect(&sim, &c);
    assert_disconnected(led.preview_disable());
}

#[test]
fn filter_wheel() {
    let sim = sim();
    let c = connect(&sim);
    let wheel = c.filter_wheel();
    wheel.set_position(3).unwrap();
    assert_eq!(wheel.position().unwrap(), 3);
    wheel.set_position(8).unwrap();
    assert_eq!(wheel.submit_position().unwrap().wait().unwrap(), 8);
    assert_invalid_and_nothing_sent(&sim, &c, || wheel.set_position(0));
    assert_invalid_and_nothing_sent(&sim, &c, || wheel.set_position(9));
    status_override(&sim, C::FILTER_POSITION_SET, 2);
    assert_refused(wheel.set_position(1), C::FILTER_POSITION_SET, 2);
    status_override(&sim, C::FILTER_POSITION_SET, 1);
    assert_busy(wheel.set_position(1), C::FILTER_POSITION_SET);
    never_answer(&sim, C::FILTER_POSITION_GET);
    assert_timeout(wheel.clone().timeout(SHORT).position());
    disconnect(&sim, &c);
    match wheel.set_position(2) {
        Err(Error::Disconnected { .. }) => {}
        other => panic!("{other:?}"),
    }
}
