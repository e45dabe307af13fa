//! The stage facade against the simulator.

use super::util;

use std::time::Duration;

use flamingo_client::codec::CommandCode as C;
use flamingo_client::devices::StagePosition;
use flamingo_client::{Axis, Error, EventKind};
use util::*;

const HOME: [f64; 4] = [8.032, 23.898, 19.753, -217.965];

#[test]
fn positions_of_one_and_all_axes() {
    let sim = sim();
    let c = connect(&sim);
    let stage = c.stage();
    assert_eq!(stage.position(Axis::Y).unwrap(), HOME[1]);
    let p = stage.positions().unwrap();
    assert_eq!(
        p,
        StagePosition {
            x_mm: HOME[0],
            y_mm: HOME[1],
            z_mm: HOME[2],
            r_deg: HOME[3]
        }
    );
    // The four queries carry the axis in int32Data0.
    let axes: Vec<i32> = sim
        .received()
        .iter()
        .filter(|r| r.message.code == C::STAGE_POSITION_GET)
        .map(|r| r.message.int32_data0)
        .collect();
    assert_eq!(axes, vec![2, 1, 2, 3, 4]);
}

#[test]
fn move_and_wait_returns_the_stop_of_that_move() {
    let sim = sim();
    let c = connect(&sim);
    let stage = c.stage();
    let stop = stage.move_and_wait(Axis::X, 10.0).unwrap();
    assert_eq!((stop.axis, stop.position), (Axis::X, 10.0));
    assert!(stop.is_normal());
    assert_eq!(stage.position(Axis::X).unwrap(), 10.0);
    assert_eq!(sim.stage_positions()[0], 10.0);
    let m = sim
        .received()
        .into_iter()
        .find(|r| r.message.code == C::STAGE_POSITION_SET)
        .unwrap()
        .message;
    assert_eq!((m.int32_data0, m.double_data), (1, 10.0));
}

#[test]
fn move_to_returns_at_the_acknowledgement() {
    let sim = sim_with(base_config().stage_velocity(1.0, 10.0));
    let c = connect(&sim);
    let events = c.subscribe_to(&[C::STAGE_MOTION_STOPPED]);
    c.stage().move_to(Axis::Z, 20.0).unwrap(); // 0.25 mm at 1 mm/s
    let ev = events
        .wait_for(
            |e| matches!(e.kind, EventKind::MotionStopped { .. }),
            0,
            LONG,
        )
        .unwrap();
    assert!(
        matches!(ev.kind, EventKind::MotionStopped { axis: Axis::Z, position, .. } if position == 20.0)
    );
}

#[test]
fn move_several_axes_and_wait_for_all() {
    let sim = sim();
    let c = connect(&sim);
    let stage = c.stage();
    let stops = stage
        .move_all_and_wait(&[(Axis::Y, 10.0), (Axis::X, 5.0), (Axis::R, 90.0)])
        .unwrap();
    let got: Vec<(Axis, f64)> = stops.iter().map(|s| (s.axis, s.position)).collect();
    assert_eq!(got, vec![(Axis::Y, 10.0), (Axis::X, 5.0), (Axis::R, 90.0)]);
    let target = StagePosition {
        x_mm: 6.0,
        y_mm: 11.0,
        z_mm: 12.0,
        r_deg: 0.0,
    };
    stage.move_all_and_wait(&target.targets()).unwrap();
    assert_eq!(stage.positions().unwrap(), target);
    assert!(stage.move_all_and_wait(&[]).unwrap().is_empty());
}

#[test]
fn zero_length_move_reports_a_stop_and_never_satisfies_the_next_wait() {
    let sim = sim();
    let c = connect(&sim);
    let stage = c.stage();
    let observer = c.subscribe_to(&[C::STAGE_MOTION_STOPPED]);
    // Decision: a zero-length move is sent and waits for its own stop.
    let stop = stage.move_and_wait(Axis::X, HOME[0]).unwrap();
    assert_eq!(stop.position, HOME[0]);
    for i in 0..10 {
        let here = stage.position(Axis::X).unwrap();
        // A zero-length move nobody waits for; its stop is received (and in
        // the client's recent-event history) before the next move is sent.
        stage.move_to(Axis::X, here).unwrap();
        let stale = observer
            .wait_for(
                |e| matches!(e.kind, EventKind::MotionStopped { .. }),
                0,
                LONG,
            )
            .unwrap();
        let target = 5.0 + f64::from(i) * 0.25;
        let stop = stage.move_and_wait(Axis::X, target).unwrap();
        assert_eq!(stop.position, target, "round {i} took a stale stop");
        assert!(stop.seq > stale.seq);
        observer.try_iter().for_each(drop);
    }
}

