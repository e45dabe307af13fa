//! The window: the application's state, the layout of the panels and the
//! frame loop.
//!
//! Every frame, [`Viewer::poll`] takes what the library has for the UI
//! without blocking: the connection state, queued events, finished
//! operations, workflow updates, acquisitions and the newest display frame.
//! The panels (one file each in `panels/`) then draw the model, and buttons
//! submit operations (`submit_*`, in `actions.rs`), whose outcomes update
//! the model when they complete.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use eframe::egui::{self, Color32};
use flamingo_client::ConnectionState;

use crate::config::{self, Store};
use crate::display::{self, Display};
use crate::file_picker::FilePicker;
use crate::model::{state_name, LineKind, Model};
use crate::panels::image::ImageView;
use crate::panels::zstack::ZStackEditor;
use crate::selftest::SelfTest;
use crate::session::{self, Apply, Connected, Session};
use crate::timing::LibTimer;
use crate::Options;

/// The progress bar's fill (the self-test's checker looks for it).
pub const PROGRESS_FILL: Color32 = Color32::from_rgb(46, 160, 67);

/// Where things were drawn, in points (for the self-test's checks).
#[derive(Clone, Copy, Debug, Default)]
pub struct Layout {
    /// The live image (the part of it on screen).
    pub image: Option<egui::Rect>,
    /// The workflow progress bar.
    pub progress: Option<egui::Rect>,
}

/// Where the widgets a test clicks were drawn in the last frame, by name.
#[derive(Debug, Default)]
pub struct Hits(pub HashMap<String, egui::Rect>);

impl Hits {
    /// Records where a widget can be clicked (its rectangle, clipped to
    /// what is visible) under `name`.
    pub fn put(&mut self, name: impl Into<String>, r: &egui::Response) {
        if r.interact_rect.is_positive() {
            self.0.insert(name.into(), r.interact_rect);
        }
    }

    /// The rectangle of `name`, if it was drawn in the last frame.
    pub fn get(&self, name: &str) -> Option<egui::Rect> {
        self.0.get(name).copied()
    }
}

/// The last snapshot taken, ready to save.
#[derive(Clone)]
pub struct Snap {
    /// Its number in this session.
    pub number: u32,
    /// The image.
    pub frame: flamingo_client::live::Frame,
    /// Pixel size (µm) when it was taken.
    pub pixel_um: Option<f64>,
}

/// The application.
pub struct Viewer {
    pub(crate) opts: Options,
    pub(crate) ctx: egui::Context,
    pub(crate) model: Model,
    pub(crate) timer: LibTimer,
    pub(crate) session: Option<Session>,
    pub(crate) connecting: Option<(Receiver<Result<Connected, String>>, Instant)>,
    /// Work done off the UI thread (file loading and saving), applied when done.
    pub(crate) jobs: Vec<Receiver<Apply>>,
    pub(crate) addr_input: String,
    /// The display conversion thread.
    pub(crate) display: Display,
    /// The image on screen, its zoom, contrast and histogram.
    pub(crate) image: ImageView,
    /// Frames drawn on screen from the live view.
    pub(crate) live_frames_shown: u64,
    pub(crate) shown_at: Vec<Instant>,
    pub(crate) positions_op: bool,
    /// A stop event came: query the positions.
    pub(crate) positions_stale: bool,
    /// The instrument went idle (a workflow ended): read its state again.
    pub(crate) refresh_due: bool,
    pub(crate) layout: Layout,
    pub(crate) hits: Hits,
    pub(crate) selftest: Option<SelfTest>,
    /// Sessions being closed on their own threads.
    pub(crate) closing: Vec<std::thread::JoinHandle<()>>,
    /// Writes the saved positions and preferences.
    pub(crate) store: Option<Store>,
    /// The file dialog, while open.
    pub(crate) picker: Option<FilePicker>,
    /// The last snapshot.
    pub(crate) snap: Option<Snap>,
    /// The z-stack editor.
    pub(crate) zstack: ZStackEditor,
    /// Developer panels (library time per frame, calls) shown.
    pub(crate) developer: bool,
}

impl Viewer {
    /// Builds the viewer for the window of `cc`.
    pub fn new(cc: &eframe::CreationContext<'_>, opts: Options) -> Viewer {
        Viewer::with_context(cc.egui_ctx.clone(), opts)
    }

