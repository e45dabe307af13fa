//! System state and scope settings against the simulator.

use super::util;

use std::time::Duration;

use flamingo_client::codec::CommandCode as C;
use flamingo_client::devices::{SystemState, Workflow, WorkflowBuilder};
use flamingo_client::{Axis, Error};
use util::*;

fn long_workflow(planes: u32) -> Workflow {
    let at = flamingo_client::devices::StagePosition {
        x_mm: 8.0,
        y_mm: 20.0,
        z_mm: 15.0,
        r_deg: 0.0,
    };
    WorkflowBuilder::z_stack(at, planes, 2.5).build().unwrap()
}

#[test]
fn state_idle_busy_error() {
    let sim = sim_with(base_config().plane_interval(Duration::from_millis(5)));
    let c = connect(&sim);
    let system = c.system();
    assert_eq!(system.state().unwrap(), SystemState::Idle);
    let mut run = c.workflows().start(&long_workflow(2000)).unwrap();
    assert_eq!(system.state().unwrap(), SystemState::Busy);
    run.stop().unwrap();
    run.wait(LONG).unwrap();
    system.wait_until_idle(LONG).unwrap();
    assert_eq!(system.state().unwrap(), SystemState::Idle);
    fault(&sim, |f| f.error_state = true);
    assert_eq!(system.state().unwrap(), SystemState::Error);
    assert_eq!(SystemState::from_wire(7), SystemState::Unknown(7));
    assert_eq!(SystemState::Unknown(7).to_string(), "unknown (7)");
}

#[test]
fn set_idle_and_wait_until_idle() {
    let sim = sim_with(base_config().plane_interval(Duration::from_millis(2)));
    let c = connect(&sim);
    let system = c.system();
    system.set_idle().unwrap();
    assert!(sim.received_codes().contains(&C::SYSTEM_STATE_IDLE));
    // Already idle: returns at once.
    system.wait_until_idle(LONG).unwrap();
    // Busy: returns when the workflow ends.
    let _run = c.workflows().start(&long_workflow(100)).unwrap();
    let t0 = std::time::Instant::now();
    system.wait_until_idle(LONG).unwrap();
    assert_eq!(sim.counters().workflows_completed, 1);
    assert!(t0.elapsed() < LONG);
}

#[test]
fn wait_until_idle_times_out_while_busy() {
    let sim = sim_with(base_config().plane_interval(Duration::from_millis(50)));
    let c = connect(&sim);
    let mut run = c.workflows().start(&long_workflow(1000)).unwrap();
    assert_timeout(c.system().wait_until_idle(Duration::from_millis(300)));
    run.stop().unwrap();
    run.wait(LONG).unwrap();
}

#[test]
fn system_timeout_and_disconnected() {
    let sim = sim();
    let c = connect(&sim);
    never_answer(&sim, C::SYSTEM_STATE_GET);
    let system = c.system().timeout(SHORT);
    assert_timeout(system.state());
    disconnect(&sim, &c);
    assert_disconnected(system.state());
    assert_disconnected(system.set_idle());
    assert_disconnected(system.wait_until_idle(SHORT));
}

#[test]
fn settings_load_and_parse() {
    let sim = sim();
    let c = connect(&sim);
    let s = c.settings().load().unwrap();
    assert_eq!(s.raw().as_bytes(), &sim.settings_text()[..]);
    assert_eq!(s.raw().len(), 2958);
    assert_eq!(s.soft_limits(Axis::Z), Some((11.0, 25.0)));
    assert_eq!(s.home(Axis::X), Some(8.032));
    assert_eq!(s.get("Type", "Microscope name"), Some("n7"));
    let names: Vec<&str> = s.sections().iter().map(|x| x.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "Filter wheel encoder counts",
            "Filter wheel position assignments",
            "Illumination settings",
            "Stage limits",
            "Camera overlap settings",
            "LED settings",
            "Type"
        ]
    );
    // The limits in the settings are the ones the instrument enforces.
    let (_, max) = s.soft_limits(Axis::Y).unwrap();
    assert_refused(
        c.stage().move_to(Axis::Y, max + 0.1),
        C::STAGE_POSITION_SET,
        2,
    );
    c.stage().move_to(Axis::Y, max).unwrap();
}

#[test]
fn settings_custom_text_and_errors() {
    let sim = sim_with(base_config().settings_text("<A>\r\n  k = v\r\n</A>\r\n"));
    let c = connect(&sim);
    let settings = c.settings();
    let s = settings.load().unwrap();
    assert_eq!(s.get("a", "K"), Some("v"));
    assert_eq!(s.raw(), "<A>\r\n  k = v\r\n</A>\r\n");
    status_override(&sim, C::COMMON_SCOPE_SETTINGS_LOAD, 2);
    assert_refused(settings.load(), C::COMMON_SCOPE_SETTINGS_LOAD, 2);
    status_override(&sim, C::COMMON_SCOPE_SETTINGS_LOAD, 1);
    assert_busy(settings.load(), C::COMMON_SCOPE_SETTINGS_LOAD);
    sim.set_faults(Default::default());
    never_answer(&sim, C::COMMON_SCOPE_SETTINGS_LOAD);
    assert_timeout(settings.clone().timeout(SHORT).load());
    disconnect(&sim, &c);
    assert_disconnected(settings.load());
    // A reply without text is a protocol error.
    let sim = sim_with(base_config().settings_text(Vec::new()));
    let c = connect(&sim);
    assert!(matches!(c.settings().load(), Err(Error::Protocol { .. })));
}