#[test]
fn stale_stop_between_arming_and_acknowledgement_is_ignored() {
    let sim = sim();
    let c = connect(&sim);
    let stage = c.stage();
    let observer = c.subscribe_to(&[C::STAGE_MOTION_STOPPED]);
    stage.position(Axis::X).unwrap(); // the simulator knows the connection
                                      // The move's acknowledgement is held back 2 s, and meanwhile a stale stop
                                      // of the same axis arrives: after the wait was armed, before the ack.
    fault(&sim, |f| {
        f.answer_late = Some((C::STAGE_POSITION_SET, Duration::from_secs(2)))
    });
    let mut op = stage.submit_move_and_wait(Axis::X, 4.0).unwrap();
    let sent_to = sim.broadcast(
        flamingo_client::codec::Message::new(C::STAGE_MOTION_STOPPED)
            .with_status(1)
            .with_int32_data0(1)
            .with_double_data(99.0),
    );
    assert_eq!(sent_to, 1);
    let stale = observer
        .wait_for(
            |e| matches!(e.kind, EventKind::MotionStopped { .. }),
            0,
            LONG,
        )
        .unwrap();
    assert!(
        matches!(stale.kind, EventKind::MotionStopped { position, .. } if position == 99.0),
        "{stale:?}"
    );
    assert!(op.try_get().is_none(), "a stale stop must not end the wait");
    let stop = op.wait().unwrap();
    assert_eq!((stop.axis, stop.position), (Axis::X, 4.0));
    assert!(stop.seq > stale.seq);
}

#[test]
fn halt_ends_a_move_early() {
    let sim = sim_with(base_config().stage_velocity(1.0, 10.0));
    let c = connect(&sim);
    let stage = c.stage();
    let mut op = stage.submit_move_and_wait(Axis::Y, 6.0).unwrap(); // 17.9 s at 1 mm/s
    stage.halt().unwrap();
    let stop = op.wait_timeout(LONG).unwrap().unwrap();
    assert_eq!(stop.axis, Axis::Y);
    assert!(
        stop.position > 6.0 && stop.position < HOME[1],
        "{}",
        stop.position
    );
}

#[test]
fn home_and_wait_and_velocity() {
    let sim = sim_with(base_config().start_position([2.0, 6.0, 12.0, 0.0]));
    let c = connect(&sim);
    let stage = c.stage();
    stage.set_velocity(Axis::X, 30.0).unwrap();
    stage.set_velocity(Axis::R, 720.0).unwrap();
    let stops = stage.home_and_wait().unwrap();
    let got: Vec<(Axis, f64)> = stops.iter().map(|s| (s.axis, s.position)).collect();
    assert_eq!(
        got,
        vec![
            (Axis::X, HOME[0]),
            (Axis::Y, HOME[1]),
            (Axis::Z, HOME[2]),
            (Axis::R, HOME[3])
        ]
    );
    stage.home().unwrap();
    let v = sim
        .received()
        .into_iter()
        .find(|r| r.message.code == C::STAGE_VELOCITY_SET)
        .unwrap()
        .message;
    assert_eq!((v.int32_data0, v.double_data), (1, 30.0));
}

#[test]
fn refused_outside_the_soft_limits() {
    let sim = sim();
    let c = connect(&sim);
    let stage = c.stage();
    assert_refused(stage.move_to(Axis::Z, 30.0), C::STAGE_POSITION_SET, 2);
    assert_refused(stage.move_and_wait(Axis::X, 0.5), C::STAGE_POSITION_SET, 2);
    assert_refused(
        stage.move_all_and_wait(&[(Axis::X, 9.0), (Axis::Y, 99.0)]),
        C::STAGE_POSITION_SET,
        2,
    );
    let e = stage.move_to(Axis::Z, 30.0).unwrap_err();
    assert_eq!(
        e.to_string(),
        "device refused STAGE_POSITION_SET (status 2)"
    );
    assert_eq!(sim.stage_positions()[2], HOME[2]);
}

