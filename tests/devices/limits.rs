//! The safety layer against the simulator: soft limits read from the
//! instrument's settings, checked on the stage and workflow facades before
//! anything is sent, and workflow validation before every start.

use super::util;

use flamingo_client::devices::{SoftLimits, Workflow};
use flamingo_client::{Axis, Error};
use util::*;

fn zstack() -> Workflow {
    Workflow::load(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/ZStack.txt")).unwrap()
}

#[test]
fn limits_come_from_the_instruments_settings_with_the_field_of_view() {
    let sim = sim();
    let c = connect(&sim);
    let limits = c.settings().soft_limits().unwrap();
    assert_eq!(limits.get(Axis::Z), Some((11.0, 25.0)));
    assert_eq!(limits.get(Axis::X), Some((1.0, 14.999998)));
    let (w, h) = limits
        .field_of_view()
        .expect("the simulator reports its camera");
    let size = c.camera().image_size().unwrap();
    let mm = c.camera().pixel_fov_mm().unwrap();
    assert!((w - mm * f64::from(size.width)).abs() < 1e-12);
    assert!((h - mm * f64::from(size.height)).abs() < 1e-12);
}

#[test]
fn the_stage_checks_moves_when_asked() {
    let sim = sim();
    let c = connect(&sim);
    let limits = c.settings().soft_limits().unwrap();
    let stage = c.stage().soft_limits(limits);
    assert_eq!(stage.limits(), &limits);
    assert_invalid_and_nothing_sent(&sim, &c, || stage.move_to(Axis::Z, 5.0));
    assert_invalid_and_nothing_sent(&sim, &c, || stage.move_and_wait(Axis::Y, 200.0));
    assert_invalid_and_nothing_sent(&sim, &c, || {
        stage.move_all_and_wait(&[(Axis::X, 5.0), (Axis::Z, 30.0)])
    });
    match stage.move_to(Axis::Z, 5.0) {
        Err(Error::InvalidArgument { what }) => assert_eq!(
            what,
            "z target 5 mm is outside the stage's soft limits for z, 11 to 25 mm (from the microscope's settings)"
        ),
        other => panic!("{other:?}"),
    }
    // Within the limits: moves as before.
    let stop = stage.move_and_wait(Axis::Z, 20.0).unwrap();
    assert!((stop.position - 20.0).abs() < 1e-9);
    // Without the opt-in, the instrument judges.
    c.stage().move_to(Axis::Z, 12.0).unwrap();
}

#[test]
fn workflows_are_validated_and_checked_before_they_start() {
    // A full-size camera: half a field of view is a quarter millimetre or more.
    let sim = sim_with(base_config().image_size(2048, 2048));
    let c = connect(&sim);
    // Validation always: a file with mistakes is never sent.
    let garbage = Workflow::from_text("garbage\n").unwrap();
    assert_invalid_and_nothing_sent(&sim, &c, || c.workflows().start(&garbage));
    assert_invalid_and_nothing_sent(&sim, &c, || c.workflows().submit_start(&garbage));
    // The soft limits when asked: start, end, every tile.
    let limits = c.settings().soft_limits().unwrap();
    let checked = c.workflows().soft_limits(limits);
    for (section, key, value, says) in [
        (
            "Start Position",
            "Z (mm)",
            "5",
            "z 5 mm at the workflow's start position",
        ),
        (
            "End Position",
            "Y (mm)",
            "200",
            "y 200 mm at the workflow's end position",
        ),
        (
            "Start Position",
            "X (mm)",
            "1.05",
            "at the workflow's tile column 1 of ",
        ),
    ] {
        let mut wf = zstack();
        wf.set(section, key, value).unwrap();
        // Tiles overlapping by half: the outer ones lie at least a quarter
        // field beyond the start and end.
        wf.set("Stack Settings", "Stack option settings 1", "50")
            .unwrap();
        match checked.check(&wf) {
            Err(Error::InvalidArgument { what }) => assert!(what.contains(says), "{what}"),
            other => panic!("{value}: {other:?}"),
        }
        assert_invalid_and_nothing_sent(&sim, &c, || checked.start(&wf));
    }
    assert!(sim.workflows().is_empty());
    // A good file passes both and runs.
    let wf = zstack();
    assert_eq!(c.workflows().check(&wf).unwrap(), limits);
    let mut wf = wf;
    wf.set("Stack Settings", "Number of planes", "3").unwrap();
    let s = checked.start(&wf).unwrap().wait(LONG).unwrap();
    assert_eq!(s.images_acquired, 3);
    // Limits set by hand work the same way.
    let tight = SoftLimits::none().axis(Axis::Z, 0.0, 1.0).unwrap();
    assert_invalid_and_nothing_sent(&sim, &c, || c.workflows().soft_limits(tight).start(&wf));
}
