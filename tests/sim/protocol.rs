//! The simulator's protocol behaviour, over a raw TcpStream + FrameReader.
#![cfg(feature = "sim")]

use super::util;

use std::io::Write;

use flamingo_client::codec::{CommandCode as C, Flags, Message};
use flamingo_client::sim::{SimConfig, Simulator, STATE_IDLE};
use util::*;

const SETTINGS: &[u8] = include_bytes!("../../fixtures/ScopeSettings.txt");

fn sim() -> Simulator {
    Simulator::start(SimConfig::default().image_size(64, 48)).unwrap()
}

#[test]
fn golden_image_size_get_bytes() {
    let sim = sim();
    let mut golden = [0u8; 128];
    golden[..8].copy_from_slice(&[0x54, 0xe6, 0x21, 0xf3, 0x27, 0x30, 0x00, 0x00]);
    golden[0x27] = 0x80;
    golden[124..].copy_from_slice(&[0x21, 0x43, 0xdc, 0xfe]);
    let mut c = Client::connect(sim.addr());
    c.stream.write_all(&golden).unwrap();
    let r = c.recv();
    assert_eq!(r.code, C::CAMERA_IMAGE_SIZE_GET);
    assert_eq!(r.status, 0);
    assert_eq!((r.int32_data0, r.int32_data1), (64, 48));
    assert_eq!(r.flags, Flags::TRIGGER_CALL_BACK);
    assert_eq!(r.additional_data_len, 0);
    assert_eq!(sim.received()[0].message.to_bytes(), golden);
}

#[test]
fn replies_only_with_trigger_call_back() {
    let sim = sim();
    let mut c = Client::connect(sim.addr());
    c.send(Message::new(C::SYSTEM_STATE_GET));
    c.send(flagged(C::SYSTEM_STATE_GET));
    let before = c.fence();
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(before[0].code, C::SYSTEM_STATE_GET);
    assert!(before[0].flags.contains(Flags::TRIGGER_CALL_BACK));
    assert_eq!(before[0].int32_data0, STATE_IDLE);
    // Unknown codes without the flag are not echoed either.
    c.send(Message::new(ECHO));
    assert!(c.fence().is_empty());
    assert_eq!(sim.received().len(), 5);
}

#[test]
fn answered_without_flag_is_configurable() {
    let sim = Simulator::start(
        SimConfig::default()
            .answer_without_flag(C::SYSTEM_STATE_GET, true)
            .answer_without_flag(C::COMMON_SCOPE_SETTINGS_LOAD, false),
    )
    .unwrap();
    let mut c = Client::connect(sim.addr());
    c.send(Message::new(C::SYSTEM_STATE_GET));
    c.send(Message::new(C::COMMON_SCOPE_SETTINGS_LOAD));
    let before = c.fence();
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].code, C::SYSTEM_STATE_GET);
}

#[test]
fn settings_load_returns_fixture_text_even_without_flag() {
    let sim = sim();
    let mut c = Client::connect(sim.addr());
    c.send(Message::new(C::COMMON_SCOPE_SETTINGS_LOAD));
    let (m, data) = c.recv_frame();
    assert_eq!(m.code, C::COMMON_SCOPE_SETTINGS_LOAD);
    assert_eq!(m.status, 0);
    assert_eq!(m.additional_data_len as usize, SETTINGS.len());
    assert_eq!(data, SETTINGS);
}

#[test]
fn settings_save_then_load() {
    let sim = sim();
    let mut c = Client::connect(sim.addr());
    c.send_with(flagged(C::COMMON_SCOPE_SETTINGS_SAVE), b"new settings\r\n");
    let r = c.recv();
    assert_eq!((r.code, r.status), (C::COMMON_SCOPE_SETTINGS_SAVE, 0));
    c.send(flagged(C::COMMON_SCOPE_SETTINGS_LOAD));
    assert_eq!(c.recv_frame().1, b"new settings\r\n");
    assert_eq!(sim.settings_text(), b"new settings\r\n");
    assert_eq!(sim.received()[0].data, b"new settings\r\n");
    // An empty save is refused.
    assert_eq!(c.request(flagged(C::COMMON_SCOPE_SETTINGS_SAVE)).status, 2);
}

#[test]
fn unknown_code_is_echoed_with_its_data() {
    let sim = sim();
    let mut c = Client::connect(sim.addr());
    let m = flagged(ECHO)
        .with_int32_data0(-5)
        .with_int32_data2(77)
        .with_double_data(1.25)
        .with_text("tag")
        .unwrap();
    c.send_with(m, b"payload");
    let (r, data) = c.recv_frame();
    assert!(r.bitwise_eq(&m.with_additional_data_len(7)));
    assert_eq!(data, b"payload");
}

