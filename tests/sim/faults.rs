//! Every fault the simulator can inject, at least once.
#![cfg(feature = "sim")]

use super::util;

use std::io::{ErrorKind, Write};
use std::time::Duration;

use flamingo_client::codec::{CommandCode as C, FrameError, FrameReader};
use flamingo_client::sim::{Faults, SimConfig, Simulator, STATE_ERROR};
use util::*;

fn sim() -> Simulator {
    Simulator::start(SimConfig::default()).unwrap()
}

/// Sends `n` tagged echo requests and checks the echoes come back in order.
fn echo_round(c: &mut Client, n: i32) {
    for i in 0..n {
        c.send(
            flagged(ECHO)
                .with_int32_data2(i)
                .with_double_data(f64::from(i) * 0.5),
        );
    }
    for i in 0..n {
        let m = c.recv();
        assert_eq!(
            (m.code, m.int32_data2, m.double_data),
            (ECHO, i, f64::from(i) * 0.5)
        );
    }
}

#[test]
fn delay_does_not_hold_back_other_replies() {
    let sim = sim();
    sim.update_faults(|f| {
        f.delay
            .insert(C::STAGE_POSITION_GET, Duration::from_millis(200));
    });
    let mut c = Client::connect(sim.addr());
    c.send(flagged(C::STAGE_POSITION_GET).with_int32_data0(1));
    assert!(
        c.fence().is_empty(),
        "the delayed reply has not overtaken the fence"
    );
    let r = c.recv();
    assert_eq!((r.code, r.int32_data0), (C::STAGE_POSITION_GET, 1));
    assert!(sim.received()[0].at.elapsed() >= Duration::from_millis(200));
    assert_eq!(sim.counters().delayed_replies, 1);
    assert_eq!(sim.counters().faults_injected, 1);
}

#[test]
fn delayed_move_ack_still_precedes_motion_stopped() {
    let sim = sim();
    sim.update_faults(|f| {
        f.delay
            .insert(C::STAGE_POSITION_SET, Duration::from_millis(100));
    });
    let mut c = Client::connect(sim.addr());
    c.send(
        flagged(C::STAGE_POSITION_SET)
            .with_int32_data0(1)
            .with_double_data(8.032),
    );
    assert_eq!(c.recv().code, C::STAGE_POSITION_SET);
    assert_eq!(c.recv().code, C::STAGE_MOTION_STOPPED);
}

#[test]
fn answer_late_is_one_shot() {
    let sim = sim();
    sim.set_faults(Faults {
        answer_late: Some((C::CAMERA_IMAGE_SIZE_GET, Duration::from_millis(150))),
        ..Faults::default()
    });
    let mut c = Client::connect(sim.addr());
    c.send(flagged(C::CAMERA_IMAGE_SIZE_GET));
    assert!(c.fence().is_empty());
    assert_eq!(c.recv().code, C::CAMERA_IMAGE_SIZE_GET);
    assert_eq!(sim.faults().answer_late, None);
    c.send(flagged(C::CAMERA_IMAGE_SIZE_GET));
    assert_eq!(c.fence().len(), 1, "answered at once the second time");
    assert_eq!(sim.counters().late_replies, 1);
}

#[test]
fn never_answer_still_executes() {
    let sim = sim();
    sim.update_faults(|f| {
        f.never_answer.insert(C::STAGE_POSITION_GET);
        f.never_answer.insert(C::STAGE_POSITION_SET);
    });
    let mut c = Client::connect(sim.addr());
    c.send(flagged(C::STAGE_POSITION_GET).with_int32_data0(1));
    assert!(c.fence().is_empty());
    c.send(
        flagged(C::STAGE_POSITION_SET)
            .with_int32_data0(1)
            .with_double_data(8.0),
    );
    let m = c.recv();
    assert_eq!((m.code, m.double_data), (C::STAGE_MOTION_STOPPED, 8.0));
    assert_eq!(sim.counters().suppressed_replies, 2);
}

