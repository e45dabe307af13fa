//! Workflows against the simulator: start, progress, summary, stop, stale
//! idle, and every error.

use super::util;

use std::time::Duration;

use flamingo_client::codec::{CommandCode as C, Message};
use flamingo_client::devices::{StagePosition, Workflow, WorkflowBuilder, WorkflowUpdate};
use flamingo_client::{Axis, Client, ClientConfig, Error};
use util::*;

const AT: StagePosition = StagePosition {
    x_mm: 8.0,
    y_mm: 20.0,
    z_mm: 15.0,
    r_deg: 0.0,
};

fn z_stack(planes: u32) -> Workflow {
    WorkflowBuilder::z_stack(AT, planes, 2.5)
        .laser(2, 10.67)
        .laser(4, 8.01)
        .build()
        .unwrap()
}

fn updates_until_finished(run: &mut flamingo_client::devices::WorkflowRun) -> Vec<WorkflowUpdate> {
    let mut all = Vec::new();
    loop {
        let u = run
            .next_timeout(LONG)
            .expect("an update before the failure bound")
            .expect("no error");
        let last = matches!(u, WorkflowUpdate::Finished(_));
        all.push(u);
        if last {
            return all;
        }
    }
}

#[test]
fn z_stack_runs_to_completion_with_progress() {
    let sim = sim();
    let c = connect(&sim);
    let wf = z_stack(20);
    let mut run = c.workflows().start(&wf).unwrap();
    let updates = updates_until_finished(&mut run);
    // The file went out byte for byte as additional data.
    assert_eq!(sim.workflows(), vec![wf.as_bytes().to_vec()]);
    let start = sim
        .received()
        .into_iter()
        .find(|r| r.message.code == C::CAMERA_WORK_FLOW_START)
        .unwrap();
    assert_eq!(
        start.message.additional_data_len as usize,
        wf.as_bytes().len()
    );
    assert!(start
        .message
        .flags
        .contains(flamingo_client::codec::Flags::TRIGGER_CALL_BACK));

    assert_eq!(updates[0], WorkflowUpdate::Acknowledged);
    assert_eq!(updates[1], WorkflowUpdate::Running);
    assert_eq!(updates[2], WorkflowUpdate::GaugeSize { total: 20 });
    let lasers: Vec<_> = updates
        .iter()
        .filter_map(|u| match u {
            WorkflowUpdate::LaserLevel {
                laser,
                level_percent,
            } => Some((*laser, *level_percent)),
            _ => None,
        })
        .collect();
    assert_eq!(lasers, vec![(2, Some(10.67)), (4, Some(8.01))]);
    let progress: Vec<i32> = updates
        .iter()
        .filter_map(|u| match u {
            WorkflowUpdate::Progress { current, total: 20 } => Some(*current),
            _ => None,
        })
        .collect();
    assert_eq!(progress, (1..=20).collect::<Vec<_>>());
    let WorkflowUpdate::Finished(summary) = updates.last().unwrap() else {
        unreachable!()
    };
    assert_eq!(summary.images_acquired, 20);
    assert_eq!(summary.images_expected, 20);
    assert_eq!(summary.errors, 0);
    assert_eq!(summary.stacks.len(), 1);
    assert_eq!(summary.images_saved, Some(20));
    assert!(summary.acknowledged && !summary.stopped && summary.is_complete());
    // After the end: the same summary, at once; no more updates.
    assert_eq!(&run.wait(Duration::ZERO).unwrap(), summary);
    assert!(run.try_next().is_none());
    assert!(run.is_finished());
}

#[test]
fn wait_returns_the_summary_and_counts_match_the_planes() {
    let sim = sim();
    let c = connect(&sim);
    for planes in [1, 7, 476] {
        let mut run = c.workflows().start(&z_stack(planes)).unwrap();
        let s = run.wait(LONG).unwrap();
        assert_eq!(
            (s.images_acquired, s.images_expected),
            (planes.into(), planes.into())
        );
        assert!(s.duration > Duration::ZERO);
    }
    // A vendor file, edited.
    let mut wf = Workflow::load(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/Snapshot.txt"
    ))
    .unwrap();
    wf.set("Stack Settings", "Number of planes", "3").unwrap();
    let s = c.workflows().start(&wf).unwrap().wait(LONG).unwrap();
    assert_eq!(s.images_acquired, 3);
    assert_eq!(sim.counters().workflows_completed, 4);
}

#[test]
fn works_when_the_start_is_not_acknowledged() {
    let sim = sim_with(base_config().ack_workflow_start(false));
    let c = connect(&sim);
    let mut run = c.workflows().start(&z_stack(5)).unwrap();
    let updates = updates_until_finished(&mut run);
    assert!(!updates.contains(&WorkflowUpdate::Acknowledged));
    let WorkflowUpdate::Finished(s) = updates.last().unwrap() else {
        unreachable!()
    };
    assert_eq!(s.images_acquired, 5);
    assert!(!s.acknowledged);
}