#[test]
fn camera_queries_and_exposure() {
    let sim = sim();
    let mut c = Client::connect(sim.addr());
    // 6.5 µm camera pixels through the settings' 6.205x objective.
    let fov = c.request(flagged(C::CAMERA_PIXEL_FIELD_OF_VIEW_GET));
    assert_eq!(fov.double_data, 0.0065 / 6.205);
    assert_eq!(fov.double_data, SimConfig::default().pixel_fov());
    assert_eq!(
        c.request(flagged(C::CAMERA_EXPOSURE_GET)).int32_data0,
        10_000
    );
    let r = c.request(flagged(C::CAMERA_EXPOSURE_SET).with_int32_data0(2500));
    assert_eq!(r.status, 0);
    assert_eq!(c.request(flagged(C::CAMERA_EXPOSURE_GET)).int32_data0, 2500);
    assert_eq!(
        c.request(flagged(C::CAMERA_EXPOSURE_SET).with_int32_data0(0))
            .status,
        2
    );
}

#[test]
fn lasers_led_filter_illumination() {
    let sim = sim();
    let mut c = Client::connect(sim.addr());
    // Laser set: no ack by default, even with the flag.
    c.send(
        flagged(C::LASER_LEVEL_SET)
            .with_int32_data0(2)
            .with_text("11.49")
            .unwrap(),
    );
    assert!(c.fence().is_empty());
    assert_eq!(sim.laser_level(2), Some(11.49));
    let r = c.request(flagged(C::LASER_LEVEL_GET).with_int32_data0(2));
    assert_eq!((r.int32_data0, r.status), (2, 0));
    assert_eq!(r.text().value, "11.49");
    let r = c.request(flagged(C::LASER_LEVEL_GET).with_int32_data0(9));
    assert_eq!(r.text().value, "getLevel error");
    assert_eq!(r.status, 2);
    for code in [
        C::LASER_PREVIEW_ENABLE,
        C::LASER_PREVIEW_DISABLE,
        C::LASER_ALL_DISABLE,
    ] {
        assert_eq!(c.request(flagged(code).with_int32_data0(1)).status, 0);
    }
    // LED: acked by default; level range checked.
    let r = c.request(
        flagged(C::LED_SET)
            .with_int32_data0(3)
            .with_int32_data1(42000),
    );
    assert_eq!(r.status, 0);
    let r = c.request(flagged(C::LED_SET).with_int32_data0(3).with_int32_data1(10));
    assert_eq!(r.status, 2);
    assert_eq!(c.request(flagged(C::LED_PREVIEW_ENABLE)).status, 0);
    assert_eq!(c.request(flagged(C::LED_PREVIEW_DISABLE)).status, 0);
    // Filter wheel.
    assert_eq!(
        c.request(flagged(C::FILTER_POSITION_SET).with_int32_data0(5))
            .status,
        0
    );
    assert_eq!(c.request(flagged(C::FILTER_POSITION_GET)).int32_data0, 5);
    assert_eq!(
        c.request(flagged(C::FILTER_POSITION_SET).with_int32_data0(9))
            .status,
        2
    );
    assert_eq!(c.request(flagged(C::FILTER_POSITION_GET)).int32_data0, 5);
    for code in [
        C::ILLUMINATION_LEFT_ENABLE,
        C::ILLUMINATION_LEFT_DISABLE,
        C::ILLUMINATION_RIGHT_ENABLE,
        C::ILLUMINATION_RIGHT_DISABLE,
    ] {
        assert_eq!(c.request(flagged(code)).status, 0);
    }
}

#[test]
fn laser_set_ack_is_configurable() {
    let sim = Simulator::start(
        SimConfig::default()
            .laser_set_acks(true)
            .led_set_acks(false),
    )
    .unwrap();
    let mut c = Client::connect(sim.addr());
    let r = c.request(
        flagged(C::LASER_LEVEL_SET)
            .with_int32_data0(1)
            .with_text("5.5")
            .unwrap(),
    );
    assert_eq!(r.status, 0);
    let r = c.request(
        flagged(C::LASER_LEVEL_SET)
            .with_int32_data0(1)
            .with_text("abc")
            .unwrap(),
    );
    assert_eq!(r.status, 2);
    assert_eq!(sim.laser_level(1), Some(5.5));
    c.send(
        flagged(C::LED_SET)
            .with_int32_data0(0)
            .with_int32_data1(40000),
    );
    assert!(c.fence().is_empty());
}

