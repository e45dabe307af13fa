//! The event log and the error strip above it.

use eframe::egui::{self, Color32, RichText};

use crate::app::Viewer;
use crate::model::LineKind;

impl Viewer {
    pub(crate) fn log_panel(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.heading("Events");
            let dropped = self.session.as_ref().map_or(0, |s| s.events.dropped());
            ui.label(
                RichText::new(format!(
                    "{} received · {} dropped by the queue (flood)",
                    self.model.events_total, dropped
                ))
                .weak(),
            );
        });
        let rows = self.model.log.len();
        let row_h = ui.text_style_height(&egui::TextStyle::Monospace);
        egui::ScrollArea::vertical()
            .stick_to_bottom(true)
            .auto_shrink([false, false])
            .show_rows(ui, row_h, rows, |ui, range| {
                for line in self.model.log.range(range) {
                    let colour = match line.kind {
                        LineKind::Event => Color32::from_gray(190),
                        LineKind::Connection => Color32::from_rgb(240, 170, 60),
                        LineKind::Action => Color32::from_rgb(130, 180, 240),
                        LineKind::Error => Color32::from_rgb(240, 100, 100),
                    };
                    let mut text = format!("{:8.3}  {}", line.t, line.text);
                    if line.repeat > 0 {
                        text.push_str(&format!("  (+{} more, last: {})", line.repeat, line.detail));
                    }
                    ui.label(RichText::new(text).monospace().color(colour));
                }
            });
    }

    pub(crate) fn error_strip(&mut self, ui: &mut egui::Ui) {
        if self.model.errors.is_empty() {
            return;
        }
        ui.horizontal(|ui| {
            ui.label(
                RichText::new(format!("⚠ {} errors", self.model.errors_total))
                    .color(Color32::from_rgb(240, 100, 100))
                    .strong(),
            );
            let r = ui.small_button("dismiss");
            self.hits.put("dismiss errors", &r);
            if r.clicked() {
                self.model.errors.clear();
            }
        });
        for e in self.model.errors.iter().rev().take(2) {
            ui.label(
                RichText::new(format!("{:8.3}  {}", e.t, e.text))
                    .color(Color32::from_rgb(240, 120, 120))
                    .small(),
            );
        }
    }
}
