//! Tests that click: the viewer runs headless on an egui context (no
//! window, no GL), with the embedded simulator on loopback; the tests press
//! and release the mouse at the widgets' places, type and press keys, as a
//! person would, and then check the instrument's state in the simulator
//! (and through a second client) and the files written.
//!
//! Waiting is on the UI's own wake-ups: a frame runs when the library, the
//! display thread or an operation asks for a repaint (at least every 20 ms),
//! until a condition holds or a deadline passes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use eframe::egui::{self, Key, Modifiers};
use flamingo_client::codec::{CommandCode, Message};
use flamingo_client::devices::Workflow;
use flamingo_client::sim::Simulator;
use flamingo_client::{Client, ClientConfig};

use crate::app::Viewer;
use crate::display::Source;
use crate::model::Confirm;
use crate::panels::image::Mode;
use crate::pointer::Pointer;
use crate::Options;

const SCREEN: egui::Vec2 = egui::vec2(1400.0, 1000.0);
const WAIT: Duration = Duration::from_secs(20);

struct Harness {
    ctx: egui::Context,
    v: Viewer,
    input: Pointer,
    started: Instant,
    repaint: Receiver<()>,
    dir: PathBuf,
}

impl Harness {
    /// A viewer with its own configuration directory under `dir`; starts
    /// the simulator and connects if `sim`.
    fn start(name: &str, sim: bool) -> Harness {
        let dir = std::env::temp_dir().join(format!("fv-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Harness::start_in(dir, sim)
    }

    fn start_in(dir: PathBuf, sim: bool) -> Harness {
        let ctx = egui::Context::default();
        let (tx, repaint) = crossbeam_channel::bounded(1);
        ctx.set_request_repaint_callback(move |_| {
            let _ = tx.try_send(());
        });
        let opts = Options {
            sim,
            config_dir: Some(dir.join("config")),
            time_limit: Duration::from_secs(60),
            ..Options::default()
        };
        let mut v = Viewer::with_context(ctx.clone(), opts);
        // The file dialog opens in the test's directory.
        v.model.prefs.last_dir = Some(dir.clone());
        let mut h = Harness {
            ctx,
            v,
            input: Pointer::default(),
            started: Instant::now(),
            repaint,
            dir,
        };
        h.frame();
        h
    }

    fn frame(&mut self) {
        let raw = egui::RawInput {
            screen_rect: Some(egui::Rect::from_min_size(egui::Pos2::ZERO, SCREEN)),
            time: Some(self.started.elapsed().as_secs_f64()),
            events: self.input.next_frame(),
            focused: true,
            ..Default::default()
        };
        let v = &mut self.v;
        let _ = self.ctx.run(raw, |ctx| v.ui(ctx));
    }

    /// Runs frames until `cond` holds.
    fn wait(&mut self, what: &str, cond: impl Fn(&Viewer) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            self.frame();
            if !self.input.busy() && cond(&self.v) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; errors: {:?}",
                self.v
                    .model
                    .errors
                    .iter()
                    .map(|e| &e.text)
                    .collect::<Vec<_>>()
            );
            let _ = self.repaint.recv_timeout(Duration::from_millis(20));
        }
    }

    /// Runs the queued input out (and `n` frames more).
    fn settle(&mut self, n: usize) {
        while self.input.busy() {
            self.frame();
        }
        for _ in 0..n {
            self.frame();
        }
    }

    fn at(&self, name: &str) -> egui::Pos2 {
        match self.v.hits.get(name) {
            Some(r) => r.center(),
            None => {
                let mut names: Vec<_> = self.v.hits.0.keys().cloned().collect();
                names.sort();
                panic!("{name:?} is not on screen; these are: {names:?}")
            }
        }
    }

    /// Clicks the widget `name` (drawn in the last frame).
    fn click(&mut self, name: &str) {
        let p = self.at(name);
        self.input.click_at(p);
        self.settle(1);
    }

    /// Clicks the text field `name` and types `text`.
    fn type_into(&mut self, name: &str, text: &str) {
        self.click(name);
        self.input.text(text);
        self.settle(1);
    }

    fn key(&mut self, key: Key) {
        self.input.key(key, Modifiers::NONE);
        self.settle(1);
    }

    /// Everything up: connected, settings, position, pixel size, exposure,
    /// live frames on screen.
    fn connected(&mut self) {
        self.wait("the connection and the first readings", |v| {
            v.model.connected()
                && v.model.settings.is_some()
                && v.model.position.is_some()
                && v.model.camera.pixel_um.is_some()
                && v.model.camera.exposure_us.is_some()
                && v.model.camera.filter.is_some()
                && v.live_frames_shown >= 3
                && v.session.as_ref().is_some_and(|s| s.pending.is_empty())
        });
    }

