//! Playing a workflow: the unsolicited messages of an acquisition.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{select, Receiver};

use super::live::CameraCmd;
use super::shared::Shared;
use crate::codec::{CommandCode as C, Message};

/// What the simulator takes from a workflow file.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Plan {
    /// "Number of planes = N" (1 if absent or unreadable).
    pub planes: u32,
    /// "Work flow live view enabled = true".
    pub live_view: bool,
    /// Enabled lasers (1..=4) and their levels, from "Laser N ... = level enabled".
    pub lasers: Vec<(i32, f64)>,
}

impl Plan {
    pub(crate) fn parse(file: &[u8]) -> Plan {
        let text = String::from_utf8_lossy(file);
        let mut plan = Plan {
            planes: 1,
            live_view: false,
            lasers: Vec::new(),
        };
        for line in text.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let (key, value) = (key.trim(), value.trim());
            if key == "Number of planes" {
                plan.planes = value.parse().unwrap_or(1).max(1);
            } else if key == "Work flow live view enabled" {
                plan.live_view = value.eq_ignore_ascii_case("true");
            } else if let Some(rest) = key.strip_prefix("Laser ") {
                let n = rest.split_whitespace().next().and_then(|n| n.parse().ok());
                let mut v = value.split_whitespace();
                let level = v.next().and_then(|l| l.parse::<f64>().ok());
                let enabled = v.next() == Some("1");
                if let (Some(n @ 1..=4), Some(level), true) = (n, level, enabled) {
                    plan.lasers.push((n, level));
                }
            }
        }
        plan
    }
}

/// Why the simulated instrument refuses a workflow file, if it does: the
/// text is not workflow text (a line that is neither a section tag nor a
/// `key = value` line, tags closed out of order or never (entries outside
/// sections are played), nesting past
/// [`MAX_SECTION_DEPTH`](crate::devices::MAX_SECTION_DEPTH)), or its
/// `Number of planes` is not a whole number from 1 to
/// [`MAX_PLANES`](crate::devices::MAX_PLANES). A file without a
/// `Number of planes` line is played as one plane. Empty files are refused
/// by the handler before this.
pub(crate) fn refusal(file: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(file);
    if let Err(why) = crate::devices::check_syntax(&text, false) {
        return Some(why);
    }
    for line in text.lines() {
        if let Some((key, value)) = line.split_once('=') {
            if key.trim() == "Number of planes" {
                let ok = value
                    .trim()
                    .parse::<u32>()
                    .is_ok_and(|n| (1..=crate::devices::MAX_PLANES).contains(&n));
                if !ok {
                    return Some(format!("bad number of planes {:?}", value.trim()));
                }
            }
        }
    }
    None
}

/// Claims the workflow slot (the system is busy from now on). `None` if a
/// workflow already runs. The receiver gets the stop request.
pub(crate) fn reserve(sh: &Shared) -> Option<Receiver<()>> {
    let mut inst = sh.inst.lock();
    if inst.workflow.is_some() {
        return None;
    }
    let (tx, rx) = crossbeam_channel::bounded(1);
    inst.workflow = Some(tx);
    Some(rx)
}

/// Frees the workflow slot.
pub(crate) fn release(sh: &Shared) {
    sh.inst.lock().workflow = None;
}

/// Asks the running workflow, if any, to end early.
pub(crate) fn stop(sh: &Shared) {
    if let Some(tx) = &sh.inst.lock().workflow {
        let _ = tx.try_send(());
    }
}

/// Plays a reserved workflow in a new thread, from `start_at`.
pub(crate) fn play(sh: &Arc<Shared>, stop_rx: Receiver<()>, file: Vec<u8>, start_at: Instant) {
    let plan = Plan::parse(&file);
    log::debug!("sim: workflow starts: {plan:?}");
    sh.count(|c| c.workflows_started += 1);
    let sh2 = sh.clone();
    match sh.spawn("workflow", move || run(sh2, stop_rx, plan, start_at)) {
        Ok(true) => {}
        Ok(false) => release(sh),
        Err(e) => {
            log::warn!("sim: cannot start the workflow thread: {e}");
            release(sh);
        }
    }
}