    /// Builds the viewer on an egui context (a window's, or a test's);
    /// connects at once if asked to.
    pub fn with_context(ctx: egui::Context, opts: Options) -> Viewer {
        ctx.set_visuals(egui::Visuals::dark());
        let dir = opts.config_dir.clone().or_else(config::dir);
        let loaded = config::load(dir.as_deref());
        let mut model = Model::new();
        model.saved = loaded.positions;
        model.prefs = loaded.prefs;
        for p in loaded.problems {
            model.log(LineKind::Error, p);
        }
        if let Some(d) = &loaded.dir {
            model.log(
                LineKind::Action,
                format!("settings and saved positions in {}", d.display()),
            );
        }
        let mut v = Viewer {
            display: Display::start(display::waker(&ctx)),
            store: Some(Store::start(dir, display::waker(&ctx))),
            ctx,
            model,
            timer: LibTimer::default(),
            session: None,
            connecting: None,
            jobs: Vec::new(),
            addr_input: opts
                .connect
                .clone()
                .unwrap_or_else(|| "127.0.0.1:53717".into()),
            image: ImageView::default(),
            live_frames_shown: 0,
            shown_at: Vec::new(),
            positions_op: false,
            positions_stale: false,
            refresh_due: false,
            layout: Layout::default(),
            hits: Hits::default(),
            selftest: opts.self_test.then(|| SelfTest::new(&opts)),
            closing: Vec::new(),
            picker: None,
            snap: None,
            zstack: ZStackEditor::default(),
            developer: opts.developer,
            opts,
        };
        if v.opts.sim {
            v.connect(None);
        } else if let Some(a) = v.opts.connect.clone() {
            v.connect(Some(a));
        }
        if let Some(p) = v.opts.workflow.clone() {
            v.load_workflow(p);
        }
        v
    }

    /// One frame: poll, draw, schedule the next. Independent of eframe, so
    /// tests run it on a bare egui context.
    pub fn ui(&mut self, ctx: &egui::Context) {
        let t0 = Instant::now();
        self.timer.begin_frame();
        self.poll();
        if let Some(mut st) = self.selftest.take() {
            st.step(self, ctx);
            self.selftest = Some(st);
        }
        // The self-test clicked at last frame's places: now they are redrawn.
        self.hits.0.clear();
        egui::TopBottomPanel::top("top").show(ctx, |ui| {
            self.top_bar(ui);
            if self.developer {
                self.perf_line(ui);
            }
        });
        egui::TopBottomPanel::bottom("log")
            .resizable(true)
            .default_height(130.0)
            .show(ctx, |ui| {
                self.error_strip(ui);
                self.log_panel(ui);
            });
        egui::SidePanel::left("controls")
            .resizable(true)
            .default_width(400.0)
            .show(ctx, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    self.stage_panel(ui);
                    ui.separator();
                    self.positions_panel(ui);
                    ui.separator();
                    self.camera_panel(ui);
                    ui.separator();
                    self.lasers_panel(ui);
                    ui.separator();
                    self.led_panel(ui);
                    if self.developer {
                        ui.separator();
                        self.timing_panel(ui);
                    }
                });
            });
        egui::SidePanel::right("workflow")
            .resizable(true)
            .default_width(300.0)
            .show(ctx, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    self.workflow_panel(ui);
                    ui.separator();
                    self.zstack_panel(ui);
                });
            });
        egui::CentralPanel::default().show(ctx, |ui| {
            self.image_panel(ui);
        });
        self.confirm_dialog(ctx);
        self.picker_dialog(ctx);

        // Something in flight: look again soon even if nothing wakes us.
        let busy = self.connecting.is_some()
            || self.session.as_ref().is_some_and(|s| {
                !s.pending.is_empty() || s.run.as_ref().is_some_and(|r| !r.is_finished())
            });
        if busy {
            if let Some(d) = session::POLL_WHILE_PENDING {
                ctx.request_repaint_after(d);
            }
        }
        // Reconnecting: the state changes without an event at every attempt.
        if matches!(self.model.conn, Some(ConnectionState::Reconnecting { .. })) {
            ctx.request_repaint_after(Duration::from_millis(100));
        }
        // A running workflow's time left counts down between progress events.
        if self.model.workflow.started_at.is_some() {
            ctx.request_repaint_after(Duration::from_millis(250));
        }
        self.closing.retain(|h| !h.is_finished());
        self.timer.end_frame(t0.elapsed());
    }

    /// Ends everything (at exit): the session, the closers, the store.
    pub fn shut_down(&mut self) {
        if let Some(s) = self.session.take() {
            let _ = s.close_in_background().join();
        }
        for h in self.closing.drain(..) {
            let _ = h.join();
        }
        if let Some(s) = self.store.take() {
            s.finish();
        }
    }
}

impl eframe::App for Viewer {
    fn update(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.ui(ctx);
    }

    fn raw_input_hook(&mut self, _ctx: &egui::Context, raw: &mut egui::RawInput) {
        // The self-test clicks through the window's own input.
        if let Some(st) = self.selftest.as_mut() {
            st.input(&self.hits, raw);
        }
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        // The process is ending: waiting for the threads is fine here.
        self.shut_down();
    }
}

/// Name of the connection state, for the self-test report.
pub fn conn_name(m: &Model) -> &'static str {
    m.conn.as_ref().map_or("none", state_name)
}