    fn sim(&self) -> Arc<Simulator> {
        self.v
            .session
            .as_ref()
            .and_then(|s| s.sim.clone())
            .expect("the embedded simulator")
    }

    /// A second client of the same simulator: what the instrument says.
    fn probe(&self) -> Client {
        Client::connect(&self.sim().addr().to_string(), ClientConfig::default()).unwrap()
    }

    fn count(&self, code: CommandCode) -> usize {
        self.sim()
            .received_codes()
            .iter()
            .filter(|&&c| c == code)
            .count()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.v.shut_down();
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn read_tiff(bytes: &[u8]) -> (Vec<crate::check::TiffPage>, String) {
    crate::check::read_tiff(bytes).unwrap()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

fn file_in(dir: &Path, prefix: &str) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
}

#[test]
fn snapshot_is_saved_as_a_calibrated_tiff_and_a_z_series_as_a_stack() {
    let mut h = Harness::start("snapshot", true);
    h.connected();
    let pixel_um = h.v.model.camera.pixel_um.unwrap();
    assert!(close(pixel_um, h.sim().config().pixel_fov() * 1000.0, 1e-9));

    // Snapshot: live view pauses and stays off, the snapshot is on screen.
    h.click("snapshot");
    h.wait("the snapshot on screen", |v| {
        v.snap.is_some()
            && v.image
                .shown
                .as_ref()
                .is_some_and(|s| s.source == Source::Snapshot(1))
    });
    assert!(h.count(CommandCode::CAMERA_SNAPSHOT_GET) == 1);
    assert!(!h.v.session.as_ref().unwrap().live.is_on());
    let sim = h.sim();
    h.wait("live view off in the instrument", |_| !sim.live_view_on());

    // Save: the dialog opens in the test's folder with a name ready.
    h.click("save snapshot");
    assert!(h.v.picker.is_some());
    h.click("picker ok");
    assert!(h.v.picker.is_none());
    h.wait("the snapshot saved", |v| {
        v.model.camera.last_saved.is_some()
    });
    let path = h.v.model.camera.last_saved.clone().unwrap();
    assert!(path.starts_with(&h.dir), "{}", path.display());
    let bytes = std::fs::read(&path).unwrap();
    let (pages, description) = read_tiff(&bytes);
    let frame = h.v.snap.as_ref().unwrap().frame.clone();
    assert_eq!(pages.len(), 1);
    assert_eq!((pages[0].0, pages[0].1), (frame.width(), frame.height()));
    assert!(close(pages[0].2.unwrap(), pixel_um, 1e-6), "{pages:?}");
    assert!(description.contains("unit=micron"), "{description}");
    assert!(bytes.ends_with(frame.as_bytes()), "the pixels as received");

    // A Z series of 3 planes 5 µm apart into one TIFF stack.
    let z0 = h.sim().stage_positions()[2];
    h.v.model.camera.stack_planes = 3;
    h.v.model.camera.stack_spacing_um = 5.0;
    h.click("acquire stack");
    assert!(h.v.picker.is_some());
    h.click("picker ok");
    h.wait("the stack saved", |v| {
        v.model
            .camera
            .last_saved
            .as_ref()
            .is_some_and(|p| p.to_string_lossy().contains("stack-"))
            && !v.session.as_ref().unwrap().live.is_acquiring()
    });
    let stack = file_in(&h.dir, "stack-").expect("the stack file");
    let (pages, description) = read_tiff(&std::fs::read(&stack).unwrap());
    assert_eq!(pages.len(), 3, "{description}");
    assert!(pages.iter().all(|p| close(p.2.unwrap(), pixel_um, 1e-6)));
    assert!(description.contains("spacing=5"), "{description}");
    assert_eq!(h.count(CommandCode::CAMERA_SNAPSHOT_GET), 4);
    // The stage went back to the first plane.
    let sim = h.sim();
    h.wait("the stage back at the first plane", |_| {
        !sim.stage_moving() && close(sim.stage_positions()[2], z0, 1e-6)
    });

    // Live view on again: live frames replace the snapshot.
    h.click("live");
    h.wait("live frames again", |v| {
        v.image
            .shown
            .as_ref()
            .is_some_and(|s| s.source == Source::Live)
    });
}

#[test]
fn exposure_and_filter_wheel_are_set_and_read_back() {
    let mut h = Harness::start("camera", true);
    h.connected();
    h.v.model.camera.exposure_input_ms = 25.0;
    h.v.model.camera.exposure_editing = true;
    h.click("exposure set");
    h.wait("the exposure read back", |v| {
        v.model.camera.exposure_us == Some(25_000) && !v.model.camera.exposure_editing
    });
    h.click("filter combo");
    h.click("filter 3");
    h.wait("the filter read back", |v| v.model.camera.filter == Some(3));
    let probe = h.probe();
    assert_eq!(probe.camera().exposure_us().unwrap(), 25_000);
    assert_eq!(probe.filter_wheel().position().unwrap(), 3);
    probe.close();
}

#[test]
fn contrast_zoom_and_the_pixel_under_the_cursor() {
    let mut h = Harness::start("contrast", true);
    h.connected();
    // Auto from the histogram: the window becomes the histogram's.
    h.click("contrast auto");
    assert_eq!(h.v.image.mode, Mode::Manual);
    let (lo, hi) = (h.v.image.min, h.v.image.max);
    assert!(lo < hi);
    h.wait("a frame shown with the auto window", |v| {
        v.image.shown.as_ref().is_some_and(|s| s.window == (lo, hi))
    });
    // Min–max of the frame.
    h.click("contrast minmax");
    let (lo, hi) = (h.v.image.min, h.v.image.max);
    h.wait("a frame shown with its min–max", |v| {
        v.image.shown.as_ref().is_some_and(|s| s.window == (lo, hi))
    });
    // Back to the frame's own range.
    h.click("contrast mode");
    h.click("contrast frame");
    assert_eq!(h.v.image.mode, Mode::Frame);
    h.wait("the frame's own range", |v| {
        v.image
            .shown
            .as_ref()
            .is_some_and(|s| s.window == s.frame.display_window())
    });

    // Zoom in with the wheel over the image, then read a pixel.
    let c = h.at("image");
    h.input.wheel(c, 4.0);
    // The wheel's scroll is smoothed over a few frames.
    h.settle(30);
    let s = h.v.image.scale.expect("zoomed");
    assert!(s > 1.0, "{s}");
    h.input.move_to(c + egui::vec2(13.0, -7.0));
    h.settle(1);
    let (x, y, v) = h.v.image.hover.expect("a pixel under the cursor");
    let frame = h.v.image.shown.as_ref().unwrap().frame.clone();
    // The frame may have changed since the pixel was read: live view.
    assert!(x < frame.width() && y < frame.height());
    let _ = v;
    // Pan: dragging the image by 40 points moves the view 40 / scale pixels.
    let before = h.v.image.center.expect("a centre once zoomed");
    h.input.drag(c, c + egui::vec2(40.0, 0.0));
    h.settle(1);
    let after = h.v.image.center.unwrap();
    let s = h.v.image.scale.unwrap();
    assert!(
        ((before.x - after.x) - 40.0 / s).abs() < 0.5 && (before.y - after.y).abs() < 0.5,
        "{before:?} -> {after:?} at {s}"
    );
    h.click("zoom fit");
    assert_eq!(h.v.image.scale, None);
    // Dragging in the histogram moves the nearer end of the window: manual.
    let hist = h.v.hits.get("histogram").unwrap();
    let (lo, _) = h.v.image.shown.as_ref().unwrap().window;
    h.input
        .drag(hist.left_center() + egui::vec2(2.0, 0.0), hist.center());
    h.settle(1);
    assert_eq!(h.v.image.mode, Mode::Manual);
    assert!(h.v.image.min > lo, "{} vs {lo}", h.v.image.min);
    // Freeze on a snapshot and compare exactly.
    h.click("snapshot");
    h.wait("the snapshot on screen", |v| {
        v.image
            .shown
            .as_ref()
            .is_some_and(|s| s.source == Source::Snapshot(1))
    });
    h.input.move_to(c + egui::vec2(5.0, 9.0));
    h.settle(1);
    let (x, y, v) = h.v.image.hover.expect("a pixel under the cursor");
    let frame = h.v.image.shown.as_ref().unwrap().frame.clone();
    assert_eq!(v, frame.pixel(x, y));
}

#[test]
fn a_z_stack_from_the_editor_runs_stops_and_runs_to_its_end() {
    let mut h = Harness::start("zstack", true);
    h.connected();
    let z = h.v.model.position.unwrap().z_mm;
    h.v.zstack.planes = 200;
    h.v.zstack.spacing_um = 1.0;
    h.click("zstack use");
    h.wait("the z-stack ready", |v| {
        v.model.workflow_file.is_some() && matches!(v.model.workflow.zstack_check, Some(Ok(_)))
    });
    h.click("workflow start");
    h.wait("progress", |v| {
        v.model.workflow.progress.is_some_and(|(c, _)| c >= 20)
    });
    assert!(h.v.model.workflow.seconds_left(Instant::now()).is_some());
    h.click("workflow stop");
    h.wait("the run stopped", |v| v.model.workflow.status == "stopped");
    let sent = h.sim().workflows();
    let wf = Workflow::from_bytes(sent.last().unwrap().clone()).unwrap();
    assert_eq!(wf.planes(), Some(200));
    let start_z: f64 = wf.get("Start Position", "Z (mm)").unwrap().parse().unwrap();
    assert!(close(start_z, z, 1e-6), "{start_z} vs {z}");
    // Again, to its end.
    h.click("workflow start");
    h.wait("the run finished", |v| {
        v.model.workflow.status == "finished"
    });
    assert_eq!(h.v.model.workflow.progress, Some((200, 200)));
    assert_eq!(h.sim().workflows().len(), 2);
    // A stack that would leave the soft limits is refused before anything is sent.
    h.v.zstack.spacing_um = 1000.0;
    h.click("zstack use");
    match &h.v.model.workflow.zstack_check {
        Some(Err(e)) => assert!(e.contains("soft limits"), "{e}"),
        other => panic!("{other:?}"),
    }
    h.settle(2);
    assert_eq!(h.sim().workflows().len(), 2);
}

#[test]
fn saved_positions_persist_far_moves_ask_and_the_keyboard_jogs_with_focus() {
    let mut h = Harness::start("positions", true);
    h.connected();
    let p0 = h.v.model.position.unwrap();
    h.type_into("position name", "cell A");
    h.click("save position");
    assert_eq!(h.v.model.saved.len(), 1);
    let file = h.dir.join("config").join(crate::config::POSITIONS_FILE);
    h.wait("the positions file", |_| {
        std::fs::read_to_string(&file).is_ok_and(|t| t.contains("cell A"))
    });

    // 1.5 mm in X is further than the 1 mm limit: it asks first.
    let target = p0.x_mm + 1.5;
    h.type_into("move x field", &format!("{target}"));
    h.click("move x go");
    assert!(matches!(h.v.model.confirm, Some(Confirm::Move { .. })));
    let moves = h.count(CommandCode::STAGE_POSITION_SET);
    h.click("confirm yes");
    let sim = h.sim();
    h.wait("x at the target", |v| {
        !sim.stage_moving() && close(sim.stage_positions()[0], target, 1e-6) && !v.model.moving[0]
    });
    assert_eq!(h.count(CommandCode::STAGE_POSITION_SET), moves + 1);

    // Back to the saved position: asks too, then all axes go there.
    h.click("go to cell A");
    assert!(h.v.model.confirm.is_some());
    h.click("confirm yes");
    h.wait("back at cell A", |v| {
        let s = sim.stage_positions();
        !sim.stage_moving()
            && close(s[0], p0.x_mm, 1e-6)
            && close(s[1], p0.y_mm, 1e-6)
            && v.model.moving.iter().all(|m| !m)
    });

    // Keyboard: only while the image has the focus.
    h.key(Key::ArrowRight);
    h.settle(3);
    assert_eq!(h.count(CommandCode::STAGE_POSITION_SET), moves + 5);
    h.click("image");
    assert!(h.v.image.focused);
    h.key(Key::ArrowRight);
    h.wait("x one step on", |_| {
        !sim.stage_moving() && close(sim.stage_positions()[0], p0.x_mm + 0.1, 1e-6)
    });
    h.key(Key::Escape);
    assert!(!h.v.image.focused);
    h.key(Key::ArrowRight);
    h.settle(3);
    assert_eq!(h.count(CommandCode::STAGE_POSITION_SET), moves + 6);

    // A new viewer reads the saved position back (the directory is the
    // second viewer's to remove).
    let dir = std::mem::take(&mut h.dir);
    drop(h);
    let h2 = Harness::start_in(dir, false);
    assert_eq!(h2.v.model.saved.len(), 1);
    assert_eq!(h2.v.model.saved[0].name, "cell A");
    assert_eq!(h2.v.model.saved[0].position, p0);
}

#[test]
fn home_asks_first_and_cancel_sends_nothing() {
    let mut h = Harness::start("home", true);
    h.connected();
    h.click("home");
    assert_eq!(h.v.model.confirm, Some(Confirm::Home));
    h.click("confirm no");
    assert_eq!(h.v.model.confirm, None);
    h.settle(3);
    assert_eq!(h.count(CommandCode::STAGE_HOME), 0);
    h.click("home");
    h.click("confirm yes");
    let sim = h.sim();
    h.wait("homed", |v| {
        sim.received_codes().contains(&CommandCode::STAGE_HOME)
            && !sim.stage_moving()
            && v.model.moving.iter().all(|m| !m)
    });
    assert_eq!(h.count(CommandCode::STAGE_HOME), 1);
}

#[test]
fn panels_follow_the_instrument_and_grey_out_when_disconnected() {
    let mut h = Harness::start("truth", true);
    h.connected();
    // The instrument reports a level (as a workflow does): the slider follows.
    let m = Message::new(CommandCode::LASER_LEVEL_GET)
        .with_int32_data0(2)
        .with_text("5.88")
        .unwrap();
    h.sim().broadcast(m);
    h.wait("laser 2 at 5.88 %", |v| {
        v.model.lasers[1].level == Some(5.88) && v.model.lasers[1].input == 5.88
    });
    // Set, then read back.
    h.v.model.lasers[1].input = 12.5;
    h.v.model.lasers[1].editing = true;
    h.click("laser 2 set");
    h.wait("laser 2 read back", |v| {
        v.model.lasers[1].level == Some(12.5) && !v.model.lasers[1].editing
    });
    assert_eq!(h.sim().laser_level(2), Some(12.5));
    // Disconnected: the instrument's buttons do nothing.
    h.click("disconnect");
    assert!(!h.v.model.connected());
    let errors = h.v.model.errors_total;
    h.click("laser 2 set");
    h.click("snapshot");
    h.click("home");
    assert_eq!(h.v.model.errors_total, errors);
    assert_eq!(h.v.model.confirm, None);
    // The last reported values stay, shown as such.
    assert_eq!(h.v.model.lasers[1].level, Some(12.5));
}

#[test]
fn a_workflow_file_is_opened_and_the_z_stack_saved_with_the_file_dialog() {
    let mut h = Harness::start("files", true);
    h.connected();
    let runs = h.dir.join("runs");
    std::fs::create_dir_all(&runs).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/ZStack.txt");
    std::fs::copy(&fixture, runs.join("ZStack.txt")).unwrap();
    std::fs::write(runs.join("notes.md"), "not a workflow").unwrap();

    // Open: into the folder, pick the file (only .txt files are listed).
    h.click("open workflow");
    h.wait("the folder listed", |v| {
        v.picker
            .as_ref()
            .is_some_and(|p| !p.listing() && !p.entries.is_empty())
    });
    h.click("picker entry runs");
    h.wait("the sub-folder listed", |v| {
        v.picker
            .as_ref()
            .is_some_and(|p| p.entries.iter().any(|e| e.name == "ZStack.txt"))
    });
    assert!(h.v.hits.get("picker entry notes.md").is_none());
    h.click("picker entry ZStack.txt");
    h.click("picker ok");
    h.wait("the workflow loaded", |v| {
        v.model.workflow.loaded.as_deref() == Some("ZStack.txt")
    });
    assert_eq!(h.v.model.workflow.planes, Some(476));
    // The folder is remembered for the next dialog.
    assert_eq!(h.v.model.prefs.last_dir.as_deref(), Some(runs.as_path()));
    h.click("workflow start");
    h.wait("progress", |v| v.model.workflow.progress.is_some());
    assert_eq!(
        h.sim().workflows()[0],
        std::fs::read(&fixture).unwrap(),
        "the file as written"
    );
    h.click("workflow stop");
    h.wait("the run stopped", |v| v.model.workflow.status == "stopped");

    // Save the z-stack editor's workflow: it loads back as the same stack.
    h.v.zstack.planes = 30;
    h.click("zstack save");
    assert!(h.v.picker.as_ref().unwrap().name.starts_with("zstack-"));
    h.click("picker ok");
    h.wait("the workflow file written", |_| {
        file_in(&runs, "zstack-").is_some_and(|p| Workflow::load(p).is_ok())
    });
    let wf = Workflow::load(file_in(&runs, "zstack-").unwrap()).unwrap();
    assert_eq!(wf.planes(), Some(30));
}
