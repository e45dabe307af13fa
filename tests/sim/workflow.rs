//! Workflow playback of the simulator.
#![cfg(feature = "sim")]

use super::util;

use std::time::Duration;

use flamingo_client::codec::{CommandCode as C, Message};
use flamingo_client::sim::{SimConfig, Simulator, STATE_BUSY, STATE_IDLE};
use util::*;

const ZSTACK: &[u8] = include_bytes!("../../fixtures/ZStack.txt");

fn fast() -> SimConfig {
    SimConfig::default().plane_interval(Duration::from_micros(200))
}

#[test]
fn zstack_plays_in_order() {
    let sim = Simulator::start(fast()).unwrap();
    let mut c = Client::connect(sim.addr());
    c.send_with(flagged(C::CAMERA_WORK_FLOW_START), ZSTACK);
    let ack = c.recv();
    assert_eq!((ack.code, ack.status), (C::CAMERA_WORK_FLOW_START, 0));
    // Busy from the ack on.
    c.send(flagged(C::SYSTEM_STATE_GET));
    let mut msgs = c.recv_until(C::SYSTEM_STATE_IDLE);
    let state = msgs
        .iter()
        .position(|m| m.code == C::SYSTEM_STATE_GET)
        .unwrap();
    assert_eq!(msgs.remove(state).int32_data0, STATE_BUSY);

    assert_eq!(msgs[0].code, C::UI_SET_GAUGE_SIZE);
    assert_eq!(msgs[0].int32_data0, 476);
    let lasers: Vec<(i32, String)> = msgs
        .iter()
        .filter(|m| m.code == C::LASER_LEVEL_GET)
        .map(|m| (m.int32_data0, m.text().value.into_owned()))
        .collect();
    assert_eq!(lasers, [(3, "5.88".to_string()), (4, "8.01".to_string())]);
    let gauge: Vec<(i32, i32)> = msgs
        .iter()
        .filter(|m| m.code == C::UI_SET_GAUGE_VALUE)
        .map(|m| (m.int32_data0, m.int32_data1))
        .collect();
    assert_eq!(gauge, (1..=476).map(|i| (i, 476)).collect::<Vec<_>>());
    let n = msgs.len();
    let (stack, saved, idle) = (&msgs[n - 3], &msgs[n - 2], &msgs[n - 1]);
    assert_eq!(stack.code, C::CAMERA_STACK_COMPLETE);
    assert_eq!(
        (stack.int32_data0, stack.int32_data1, stack.int32_data2),
        (476, 476, 0)
    );
    assert!(stack.double_data > 0.0);
    assert_eq!(
        (saved.code, saved.int32_data0),
        (C::UI_IMAGES_SAVED_TO_STORAGE, 476)
    );
    assert_eq!((idle.code, idle.status), (C::SYSTEM_STATE_IDLE, 1));
    assert_eq!(n, 1 + 2 + 476 + 3);

    assert_eq!(sim.workflows(), vec![ZSTACK.to_vec()]);
    assert_eq!(
        c.request(flagged(C::SYSTEM_STATE_GET)).int32_data0,
        STATE_IDLE
    );
    let k = sim.counters();
    assert_eq!(
        (
            k.workflows_started,
            k.workflows_completed,
            k.workflows_stopped
        ),
        (1, 1, 0)
    );
}

#[test]
fn stop_ends_early_and_is_answered_without_flag() {
    let sim =
        Simulator::start(SimConfig::default().plane_interval(Duration::from_millis(20))).unwrap();
    let mut c = Client::connect(sim.addr());
    c.send_with(flagged(C::CAMERA_WORK_FLOW_START), ZSTACK);
    assert_eq!(c.recv().status, 0);
    c.recv_until(C::UI_SET_GAUGE_VALUE);
    c.send(Message::new(C::CAMERA_WORK_FLOW_STOP));
    let msgs = c.recv_until(C::SYSTEM_STATE_IDLE);
    let stop = msgs
        .iter()
        .position(|m| m.code == C::CAMERA_WORK_FLOW_STOP)
        .unwrap();
    let stack = msgs
        .iter()
        .position(|m| m.code == C::CAMERA_STACK_COMPLETE)
        .unwrap();
    assert!(stop < stack, "the stop ack comes before the stack-complete");
    let last_gauge = msgs.iter().rev().find(|m| m.code == C::UI_SET_GAUGE_VALUE);
    let s = &msgs[stack];
    assert!(
        s.int32_data0 >= 1 && s.int32_data0 < 476,
        "{}",
        s.int32_data0
    );
    if let Some(g) = last_gauge {
        assert_eq!(g.int32_data0, s.int32_data0);
    }
    assert_eq!(s.int32_data1, 476);
    let k = sim.counters();
    assert_eq!((k.workflows_completed, k.workflows_stopped), (0, 1));
    assert_eq!(sim.system_state(), STATE_IDLE);
}

