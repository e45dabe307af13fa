//! The confirmation of a far move or of homing every axis: a modal dialog
//! (the rest of the window, keyboard jogging included, waits for it).

use eframe::egui::{self, RichText};

use crate::app::Viewer;
use crate::model::Confirm;

impl Viewer {
    pub(crate) fn confirm_dialog(&mut self, ctx: &egui::Context) {
        let Some(c) = self.model.confirm.clone() else {
            return;
        };
        let (title, text, yes) = match &c {
            Confirm::Home => (
                "Home the stage?",
                "All four axes (X, Y, Z and R) move to their home positions at once.".to_string(),
                "Yes, home",
            ),
            Confirm::Move { question, .. } => (
                "Move the stage?",
                format!(
                    "{question}\n(further than {} mm or {}°: the limit is set in the stage panel)",
                    self.model.prefs.confirm_mm, self.model.prefs.confirm_deg
                ),
                "Yes, move",
            ),
        };
        let mut answer = None;
        let r = egui::Modal::new(egui::Id::new("confirm")).show(ctx, |ui| {
            ui.set_max_width(420.0);
            ui.heading(title);
            ui.label(text);
            ui.add_space(6.0);
            ui.horizontal(|ui| {
                let r = ui.button(RichText::new(yes).strong());
                self.hits.put("confirm yes", &r);
                if r.clicked() {
                    answer = Some(true);
                }
                let r = ui.button("Cancel");
                self.hits.put("confirm no", &r);
                if r.clicked() {
                    answer = Some(false);
                }
            });
        });
        if answer.is_none() && r.should_close() {
            answer = Some(false);
        }
        match answer {
            Some(true) => self.confirm_yes(),
            Some(false) => self.confirm_no(),
            None => {}
        }
    }
}