#[test]
fn status_override_refuses() {
    let sim = sim();
    sim.update_faults(|f| {
        f.status_override.insert(C::FILTER_POSITION_SET, 7);
        f.status_override.insert(C::STAGE_POSITION_SET, 1);
    });
    let mut c = Client::connect(sim.addr());
    assert_eq!(
        c.request(flagged(C::FILTER_POSITION_SET).with_int32_data0(4))
            .status,
        7
    );
    assert_eq!(
        c.request(flagged(C::FILTER_POSITION_GET)).int32_data0,
        1,
        "not executed"
    );
    let r = c.request(
        flagged(C::STAGE_POSITION_SET)
            .with_int32_data0(1)
            .with_double_data(5.0),
    );
    assert_eq!(r.status, 1);
    assert!(c.fence().is_empty(), "no motion");
    assert_eq!(sim.counters().status_overrides, 2);
}

#[test]
fn fragmented_writes_reassemble() {
    let sim = Simulator::start(SimConfig::default().seed(42)).unwrap();
    sim.update_faults(|f| f.fragment_writes = Some(5));
    let mut c = Client::connect(sim.addr());
    echo_round(&mut c, 30);
    c.send(flagged(C::COMMON_SCOPE_SETTINGS_LOAD));
    let (_, data) = c.recv_frame();
    assert_eq!(data, include_bytes!("../../fixtures/ScopeSettings.txt"));
    assert_eq!(sim.counters().fragmented_messages, 31);
    assert_eq!(c.reader.stats().resyncs, 0);
}

#[test]
fn garbage_between_messages_is_skipped_by_resync() {
    let sim = sim();
    sim.update_faults(|f| f.garbage_between = Some(40));
    let mut c = Client::connect(sim.addr());
    echo_round(&mut c, 50);
    let k = sim.counters();
    assert_eq!(k.garbage_insertions, 50);
    let stats = c.reader.stats();
    assert_eq!(stats.messages, 50);
    assert_eq!(stats.bytes_skipped, k.garbage_bytes);
    assert!(stats.resyncs >= 1);
}

#[test]
fn close_after_n_messages() {
    let sim = sim();
    sim.update_faults(|f| f.close_after_messages = Some(3));
    let mut c = Client::connect(sim.addr());
    for i in 0..5 {
        c.send(flagged(ECHO).with_int32_data2(i));
    }
    for i in 0..3 {
        assert_eq!(c.recv().int32_data2, i);
    }
    assert!(matches!(c.try_recv(), Err(FrameError::Closed)));
    assert_eq!(sim.counters().closed_after_messages, 1);
    // One-shot: a reconnecting client is served normally.
    let mut c = Client::connect(sim.addr());
    echo_round(&mut c, 5);
}

