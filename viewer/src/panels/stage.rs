//! The stage: positions as reported, jog buttons and steps, move-to fields,
//! Home (confirmed), Halt, and the distance beyond which a move asks first.

use eframe::egui::{self, Color32, RichText};
use flamingo_client::Axis;

use crate::app::Viewer;
use crate::model::axis_index;

impl Viewer {
    pub(crate) fn stage_panel(&mut self, ui: &mut egui::Ui) {
        let connected = self.model.connected();
        ui.horizontal(|ui| {
            ui.heading("Stage");
            if let Some(n) = super::stale_note(connected) {
                ui.label(n);
            }
        });
        ui.add_enabled_ui(connected, |ui| self.stage_body(ui));
    }

    fn stage_body(&mut self, ui: &mut egui::Ui) {
        let pos = self.model.position;
        let mut actions: Vec<(Axis, Option<f64>, f64)> = Vec::new();
        egui::Grid::new("stage")
            .num_columns(6)
            .spacing([6.0, 4.0])
            .show(ui, |ui| {
                ui.label("");
                ui.label("position");
                ui.label("jog");
                ui.label("step");
                ui.label("move to");
                ui.end_row();
                for axis in Axis::ALL {
                    let i = axis_index(axis);
                    let moving = self.model.moving[i];
                    let name = axis.name();
                    ui.label(RichText::new(name.to_uppercase()).strong());
                    let p = pos.map_or("—".to_string(), |p| {
                        format!("{:9.3} {}", p.get(axis), axis.unit())
                    });
                    let mut t = RichText::new(p).monospace();
                    if moving {
                        t = t.color(Color32::from_rgb(240, 200, 80));
                    }
                    ui.label(t)
                        .on_hover_text(match self.model.soft_limits(axis) {
                            Some((lo, hi)) => {
                                format!("soft limits {lo:.3} .. {hi:.3} {}", axis.unit())
                            }
                            None => "soft limits not known yet".into(),
                        });
                    ui.horizontal(|ui| {
                        let r = ui.small_button("◀");
                        self.hits.put(format!("jog {name} -"), &r);
                        if r.clicked() {
                            actions.push((axis, None, -1.0));
                        }
                        let r = ui.small_button("▶");
                        self.hits.put(format!("jog {name} +"), &r);
                        if r.clicked() {
                            actions.push((axis, None, 1.0));
                        }
                    });
                    ui.add(
                        egui::DragValue::new(&mut self.model.jog_step[i])
                            .speed(0.01)
                            .range(0.001..=100.0)
                            .max_decimals(3),
                    );
                    ui.horizontal(|ui| {
                        let r = ui.add(
                            egui::TextEdit::singleline(&mut self.model.move_to[i])
                                .desired_width(64.0)
                                .hint_text("target"),
                        );
                        self.hits.put(format!("move {name} field"), &r);
                        let r = ui.small_button("Go");
                        self.hits.put(format!("move {name} go"), &r);
                        if r.clicked() {
                            match self.model.move_to[i].trim().parse::<f64>() {
                                Ok(v) => actions.push((axis, Some(v), 0.0)),
                                Err(_) => self.model.error(format!(
                                    "{axis}: {:?} is not a number",
                                    self.model.move_to[i]
                                )),
                            }
                        }
                    });
                    ui.end_row();
                }
            });
        ui.horizontal(|ui| {
            // Homing moves all four axes at once: it asks first.
            let r = ui.button("Home…");
            self.hits.put("home", &r);
            if r.clicked() {
                self.ask_home();
            }
            let r = ui.button(RichText::new("Halt").color(Color32::from_rgb(240, 90, 90)));
            self.hits.put("halt", &r);
            if r.clicked() {
                self.halt();
            }
            if ui.button("Refresh").clicked() {
                self.query_positions();
            }
            ui.label(RichText::new(format!("{} stop events", self.model.motion_stops)).weak());
        });
        ui.horizontal(|ui| {
            ui.label(RichText::new("ask before moves over").weak());
            let a = ui.add(
                egui::DragValue::new(&mut self.model.prefs.confirm_mm)
                    .speed(0.05)
                    .range(0.001..=1000.0)
                    .suffix(" mm"),
            );
            ui.label(RichText::new("or").weak());
            let b = ui.add(
                egui::DragValue::new(&mut self.model.prefs.confirm_deg)
                    .speed(0.5)
                    .range(0.01..=360.0)
                    .suffix("°"),
            );
            if (a.drag_stopped() || a.lost_focus()) || (b.drag_stopped() || b.lost_focus()) {
                self.write_prefs();
            }
        });
        for (axis, to, steps) in actions {
            match to {
                Some(t) => self.move_axis(axis, t),
                None => self.jog(axis, steps),
            }
        }
    }
}
