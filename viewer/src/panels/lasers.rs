//! Lasers 1–4: the level the instrument reports (read on connect, read back
//! after every set, and from its level events, e.g. when a workflow sets
//! one), a slider that follows it unless being moved, preview, all off.

use eframe::egui::{self, RichText};

use crate::app::Viewer;

/// The lines of the instrument's four lasers.
const LINES: [&str; 4] = ["405 nm", "488 nm", "561 nm", "640 nm"];

impl Viewer {
    pub(crate) fn lasers_panel(&mut self, ui: &mut egui::Ui) {
        let connected = self.model.connected();
        ui.horizontal(|ui| {
            ui.heading("Lasers");
            if let Some(n) = super::stale_note(connected) {
                ui.label(n);
            }
        });
        ui.add_enabled_ui(connected, |ui| self.lasers_body(ui));
    }

    fn lasers_body(&mut self, ui: &mut egui::Ui) {
        let mut set = Vec::new();
        let mut preview = Vec::new();
        egui::Grid::new("lasers")
            .num_columns(5)
            .spacing([6.0, 4.0])
            .show(ui, |ui| {
                ui.label("");
                ui.label("level");
                ui.label("");
                ui.label("");
                ui.label(RichText::new("instrument").weak());
                ui.end_row();
                for (i, name) in LINES.iter().enumerate() {
                    let laser = i as u8 + 1;
                    let l = &mut self.model.lasers[i];
                    ui.label(format!("{laser}  {name}"));
                    let r = ui.add(
                        egui::Slider::new(&mut l.input, 0.0..=100.0)
                            .suffix(" %")
                            .max_decimals(2),
                    );
                    self.hits.put(format!("laser {laser} slider"), &r);
                    if r.changed() {
                        l.editing = true;
                    }
                    let b = ui.small_button("Set");
                    self.hits.put(format!("laser {laser} set"), &b);
                    if b.clicked() || (r.drag_stopped() && l.editing) {
                        set.push((laser, l.input));
                    }
                    let mut on = l.preview.unwrap_or(false);
                    let c = ui
                        .checkbox(&mut on, "preview")
                        .on_hover_text(match l.preview {
                            Some(_) => "as last set (the instrument has no query for it)",
                            None => "not known: not set since connecting",
                        });
                    self.hits.put(format!("laser {laser} preview"), &c);
                    if c.changed() {
                        preview.push((laser, on));
                    }
                    let mut t = super::reported(l.level.map(|v| format!("{v:.2} %")));
                    if l.editing {
                        t = t.color(super::PENDING);
                    }
                    ui.label(t).on_hover_text(if l.editing {
                        "the slider is not set yet: Set sends it"
                    } else {
                        "as the instrument reports it"
                    });
                    ui.end_row();
                }
            });
        for (laser, v) in set {
            self.set_laser(laser, v);
        }
        for (laser, on) in preview {
            self.set_laser_preview(laser, on);
        }
        let r = ui.button("All lasers off");
        self.hits.put("all lasers off", &r);
        if r.clicked() {
            self.all_lasers_off();
        }
    }
}