#[test]
fn close_in_the_middle_of_a_reply() {
    let sim = sim();
    sim.update_faults(|f| f.close_mid_message = true);
    let mut c = Client::connect(sim.addr());
    c.send(flagged(C::SYSTEM_STATE_GET));
    match c.try_recv() {
        Err(FrameError::EofMidMessage {
            got: 64,
            expected: 128,
        }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.counters().closed_mid_message, 1);
    assert!(!sim.faults().close_mid_message);
}

#[test]
fn absurd_additional_length() {
    let sim = sim();
    sim.update_faults(|f| f.absurd_additional_len = Some(C::CAMERA_IMAGE_SIZE_GET));
    let mut c = Client::connect(sim.addr());
    c.send(flagged(C::CAMERA_IMAGE_SIZE_GET));
    let m = c.reader.read_message(&mut c.stream).unwrap();
    assert_eq!(m.additional_data_len, 0x8000_0000);
    let mut data = Vec::new();
    let mut r = FrameReader::new(1 << 20);
    assert!(matches!(
        r.read_additional(&mut c.stream, m.additional_data_len, &mut data),
        Err(FrameError::TooLarge { .. })
    ));
    assert_eq!(sim.counters().absurd_lengths, 1);
}

#[test]
fn trickled_large_settings_payload() {
    let text: Vec<u8> = (0..256 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    let sim = Simulator::start(SimConfig::default().settings_text(text.clone())).unwrap();
    sim.update_faults(|f| f.trickle_additional = Some((16 * 1024, Duration::from_millis(2))));
    let mut c = Client::connect(sim.addr());
    c.send(flagged(C::COMMON_SCOPE_SETTINGS_LOAD));
    let (m, data) = c.recv_frame();
    assert_eq!(m.additional_data_len as usize, text.len());
    assert_eq!(data, text);
    assert_eq!(sim.counters().trickled_payloads, 1);
}

#[test]
fn flood_sends_the_requested_count() {
    let sim = sim();
    let mut c = Client::connect(sim.addr());
    c.fence();
    sim.update_faults(|f| f.flood = Some((C::UI_SET_GAUGE_VALUE, 2000, 0)));
    for i in 1..=2000 {
        let m = c.recv();
        assert_eq!(
            (m.code, m.int32_data0, m.int32_data1),
            (C::UI_SET_GAUGE_VALUE, i, 2000)
        );
    }
    assert!(c.fence().is_empty());
    assert_eq!(sim.counters().flood_messages, 2000);
    assert_eq!(sim.faults().flood, None);
    // Paced.
    sim.update_faults(|f| f.flood = Some((C::STAGE_MOTION_STOPPED, 5, 500)));
    for i in 1..=5 {
        assert_eq!(c.recv().int32_data0, i);
    }
}

#[test]
fn stop_reading_backs_up_the_client() {
    let sim = sim();
    sim.update_faults(|f| f.stop_reading = Some(Duration::from_millis(800)));
    let mut c = Client::connect(sim.addr());
    c.send(flagged(ECHO).with_int32_data2(1));
    assert_eq!(c.recv().int32_data2, 1);
    // The simulator now does not read: a large message backs up.
    let payload = vec![7u8; 32 * 1024 * 1024];
    let m = flagged(ECHO)
        .with_int32_data2(2)
        .with_additional_data_len(payload.len() as u32);
    c.stream.write_all(&m.to_bytes()).unwrap();
    c.stream
        .set_write_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut sent = 0;
    let mut blocked = false;
    while sent < payload.len() {
        match c.stream.write(&payload[sent..]) {
            Ok(n) => sent += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                blocked = true;
                c.stream.set_write_timeout(None).unwrap();
            }
            Err(e) => panic!("{e}"),
        }
    }
    let (r, data) = c.recv_frame();
    assert_eq!(r.int32_data2, 2);
    assert_eq!(data.len(), payload.len());
    assert!(
        blocked,
        "the client's send blocked while the simulator did not read"
    );
    assert_eq!(sim.counters().stop_reading_pauses, 1);
}

#[test]
fn error_state() {
    let sim = Simulator::start(SimConfig::default().faults(Faults {
        error_state: true,
        ..Faults::default()
    }))
    .unwrap();
    let mut c = Client::connect(sim.addr());
    assert_eq!(
        c.request(flagged(C::SYSTEM_STATE_GET)).int32_data0,
        STATE_ERROR
    );
    assert_eq!(sim.counters().error_state_replies, 1);
    sim.update_faults(|f| f.error_state = false);
    assert_eq!(c.request(flagged(C::SYSTEM_STATE_GET)).int32_data0, 0);
}

#[test]
fn max_write_block_is_recorded() {
    let sim = sim();
    let mut c = Client::connect(sim.addr());
    echo_round(&mut c, 3);
    let k = sim.counters();
    assert!(k.max_write_block > Duration::ZERO);
    assert_eq!(k.faults_injected, 0);
}
