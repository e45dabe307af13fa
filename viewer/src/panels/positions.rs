//! Saved positions: a name and the four axes, kept in the user's
//! configuration directory; Go moves there (asking first if it is far).

use eframe::egui::{self, RichText};

use crate::app::Viewer;

impl Viewer {
    pub(crate) fn positions_panel(&mut self, ui: &mut egui::Ui) {
        ui.heading("Saved positions");
        let connected = self.model.connected();
        ui.horizontal(|ui| {
            let r = ui.add(
                egui::TextEdit::singleline(&mut self.model.save_name)
                    .desired_width(160.0)
                    .hint_text("name"),
            );
            self.hits.put("position name", &r);
            let enter = r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            let b = ui.add_enabled(
                self.model.position.is_some(),
                egui::Button::new("Save current"),
            );
            self.hits.put("save position", &b);
            if b.clicked() || (enter && self.model.position.is_some()) {
                let name = std::mem::take(&mut self.model.save_name);
                self.save_position(&name);
            }
        });
        if self.model.saved.is_empty() {
            ui.label(RichText::new("none saved yet").weak());
            return;
        }
        let mut go = None;
        let mut delete = None;
        egui::Grid::new("saved positions")
            .num_columns(4)
            .striped(true)
            .spacing([8.0, 2.0])
            .show(ui, |ui| {
                for (i, p) in self.model.saved.iter().enumerate() {
                    ui.label(RichText::new(&p.name).strong());
                    let q = p.position;
                    ui.label(
                        RichText::new(format!(
                            "{:.3}, {:.3}, {:.3} mm, {:.1}°",
                            q.x_mm, q.y_mm, q.z_mm, q.r_deg
                        ))
                        .monospace()
                        .small(),
                    );
                    let r = ui.add_enabled(connected, egui::Button::new("Go").small());
                    self.hits.put(format!("go to {}", p.name), &r);
                    if r.clicked() {
                        go = Some(i);
                    }
                    let r = ui.small_button("🗑").on_hover_text("Forget this position");
                    self.hits.put(format!("delete {}", p.name), &r);
                    if r.clicked() {
                        delete = Some(i);
                    }
                    ui.end_row();
                }
            });
        if let Some(i) = go {
            self.go_to_position(i);
        }
        if let Some(i) = delete {
            self.delete_position(i);
        }
    }
}