#[test]
fn busy_status_is_a_busy_error() {
    let sim = sim();
    let c = connect(&sim);
    status_override(&sim, C::STAGE_POSITION_SET, 1);
    status_override(&sim, C::STAGE_HOME, 1);
    let stage = c.stage();
    assert_busy(stage.move_to(Axis::X, 9.0), C::STAGE_POSITION_SET);
    assert_busy(stage.move_and_wait(Axis::X, 9.0), C::STAGE_POSITION_SET);
    assert_busy(stage.home_and_wait(), C::STAGE_HOME);
    assert_eq!(sim.stage_positions()[0], HOME[0]);
}

#[test]
fn timeouts() {
    let sim = sim();
    let c = connect(&sim);
    never_answer(&sim, C::STAGE_POSITION_GET);
    let stage = c.stage().timeout(SHORT).motion_timeout(SHORT);
    assert_timeout(stage.position(Axis::X));
    assert_timeout(stage.positions());
    // Without the acknowledgement a stop event cannot be told from a stale one.
    never_answer(&sim, C::STAGE_POSITION_SET);
    assert_timeout(stage.move_and_wait(Axis::X, 9.0));
    // An acknowledged move whose stop never comes (the axis is too slow).
    let sim = sim_with(base_config().stage_velocity(0.001, 0.001));
    let c = connect(&sim);
    let stage = c.stage().motion_timeout(SHORT);
    let e = stage.move_and_wait(Axis::X, 9.0).unwrap_err();
    assert!(e.is_timeout());
    assert!(e.to_string().contains("moving x to 9 mm"), "{e}");
}

#[test]
fn disconnected() {
    let sim = sim_with(base_config().stage_velocity(0.5, 10.0));
    let c = connect(&sim);
    let stage = c.stage();
    // A wait in flight ends when the link drops.
    let mut op = stage.submit_move_and_wait(Axis::X, 12.0).unwrap();
    assert!(op.wait_timeout(Duration::from_millis(50)).is_none());
    disconnect(&sim, &c);
    assert_disconnected(op.wait());
    assert_disconnected(stage.position(Axis::X));
    assert_disconnected(stage.move_and_wait(Axis::X, 9.0));
    assert_disconnected(stage.submit_halt().and_then(|op| op.wait()));
}

#[test]
fn invalid_arguments_send_nothing() {
    let sim = sim();
    let c = connect(&sim);
    let stage = c.stage();
    assert_invalid_and_nothing_sent(&sim, &c, || stage.move_to(Axis::X, f64::NAN));
    assert_invalid_and_nothing_sent(&sim, &c, || stage.move_and_wait(Axis::R, f64::INFINITY));
    assert_invalid_and_nothing_sent(&sim, &c, || {
        stage.move_all_and_wait(&[(Axis::X, 5.0), (Axis::Y, f64::NEG_INFINITY)])
    });
    assert_invalid_and_nothing_sent(&sim, &c, || {
        stage.move_all_and_wait(&[(Axis::X, 5.0), (Axis::X, 6.0)])
    });
    assert_invalid_and_nothing_sent(&sim, &c, || stage.set_velocity(Axis::Z, 0.0));
    assert_invalid_and_nothing_sent(&sim, &c, || stage.set_velocity(Axis::Z, f64::NAN));
    let e = stage.move_to(Axis::X, f64::NAN).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }));
    assert!(e.to_string().contains("finite"), "{e}");
}

#[test]
fn submit_forms_poll_without_blocking() {
    let sim = sim();
    let c = connect(&sim);
    let stage = c.stage();
    let mut pos = stage.submit_position(Axis::Z).unwrap();
    let mut all = stage.submit_positions().unwrap();
    let mut mv = stage.submit_move_and_wait(Axis::Y, 20.0).unwrap();
    let (mut a, mut b, mut m) = (None, None, None);
    let deadline = std::time::Instant::now() + LONG;
    while a.is_none() || b.is_none() || m.is_none() {
        assert!(std::time::Instant::now() < deadline);
        a = a.or_else(|| pos.try_get());
        b = b.or_else(|| all.try_get());
        m = m.or_else(|| mv.try_get());
        std::thread::yield_now();
    }
    assert_eq!(a.unwrap().unwrap(), HOME[2]);
    assert_eq!(b.unwrap().unwrap().z_mm, HOME[2]);
    assert_eq!(m.unwrap().unwrap().position, 20.0);
    assert!(pos.try_get().is_none(), "the outcome is given once");
    assert!(pos.is_finished());
}