#[test]
fn stale_idle_after_the_start_does_not_end_the_run() {
    for ack in [true, false] {
        let sim = sim_with(base_config().ack_workflow_start(ack));
        let c = connect(&sim);
        let observer = c.subscribe_to(&[C::SYSTEM_STATE_IDLE]);
        // The simulator stops reading for 2 s after the next message, so the
        // start waits in the socket while a stale idle arrives.
        fault(&sim, |f| f.stop_reading = Some(Duration::from_secs(2)));
        c.system().state().unwrap();
        let mut run = c.workflows().submit_start(&z_stack(10)).unwrap();
        let stale = Message::new(C::SYSTEM_STATE_IDLE).with_status(1);
        assert_eq!(sim.broadcast(stale), 1);
        let seen = observer.wait_for(|_| true, 0, LONG).unwrap();
        assert!(seen.seq > run.start_seq());
        assert!(
            run.try_next().is_none(),
            "ack={ack}: ended by the stale idle"
        );
        let s = run.wait(LONG).unwrap();
        assert_eq!(s.images_acquired, 10, "ack={ack}: ended by the stale idle");
        assert_eq!(s.stacks.len(), 1);
    }
}

#[test]
fn stale_idle_from_set_idle_before_the_start_is_ignored() {
    for ack in [true, false] {
        let sim = sim_with(base_config().ack_workflow_start(ack));
        let c = connect(&sim);
        for _ in 0..10 {
            // An idle broadcast requested just before the start (no wait for it).
            c.send(Message::new(C::SYSTEM_STATE_IDLE)).unwrap();
            let mut run = c.workflows().submit_start(&z_stack(4)).unwrap();
            let s = run.wait(LONG).unwrap();
            assert_eq!(s.images_acquired, 4, "ack={ack}");
        }
    }
}

#[test]
fn stop_ends_a_run_early() {
    let sim = sim_with(base_config().plane_interval(Duration::from_millis(5)));
    let c = connect(&sim);
    let mut run = c.workflows().start(&z_stack(5000)).unwrap();
    // Wait for some progress, then stop.
    loop {
        match run.next_timeout(LONG).unwrap().unwrap() {
            WorkflowUpdate::Progress { current, .. } if current >= 3 => break,
            WorkflowUpdate::Finished(_) => panic!("finished too soon"),
            _ => {}
        }
    }
    run.stop().unwrap();
    let s = run.wait(LONG).unwrap();
    assert!(s.stopped);
    assert!(s.images_acquired >= 3 && s.images_acquired < 5000, "{s:?}");
    assert_eq!(s.images_expected, 5000);
    assert!(!s.is_complete());
    assert_eq!(sim.counters().workflows_stopped, 1);
}

#[test]
fn stop_right_after_the_start() {
    let sim = sim_with(base_config().plane_interval(Duration::from_millis(5)));
    let c = connect(&sim);
    let mut run = c.workflows().submit_start(&z_stack(5000)).unwrap();
    let op = run.submit_stop().unwrap();
    op.wait().unwrap();
    let s = run.wait(LONG).unwrap();
    assert!(s.stopped);
    assert!(s.images_acquired < 5000);
    // Stop without a run handle.
    let run = c.workflows().start(&z_stack(5000)).unwrap();
    c.workflows().stop().unwrap();
    drop(run);
    c.system().wait_until_idle(LONG).unwrap();
    assert_eq!(sim.counters().workflows_stopped, 2);
}

#[test]
fn busy_while_another_workflow_runs() {
    let sim = sim_with(base_config().plane_interval(Duration::from_millis(5)));
    let c = connect(&sim);
    let mut first = c.workflows().start(&z_stack(5000)).unwrap();
    assert_busy(c.workflows().start(&z_stack(3)), C::CAMERA_WORK_FLOW_START);
    // The stage is busy too.
    assert_busy(c.stage().move_to(Axis::X, 9.0), C::STAGE_POSITION_SET);
    // The non-blocking start reports it as the run's error.
    let mut second = c.workflows().submit_start(&z_stack(3)).unwrap();
    assert_busy(second.wait(LONG), C::CAMERA_WORK_FLOW_START);
    assert_busy(second.wait(Duration::ZERO), C::CAMERA_WORK_FLOW_START);
    first.stop().unwrap();
    assert!(first.wait(LONG).unwrap().stopped);
}

#[test]
fn refused() {
    let sim = sim();
    let c = connect(&sim);
    status_override(&sim, C::CAMERA_WORK_FLOW_START, 2);
    assert_refused(
        c.workflows().start(&z_stack(3)),
        C::CAMERA_WORK_FLOW_START,
        2,
    );
    status_override(&sim, C::CAMERA_WORK_FLOW_STOP, 2);
    assert_refused(c.workflows().stop(), C::CAMERA_WORK_FLOW_STOP, 2);
}

