//! Camera and acquisition: exposure and filter wheel (set, then read back),
//! the pixel size, a snapshot and its TIFF file, and a Z series saved as one
//! TIFF stack, both with the pixel size.

use eframe::egui::{self, RichText};

use crate::app::Viewer;
use crate::file_picker::Purpose;

/// Filter wheel positions offered.
const FILTERS: std::ops::RangeInclusive<u8> = 1..=8;

impl Viewer {
    pub(crate) fn camera_panel(&mut self, ui: &mut egui::Ui) {
        let connected = self.model.connected();
        ui.horizontal(|ui| {
            ui.heading("Camera");
            if let Some(n) = super::stale_note(connected) {
                ui.label(n);
            }
        });
        ui.add_enabled_ui(connected, |ui| self.camera_settings(ui));
        self.acquisition(ui, connected);
    }

    fn camera_settings(&mut self, ui: &mut egui::Ui) {
        let c = &mut self.model.camera;
        let mut set_exposure = None;
        let mut set_filter = None;
        egui::Grid::new("camera")
            .num_columns(3)
            .spacing([8.0, 4.0])
            .show(ui, |ui| {
                ui.label("Exposure");
                ui.horizontal(|ui| {
                    let r = ui.add(
                        egui::DragValue::new(&mut c.exposure_input_ms)
                            .speed(0.1)
                            .range(0.001..=10_000.0)
                            .max_decimals(3)
                            .suffix(" ms"),
                    );
                    self.hits.put("exposure field", &r);
                    if r.changed() {
                        c.exposure_editing = true;
                    }
                    let b = ui.small_button("Set");
                    self.hits.put("exposure set", &b);
                    if b.clicked() || (r.lost_focus() && c.exposure_editing) {
                        set_exposure = Some(c.exposure_input_ms);
                    }
                });
                let mut t = super::reported(
                    c.exposure_us
                        .map(|us| format!("{} ms", f64::from(us) / 1000.0)),
                );
                if c.exposure_editing {
                    t = t.color(super::PENDING);
                }
                ui.label(t).on_hover_text("as the camera reports it");
                ui.end_row();

                ui.label("Filter wheel");
                ui.horizontal(|ui| {
                    let before = c.filter_input;
                    let r = egui::ComboBox::from_id_salt("filter")
                        .selected_text(format!("position {}", c.filter_input))
                        .width(100.0)
                        .show_ui(ui, |ui| {
                            for p in FILTERS {
                                let r = ui.selectable_value(
                                    &mut c.filter_input,
                                    p,
                                    format!("position {p}"),
                                );
                                self.hits.put(format!("filter {p}"), &r);
                            }
                        });
                    self.hits.put("filter combo", &r.response);
                    if c.filter_input != before {
                        set_filter = Some(c.filter_input);
                    }
                });
                ui.label(super::reported(c.filter.map(|p| format!("at {p}"))))
                    .on_hover_text("as the filter wheel reports it");
                ui.end_row();

                ui.label("Pixel size");
                ui.label(super::reported(c.pixel_um.map(|um| format!("{um:.4} µm"))));
                ui.label(super::reported(
                    c.image_size.map(|(w, h)| format!("{w} × {h} px")),
                ));
                ui.end_row();
            });
        if let Some(ms) = set_exposure {
            self.set_exposure_ms(ms);
        }
        if let Some(p) = set_filter {
            self.set_filter(p);
        }
    }

    fn acquisition(&mut self, ui: &mut egui::Ui, connected: bool) {
        let (acquiring, stack) = self.session.as_ref().map_or((false, None), |s| {
            (s.live.is_acquiring(), s.live.status.lock().stack)
        });
        ui.horizontal(|ui| {
            let r = ui.add_enabled(
                connected && !acquiring,
                egui::Button::new(RichText::new("📷 Snapshot").strong()),
            );
            self.hits.put("snapshot", &r);
            if r.clicked() {
                self.take_snapshot();
            }
            let r = ui.add_enabled(self.snap.is_some(), egui::Button::new("Save TIFF…"));
            self.hits.put("save snapshot", &r);
            if r.clicked() {
                self.open_picker(Purpose::SaveSnapshot);
            }
            match &self.snap {
                Some(s) => ui.label(
                    RichText::new(format!(
                        "snapshot {} · {}",
                        s.number,
                        s.pixel_um
                            .map_or("no pixel size".into(), |um| format!("{um:.4} µm/px"))
                    ))
                    .weak(),
                ),
                None => ui.label(RichText::new("no snapshot yet").weak()),
            };
        });
        ui.horizontal(|ui| {
            ui.label("Z series");
            let c = &mut self.model.camera;
            ui.add(
                egui::DragValue::new(&mut c.stack_planes)
                    .range(1..=2000)
                    .suffix(" planes"),
            );
            ui.add(
                egui::DragValue::new(&mut c.stack_spacing_um)
                    .speed(0.1)
                    .range(0.01..=1000.0)
                    .max_decimals(3)
                    .suffix(" µm"),
            );
            if let (true, Some((done, total))) = (acquiring, stack) {
                ui.label(RichText::new(format!("{done} / {total}")).monospace());
                let r = ui.button("Stop");
                self.hits.put("stack stop", &r);
                if r.clicked() {
                    self.stop_stack();
                }
            } else {
                let r = ui
                    .add_enabled(
                        connected && !acquiring,
                        egui::Button::new("Acquire TIFF stack…"),
                    )
                    .on_hover_text(
                        "One snapshot per plane from the current Z upwards, saved as one TIFF \
                         stack with the pixel size and plane spacing; the stage returns after",
                    );
                self.hits.put("acquire stack", &r);
                if r.clicked() {
                    self.open_picker(Purpose::SaveStack);
                }
            }
        });
        if let Some(p) = &self.model.camera.last_saved {
            ui.label(
                RichText::new(format!("saved: {}", p.display()))
                    .weak()
                    .small(),
            );
        }
    }
}
