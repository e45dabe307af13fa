//! The workflow: open a file (file dialog) or use the z-stack editor's,
//! Start (checked against the soft limits before anything is sent), Stop,
//! progress with the time left, and the last run's summary.

use std::time::Instant;

use eframe::egui::{self, RichText};

use crate::app::{Viewer, PROGRESS_FILL};
use crate::file_picker::Purpose;

impl Viewer {
    pub(crate) fn workflow_panel(&mut self, ui: &mut egui::Ui) {
        ui.heading("Workflow");
        ui.horizontal(|ui| {
            let r = ui.button("Open…");
            self.hits.put("open workflow", &r);
            if r.clicked() {
                self.open_picker(Purpose::OpenWorkflow);
            }
            let wf = &self.model.workflow;
            ui.label(
                RichText::new(match (&wf.loaded, wf.planes) {
                    (Some(n), Some(p)) => format!("{n} · {p} planes"),
                    (Some(n), None) => n.clone(),
                    _ => "no workflow loaded".into(),
                })
                .strong(),
            )
            .on_hover_text(wf.source.clone().unwrap_or_default());
        });
        let running = self
            .session
            .as_ref()
            .and_then(|s| s.run.as_ref())
            .is_some_and(|r| !r.is_finished());
        let connected = self.model.connected();
        ui.horizontal(|ui| {
            let can_start = connected && !running && self.model.workflow_file.is_some();
            let r = ui.add_enabled(can_start, egui::Button::new("▶ Start"));
            self.hits.put("workflow start", &r);
            if r.clicked() {
                self.start_workflow();
            }
            let r = ui.add_enabled(running, egui::Button::new("■ Stop"));
            self.hits.put("workflow stop", &r);
            if r.clicked() {
                self.stop_workflow();
            }
            ui.label(&self.model.workflow.status);
        });
        let wf = &self.model.workflow;
        let (frac, text) = match wf.progress {
            Some((c, t)) if t > 0 => (
                (c as f32 / t as f32).clamp(0.0, 1.0),
                format!("{c} / {t} planes"),
            ),
            _ => (0.0, "—".to_string()),
        };
        let r = ui.add(
            egui::ProgressBar::new(frac)
                .fill(PROGRESS_FILL)
                .desired_height(22.0)
                .text(text),
        );
        self.layout.progress = Some(r.rect);
        if let Some(t0) = wf.started_at {
            let now = Instant::now();
            let left = wf
                .seconds_left(now)
                .map_or("estimating the time left…".into(), |s| {
                    format!("about {} left", duration_text(s))
                });
            ui.label(
                RichText::new(format!(
                    "{} elapsed · {left}",
                    duration_text(now.duration_since(t0).as_secs_f64())
                ))
                .monospace(),
            );
        }
        if let Some(s) = &wf.summary {
            ui.label(
                RichText::new(format!(
                    "last run: {} of {} images, {} errors, {:.2} s{}",
                    s.images_acquired,
                    s.images_expected,
                    s.errors,
                    s.duration.as_secs_f64(),
                    if s.stopped { " (stopped)" } else { "" }
                ))
                .weak(),
            );
        }
    }
}

/// "42 s", "3 min 05 s", "1 h 02 min".
pub fn duration_text(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, s / 60 % 60),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(super::duration_text(4.4), "4 s");
        assert_eq!(super::duration_text(185.0), "3 min 05 s");
        assert_eq!(super::duration_text(3720.0), "1 h 02 min");
    }
}
