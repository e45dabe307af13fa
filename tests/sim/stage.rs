//! Stage behaviour of the simulator.
#![cfg(feature = "sim")]

use super::util;

use flamingo_client::codec::{CommandCode as C, Message};
use flamingo_client::sim::{SimConfig, Simulator, AXIS_R, AXIS_X, AXIS_Y, AXIS_Z};
use util::*;

const HOME: [f64; 4] = [8.032, 23.898, 19.753, -217.965];

fn get(c: &mut Client, axis: i32) -> Message {
    let r = c.request(flagged(C::STAGE_POSITION_GET).with_int32_data0(axis));
    assert_eq!(r.int32_data0, axis);
    r
}

fn move_msg(axis: i32, to: f64) -> Message {
    flagged(C::STAGE_POSITION_SET)
        .with_int32_data0(axis)
        .with_double_data(to)
}

#[test]
fn position_get_per_axis() {
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let mut c = Client::connect(sim.addr());
    for (i, axis) in [AXIS_X, AXIS_Y, AXIS_Z, AXIS_R].into_iter().enumerate() {
        let r = get(&mut c, axis);
        assert_eq!(r.status, 0);
        assert_eq!(r.double_data, HOME[i]);
    }
    assert_eq!(get(&mut c, 0).status, 2);
    assert_eq!(get(&mut c, 5).status, 2);
    assert_eq!(sim.stage_positions(), HOME);
}

#[test]
fn move_acks_then_motion_stopped() {
    let sim = Simulator::start(SimConfig::default().stage_velocity(200.0, 3600.0)).unwrap();
    let mut c = Client::connect(sim.addr());
    for target in [7.635, 9.5] {
        let ack = c.request(move_msg(AXIS_X, target));
        assert_eq!((ack.code, ack.status), (C::STAGE_POSITION_SET, 0));
        let stopped = c.recv();
        assert_eq!(stopped.code, C::STAGE_MOTION_STOPPED);
        assert_eq!(stopped.int32_data0, AXIS_X);
        assert_eq!(stopped.status, 1);
        assert_eq!(stopped.double_data, target);
        assert_eq!(get(&mut c, AXIS_X).double_data, target);
    }
    // The slider variant behaves the same.
    let mut m = move_msg(AXIS_R, 10.0);
    m.code = C::STAGE_POSITION_SET_SLIDER;
    let ack = c.request(m);
    assert_eq!(ack.status, 0);
    let stopped = c.recv();
    assert_eq!(
        (stopped.code, stopped.int32_data0, stopped.double_data),
        (C::STAGE_MOTION_STOPPED, AXIS_R, 10.0)
    );
    assert_eq!(sim.counters().moves, 3);
}

#[test]
fn zero_length_move_still_stops() {
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let mut c = Client::connect(sim.addr());
    let ack = c.request(move_msg(AXIS_Z, HOME[2]));
    assert_eq!(ack.status, 0);
    let stopped = c.recv();
    assert_eq!(
        (stopped.code, stopped.int32_data0, stopped.double_data),
        (C::STAGE_MOTION_STOPPED, AXIS_Z, HOME[2])
    );
}

#[test]
fn out_of_limit_and_nan_moves_are_refused() {
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let mut c = Client::connect(sim.addr());
    for (axis, to) in [
        (AXIS_X, 0.5),
        (AXIS_X, 15.5),
        (AXIS_Z, 10.0),
        (AXIS_R, 721.0),
        (AXIS_Y, f64::NAN),
        (7, 10.0),
    ] {
        let r = c.request(move_msg(axis, to));
        assert_eq!(r.status, 2, "axis {axis} to {to}");
    }
    assert!(c.fence().is_empty(), "no motion stopped");
    assert_eq!(sim.stage_positions(), HOME);
    assert!(!sim.stage_moving());
    assert_eq!(sim.counters().moves, 0);
}

