//! Developer panels, behind the top bar's toggle: library time per UI frame
//! (a line under the top bar) and per call (a table in the left panel).

use eframe::egui::{self, Color32, RichText};

use crate::app::Viewer;
use crate::timing::{us, BUDGET};

impl Viewer {
    pub(crate) fn perf_line(&self, ui: &mut egui::Ui) {
        let t = &self.timer;
        // Green while no frame spent the budget in library calls, not
        // counting time the thread waited for a CPU (see `timing`).
        let worst = if t.has_sched && t.over.iter().all(|o| o.runq + BUDGET > o.lib) {
            t.worst_net
        } else {
            t.worst_frame
        };
        let colour = if worst < BUDGET {
            Color32::from_rgb(80, 200, 100)
        } else {
            Color32::from_rgb(240, 160, 40)
        };
        ui.horizontal_wrapped(|ui| {
            ui.label(
                RichText::new(format!(
                    "library calls per UI frame: now {:.0} µs · p99 {:.0} µs · worst {:.0} µs{}",
                    us(t.last_frame),
                    us(t.quantile(0.99)),
                    us(t.worst_frame),
                    if t.has_sched {
                        format!(" ({:.0} µs without CPU waits)", us(t.worst_net))
                    } else {
                        String::new()
                    },
                ))
                .color(colour)
                .monospace(),
            );
            ui.label(
                RichText::new(format!(
                    "· ≥ 1 ms: {} of {} frames",
                    t.frames_over_budget, t.frames,
                ))
                .monospace(),
            );
            let pending = self.session.as_ref().map_or(0, |s| s.pending.len());
            let oldest = self
                .session
                .as_ref()
                .and_then(|s| s.pending.iter().map(|p| p.since).min())
                .map_or(String::new(), |t| {
                    format!(", oldest {:.1} s", t.elapsed().as_secs_f64())
                });
            ui.label(RichText::new(format!("· ops in flight: {pending}{oldest}")).monospace());
            if let Some(d) = self.image.convert_time() {
                ui.label(
                    RichText::new(format!(
                        "· display conversion {:.1} ms (off the UI thread)",
                        d.as_secs_f64() * 1e3
                    ))
                    .monospace(),
                );
            }
        });
    }

    pub(crate) fn timing_panel(&mut self, ui: &mut egui::Ui) {
        ui.heading("UI thread: library calls");
        ui.label(
            RichText::new(format!(
                "{} frames, {} calls; goal: no frame with ≥ {} µs in library calls",
                self.timer.frames,
                self.timer.calls,
                BUDGET.as_micros()
            ))
            .weak(),
        );
        let t = &self.timer;
        let preempted = t.over.iter().filter(|o| o.runq + BUDGET > o.lib).count();
        ui.label(
            RichText::new(format!(
                "frames ≥ 1 ms: {} ({} explained by waiting for a CPU) · worst net of that: {:.0} µs",
                t.frames_over_budget,
                preempted,
                us(t.worst_net)
            ))
            .weak(),
        );
        let mut rows: Vec<_> = self.timer.per_call.iter().collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.1 .1));
        egui::Grid::new("timing")
            .num_columns(3)
            .striped(true)
            .spacing([12.0, 2.0])
            .show(ui, |ui| {
                ui.label(RichText::new("call").weak());
                ui.label(RichText::new("count").weak());
                ui.label(RichText::new("longest").weak());
                ui.end_row();
                for (name, (n, worst)) in rows.into_iter().take(8) {
                    ui.label(RichText::new(*name).monospace().small());
                    ui.label(RichText::new(n.to_string()).monospace().small());
                    ui.label(
                        RichText::new(format!("{:.0} µs", us(*worst)))
                            .monospace()
                            .small(),
                    );
                    ui.end_row();
                }
            });
    }
}