#[test]
fn timeouts() {
    let sim = sim_with(base_config().plane_interval(Duration::from_millis(20)));
    let c = connect(&sim);
    let mut run = c.workflows().start(&z_stack(5000)).unwrap();
    let e = run.wait(Duration::from_millis(200)).unwrap_err();
    assert!(e.is_timeout());
    assert!(e.to_string().contains("still running"), "{e}");
    assert!(!run.is_finished());
    // The simulator carries out the stop but never answers it.
    never_answer(&sim, C::CAMERA_WORK_FLOW_STOP);
    assert_timeout(c.workflows().timeout(SHORT).stop());
    let s = run.wait(LONG).unwrap();
    assert!(s.images_acquired < 5000);
    // A start whose state probe nobody answers still returns its run after
    // the facade's timeout (a busy instrument may not answer).
    never_answer(&sim, C::SYSTEM_STATE_GET);
    let mut run = c.workflows().timeout(SHORT).start(&z_stack(2)).unwrap();
    assert_eq!(run.wait(LONG).unwrap().images_acquired, 2);
}

#[test]
fn disconnected() {
    let sim = sim_with(base_config().plane_interval(Duration::from_millis(20)));
    let c = connect(&sim);
    let mut run = c.workflows().start(&z_stack(5000)).unwrap();
    disconnect(&sim, &c);
    assert_disconnected(run.wait(LONG));
    assert_disconnected(run.wait(LONG));
    assert_disconnected(c.workflows().start(&z_stack(1)));
    assert_disconnected(run.stop());
}

#[test]
fn invalid_arguments_send_nothing() {
    let sim = sim();
    let c = Client::connect(
        &sim.addr().to_string(),
        ClientConfig::default()
            .request_timeout(LONG)
            .additional_data_limit(1000),
    )
    .unwrap();
    assert!(matches!(
        Workflow::from_text("   \r\n"),
        Err(Error::InvalidArgument { .. })
    ));
    let before = sim.received().len();
    match c.workflows().start(&z_stack(3)) {
        Err(Error::TooLarge { .. }) => {}
        other => panic!("{other:?}"),
    }
    c.system().state().unwrap();
    assert_eq!(sim.received().len(), before + 1);
    let mut bad = AT;
    bad.z_mm = f64::NAN;
    assert!(matches!(
        WorkflowBuilder::z_stack(bad, 3, 2.5).build(),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        WorkflowBuilder::snapshot(AT)
            .comments(&"long ".repeat(60))
            .build(),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(sim.workflows().is_empty());
}

#[test]
fn gui_style_polling() {
    let sim = sim();
    let c = connect(&sim);
    let mut run = c.workflows().submit_start(&z_stack(30)).unwrap();
    let deadline = std::time::Instant::now() + LONG;
    let mut progress = 0;
    let summary = loop {
        assert!(std::time::Instant::now() < deadline);
        match run.try_next() {
            Some(Ok(WorkflowUpdate::Progress { current, .. })) => progress = current,
            Some(Ok(WorkflowUpdate::Finished(s))) => break s,
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("{e}"),
            None => std::thread::sleep(Duration::from_millis(1)),
        }
    };
    assert_eq!(progress, 30);
    assert_eq!(summary.images_acquired, 30);
    assert_eq!(run.events_dropped(), 0);
}

/// The idle broadcast that ends a run is lost: the run notices through a
/// state poll once it has been quiet for `STATE_POLL`, instead of hanging.
#[test]
fn lost_idle_broadcast_is_noticed_by_a_state_poll() {
    use flamingo_client::codec::CommandCode;
    use flamingo_client::sim::{SimConfig, Simulator};
    let sim = Simulator::start(SimConfig::default()).unwrap();
    sim.update_faults(|f| {
        f.drop_events.insert(CommandCode::SYSTEM_STATE_IDLE);
    });
    let client =
        flamingo_client::Client::connect(&sim.addr().to_string(), Default::default()).unwrap();
    let wf = flamingo_client::devices::Workflow::from_bytes(
        include_bytes!("../../fixtures/Snapshot.txt").to_vec(),
    )
    .unwrap();
    let mut run = client.workflows().start(&wf).unwrap();
    let summary = run.wait(std::time::Duration::from_secs(30)).unwrap();
    assert_eq!(summary.images_acquired, 1);
    assert!(!summary.stopped);
    assert!(sim.counters().faults_injected >= 1);
}

#[test]
fn a_run_whose_queue_overflowed_is_not_reported_complete() {
    let sim = sim();
    // A run's own queue holds 2 events; nobody drains it while the
    // instrument plays 30 planes, so progress reports are lost.
    let c = Client::connect(
        &sim.addr().to_string(),
        ClientConfig::default()
            .request_timeout(LONG)
            .event_queue_depth(2),
    )
    .unwrap();
    let idle = c.subscribe_to(&[C::SYSTEM_STATE_IDLE]);
    let mut run = c.workflows().start(&z_stack(30)).unwrap();
    // Wait for the end without touching the run.
    idle.wait_for(|e| e.code() == Some(C::SYSTEM_STATE_IDLE), 0, LONG)
        .unwrap();
    let summary = run.wait(LONG).unwrap();
    assert!(summary.events_lost > 0, "{summary:?}");
    assert!(!summary.is_complete(), "{summary:?}");
}