#[test]
fn halt_stops_motion_early() {
    let sim = Simulator::start(SimConfig::default().stage_velocity(0.5, 1.0)).unwrap();
    let mut c = Client::connect(sim.addr());
    assert_eq!(c.request(move_msg(AXIS_Y, 5.0)).status, 0);
    // A position read during the move is interpolated.
    let mid = get(&mut c, AXIS_Y).double_data;
    assert!(mid <= HOME[1] && mid > 5.0, "{mid}");
    let ack = c.request(flagged(C::STAGE_HALT));
    assert_eq!(ack.status, 0);
    let stopped = c.recv();
    assert_eq!(
        (stopped.code, stopped.int32_data0, stopped.status),
        (C::STAGE_MOTION_STOPPED, AXIS_Y, 1)
    );
    assert!(stopped.double_data <= mid && stopped.double_data > 5.0);
    assert_eq!(get(&mut c, AXIS_Y).double_data, stopped.double_data);
    assert!(!sim.stage_moving());
    // Halt with nothing moving: ack only.
    assert_eq!(c.request(flagged(C::STAGE_HALT)).status, 0);
    assert!(c.fence().is_empty());
}

#[test]
fn home_moves_every_axis() {
    let sim = Simulator::start(
        SimConfig::default()
            .start_position([2.0, 6.0, 12.0, 0.0])
            .stage_velocity(200.0, 3600.0),
    )
    .unwrap();
    let mut c = Client::connect(sim.addr());
    assert_eq!(c.request(flagged(C::STAGE_HOME)).status, 0);
    let mut seen = [false; 4];
    for _ in 0..4 {
        let m = c.recv();
        assert_eq!(m.code, C::STAGE_MOTION_STOPPED);
        let i = (m.int32_data0 - 1) as usize;
        assert_eq!(m.double_data, HOME[i]);
        seen[i] = true;
    }
    assert_eq!(seen, [true; 4]);
    assert_eq!(sim.stage_positions(), HOME);
}

#[test]
fn velocity_set() {
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let mut c = Client::connect(sim.addr());
    let v = |axis: i32, v: f64| {
        flagged(C::STAGE_VELOCITY_SET)
            .with_int32_data0(axis)
            .with_double_data(v)
    };
    assert_eq!(c.request(v(AXIS_X, 50.0)).status, 0);
    assert_eq!(c.request(v(AXIS_X, 0.0)).status, 2);
    assert_eq!(c.request(v(AXIS_X, f64::INFINITY)).status, 2);
    assert_eq!(c.request(v(9, 1.0)).status, 2);
}

#[test]
fn motion_stopped_goes_to_every_client() {
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let mut a = Client::connect(sim.addr());
    let mut b = Client::connect(sim.addr());
    b.fence();
    a.request(move_msg(AXIS_X, 3.0));
    assert_eq!(a.recv().code, C::STAGE_MOTION_STOPPED);
    let m = b.recv();
    assert_eq!((m.code, m.double_data), (C::STAGE_MOTION_STOPPED, 3.0));
}

#[test]
fn moves_while_a_workflow_runs_are_busy() {
    let sim =
        Simulator::start(SimConfig::default().plane_interval(std::time::Duration::from_millis(50)))
            .unwrap();
    let mut c = Client::connect(sim.addr());
    c.send_with(
        flagged(C::CAMERA_WORK_FLOW_START),
        b"Number of planes = 1000\n",
    );
    assert_eq!(c.recv().status, 0);
    c.send(move_msg(AXIS_X, 3.0));
    let r = c.recv_until(C::STAGE_POSITION_SET);
    assert_eq!(r.last().unwrap().status, 1);
    c.send(flagged(C::STAGE_HOME));
    assert_eq!(c.recv_until(C::STAGE_HOME).last().unwrap().status, 1);
    c.send(flagged(C::CAMERA_WORK_FLOW_STOP));
    c.recv_until(C::SYSTEM_STATE_IDLE);
}