enum Wake {
    Time,
    Stop,
    Shutdown,
}

fn wait(sh: &Shared, stop: &Receiver<()>, until: Instant) -> Wake {
    select! {
        recv(stop) -> _ => Wake::Stop,
        recv(sh.shutdown_rx) -> _ => Wake::Shutdown,
        recv(crossbeam_channel::at(until)) -> _ => Wake::Time,
    }
}

fn run(sh: Arc<Shared>, stop: Receiver<()>, plan: Plan, start_at: Instant) {
    let planes = match sh.cfg.max_planes {
        Some(cap) => plan.planes.min(cap.max(1)),
        None => plan.planes,
    };
    let mut done = 0u32;
    let mut stopped = false;
    let t0 = Instant::now();
    match wait(&sh, &stop, start_at) {
        Wake::Shutdown => return release(&sh),
        Wake::Stop => stopped = true,
        Wake::Time => {}
    }
    if !stopped {
        sh.broadcast(Message::new(C::UI_SET_GAUGE_SIZE).with_int32_data0(planes as i32));
        let mut lasers = plan.lasers.clone();
        if lasers.is_empty() {
            lasers.push((1, sh.inst.lock().laser_level[0]));
        }
        for (n, level) in lasers {
            let m = Message::new(C::LASER_LEVEL_GET)
                .with_int32_data0(n)
                .with_text(&format!("{level:.2}"))
                .expect("short text");
            sh.broadcast(m);
        }
        let t1 = Instant::now();
        for i in 1..=planes {
            match wait(&sh, &stop, t1 + sh.cfg.plane_interval * i) {
                Wake::Shutdown => return release(&sh),
                Wake::Stop => {
                    stopped = true;
                    break;
                }
                Wake::Time => {}
            }
            if plan.live_view {
                let _ = sh.camera.send(CameraCmd::Snapshot {
                    not_before: Instant::now(),
                    snapshot: false,
                });
            }
            sh.broadcast(
                Message::new(C::UI_SET_GAUGE_VALUE)
                    .with_int32_data0(i as i32)
                    .with_int32_data1(planes as i32),
            );
            done = i;
        }
    }
    let micros = t0.elapsed().as_secs_f64() * 1e6;
    sh.broadcast(
        Message::new(C::CAMERA_STACK_COMPLETE)
            .with_int32_data0(done as i32)
            .with_int32_data1(planes as i32)
            .with_int32_data2(0)
            .with_double_data(micros),
    );
    sh.broadcast(Message::new(C::UI_IMAGES_SAVED_TO_STORAGE).with_int32_data0(done as i32));
    release(&sh);
    sh.count(|c| {
        if stopped {
            c.workflows_stopped += 1;
        } else {
            c.workflows_completed += 1;
        }
    });
    log::info!("sim: workflow ends after {done} of {planes} planes");
    sh.broadcast(Message::new(C::SYSTEM_STATE_IDLE).with_status(1));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fixtures() {
        let z = Plan::parse(include_bytes!("../../fixtures/ZStack.txt"));
        assert_eq!(z.planes, 476);
        assert!(!z.live_view);
        assert_eq!(z.lasers, vec![(3, 5.88), (4, 8.01)]);
        let s = Plan::parse(include_bytes!("../../fixtures/Snapshot.txt"));
        assert_eq!(s.planes, 1);
        assert!(s.live_view);
        assert_eq!(Plan::parse(b"").planes, 1);
        assert_eq!(Plan::parse(b"Number of planes = x\r\n").planes, 1);
    }

    #[test]
    fn refuses_what_is_not_a_workflow() {
        assert_eq!(refusal(include_bytes!("../../fixtures/ZStack.txt")), None);
        assert_eq!(refusal(b"Number of planes = 3\n"), None);
        assert_eq!(
            refusal(b"<Workflow Settings>\r\n</Workflow Settings>\r\n"),
            None
        );
        assert!(refusal(b"garbage").is_some());
        assert!(refusal(b"<A>\n").is_some());
        assert!(refusal(b"Number of planes = x\n").is_some());
        assert!(refusal(b"Number of planes = 0\n").is_some());
        assert!(refusal("<a>\n".repeat(100).as_bytes()).is_some());
    }
}