#[test]
fn second_start_is_busy_and_empty_is_refused() {
    let sim =
        Simulator::start(SimConfig::default().plane_interval(Duration::from_millis(50))).unwrap();
    let mut c = Client::connect(sim.addr());
    assert_eq!(
        c.request(flagged(C::CAMERA_WORK_FLOW_START)).status,
        2,
        "empty workflow"
    );
    c.send_with(flagged(C::CAMERA_WORK_FLOW_START), ZSTACK);
    assert_eq!(c.recv().status, 0);
    c.send_with(
        flagged(C::CAMERA_WORK_FLOW_START),
        b"Number of planes = 3\n",
    );
    assert_eq!(
        c.recv_until(C::CAMERA_WORK_FLOW_START)
            .last()
            .unwrap()
            .status,
        1
    );
    c.send(flagged(C::CAMERA_WORK_FLOW_STOP));
    c.recv_until(C::SYSTEM_STATE_IDLE);
    assert_eq!(sim.workflows().len(), 3);
    assert_eq!(sim.counters().workflows_started, 1);
}

#[test]
fn unacked_start_and_plane_cap() {
    let sim = Simulator::start(fast().ack_workflow_start(false).max_planes(Some(5))).unwrap();
    let mut c = Client::connect(sim.addr());
    c.send_with(flagged(C::CAMERA_WORK_FLOW_START), ZSTACK);
    let msgs = c.recv_until(C::SYSTEM_STATE_IDLE);
    assert_eq!(msgs[0].code, C::UI_SET_GAUGE_SIZE, "no ack");
    assert_eq!(msgs[0].int32_data0, 5);
    let stack = msgs
        .iter()
        .find(|m| m.code == C::CAMERA_STACK_COMPLETE)
        .unwrap();
    assert_eq!((stack.int32_data0, stack.int32_data1), (5, 5));
}

#[test]
fn workflow_without_planes_line_plays_one_plane() {
    let sim = Simulator::start(fast()).unwrap();
    let mut c = Client::connect(sim.addr());
    c.send_with(
        flagged(C::CAMERA_WORK_FLOW_START),
        b"<Workflow Settings>\r\n</Workflow Settings>\r\n",
    );
    let msgs = c.recv_until(C::SYSTEM_STATE_IDLE);
    let stack = msgs
        .iter()
        .find(|m| m.code == C::CAMERA_STACK_COMPLETE)
        .unwrap();
    assert_eq!((stack.int32_data0, stack.int32_data1), (1, 1));
    // With no enabled laser in the file, laser 1 reports its level.
    let laser = msgs.iter().find(|m| m.code == C::LASER_LEVEL_GET).unwrap();
    assert_eq!(
        (laser.int32_data0, laser.text().value.as_ref()),
        (1, "0.00")
    );
}

#[test]
fn unreadable_workflow_files_are_refused() {
    let sim = Simulator::start(fast()).unwrap();
    let mut c = Client::connect(sim.addr());
    for file in [
        &b"garbage\r\n"[..],
        b"<Workflow Settings>\r\n",
        b"Number of planes = many\r\n",
    ] {
        c.send_with(flagged(C::CAMERA_WORK_FLOW_START), file);
        let ack = c.recv();
        assert_eq!((ack.code, ack.status), (C::CAMERA_WORK_FLOW_START, 2));
    }
    c.send(flagged(C::SYSTEM_STATE_GET));
    assert_eq!(c.recv().int32_data0, STATE_IDLE);
    assert_eq!(sim.counters().workflows_started, 0);
}