#[test]
fn set_idle_broadcasts_idle_without_direct_reply() {
    let sim = sim();
    let mut a = Client::connect(sim.addr());
    let mut b = Client::connect(sim.addr());
    b.fence(); // b is registered
    a.send(flagged(C::SYSTEM_STATE_IDLE));
    let before = a.fence();
    assert_eq!(before.len(), 1);
    assert_eq!(
        (before[0].code, before[0].status),
        (C::SYSTEM_STATE_IDLE, 1)
    );
    assert!(before[0].flags.is_empty(), "an event, not an echo");
    let m = b.recv();
    assert_eq!((m.code, m.status), (C::SYSTEM_STATE_IDLE, 1));
}

#[test]
fn roi_top_set_not_acked_by_default() {
    let sim = sim();
    let mut c = Client::connect(sim.addr());
    c.send(flagged(C::CAMERA_ROI_TOP_SET).with_int32_data0(100));
    assert!(c.fence().is_empty());
    assert_eq!(c.request(flagged(C::CAMERA_ROI_TOP_GET)).int32_data0, 100);

    let sim = Simulator::start(SimConfig::default().ack_roi_top_set(true)).unwrap();
    let mut c = Client::connect(sim.addr());
    let r = c.request(flagged(C::CAMERA_ROI_TOP_SET).with_int32_data0(100));
    assert_eq!(r.code, C::CAMERA_STACK_COMPLETE, "the ambiguous ack");
}

#[test]
fn received_records_every_message() {
    let sim = sim();
    let mut c = Client::connect(sim.addr());
    c.send(flagged(C::STAGE_POSITION_GET).with_int32_data0(3));
    c.recv();
    c.send_with(Message::new(C::COMMON_SCOPE_SETTINGS_SAVE), b"abc");
    c.fence();
    let r = sim.received();
    assert_eq!(r.len(), 3);
    assert_eq!(r[0].message.code, C::STAGE_POSITION_GET);
    assert_eq!(r[0].message.int32_data0, 3);
    assert_eq!(r[1].data, b"abc");
    assert_eq!(r[2].message.code, ECHO);
    assert!(r[0].at <= r[1].at && r[1].at <= r[2].at);
    assert_eq!(r[0].connection, r[2].connection);
    assert_eq!(sim.received_codes()[0], C::STAGE_POSITION_GET);
    let n = sim.counters();
    assert_eq!(n.messages_received, 3);
    assert_eq!(n.additional_bytes_received, 3);
    assert_eq!(n.replies_sent, 2);
    sim.clear_received();
    assert!(sim.received().is_empty());
}

#[test]
fn sequential_and_concurrent_connections() {
    let sim = sim();
    for i in 0..5 {
        let mut c = Client::connect(sim.addr());
        let r = c.request(flagged(C::FILTER_POSITION_GET));
        assert_eq!(r.status, 0, "connection {i}");
    }
    let mut a = Client::connect(sim.addr());
    let mut b = Client::connect(sim.addr());
    assert_eq!(a.request(flagged(C::SYSTEM_STATE_GET)).int32_data0, 0);
    assert_eq!(b.request(flagged(C::SYSTEM_STATE_GET)).int32_data0, 0);
    assert_eq!(sim.counters().connections, 7);
    // Events reach every open connection (closed ones may not have left yet).
    assert!(sim.broadcast(Message::new(C::UI_SET_GAUGE_VALUE).with_int32_data0(9)) >= 2);
    assert_eq!(a.recv().int32_data0, 9);
    assert_eq!(b.recv().int32_data0, 9);
}

#[test]
fn client_sending_oversized_additional_data_is_disconnected() {
    let sim = Simulator::start(SimConfig::default().max_additional_data(1000)).unwrap();
    let mut c = Client::connect(sim.addr());
    c.send(flagged(ECHO).with_additional_data_len(1001));
    assert!(c.try_recv().is_err());
    assert_eq!(sim.counters().protocol_errors, 1);
}

#[test]
fn wait_for_received_and_record_limit() {
    use std::time::Duration;
    let sim = Simulator::start(SimConfig::default().record_limit(3)).unwrap();
    let mut c = Client::connect(sim.addr());
    for i in 0..5 {
        c.send(
            Message::new(C::LASER_LEVEL_SET)
                .with_int32_data0(1)
                .with_text(&format!("{i}.5"))
                .unwrap(),
        );
    }
    let got = sim
        .wait_for_received(TIMEOUT, |r| r.message.text().value == "4.5")
        .unwrap();
    assert_eq!(got.message.code, C::LASER_LEVEL_SET);
    assert_eq!(
        sim.laser_level(1),
        Some(4.5),
        "handled before it is returned"
    );
    let texts: Vec<String> = sim
        .received()
        .iter()
        .map(|r| r.message.text().value.into_owned())
        .collect();
    assert_eq!(texts, ["2.5", "3.5", "4.5"]);
    assert_eq!(sim.counters().messages_received, 5);
    assert!(sim
        .wait_for_received(Duration::from_millis(20), |r| r.message.code
            == C::STAGE_HALT)
        .is_none());
}
