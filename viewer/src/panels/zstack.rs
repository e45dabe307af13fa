//! A small z-stack editor: planes, spacing, exposure, one laser, live view,
//! where the instrument saves. It builds the workflow with the library's
//! `WorkflowBuilder` (which validates every value) from the current stage
//! position, and checks it against the soft limits of the loaded settings
//! before it can be started or saved.

use eframe::egui::{self, RichText};
use flamingo_client::devices::{SoftLimits, Workflow, WorkflowBuilder};
use flamingo_client::Axis;

use crate::app::Viewer;
use crate::file_picker::Purpose;
use crate::model::Model;

/// The editor's fields.
#[derive(Clone, Debug)]
pub struct ZStackEditor {
    /// Planes.
    pub planes: u32,
    /// Their spacing in µm.
    pub spacing_um: f64,
    /// Exposure in ms.
    pub exposure_ms: f64,
    /// The laser (1–4) and its level, or none.
    pub laser: Option<u8>,
    /// The laser's level in percent.
    pub laser_percent: f64,
    /// Images also sent to live view.
    pub live_view: bool,
    /// Drive (mount point) where the instrument saves; empty: its default.
    pub drive: String,
    /// Directory on it.
    pub directory: String,
    /// Sample name.
    pub sample: String,
}

impl Default for ZStackEditor {
    fn default() -> Self {
        ZStackEditor {
            planes: 50,
            spacing_um: 2.0,
            exposure_ms: 10.0,
            laser: Some(2),
            laser_percent: 5.0,
            live_view: true,
            drive: String::new(),
            directory: String::new(),
            sample: String::new(),
        }
    }
}

impl ZStackEditor {
    /// Builds the workflow from the current position and checks it against
    /// the soft limits of the settings loaded (at once, on the UI thread: no
    /// instrument call); returns it and a one-line summary.
    pub fn build(&self, m: &Model) -> Result<(Workflow, String), String> {
        let start = m
            .position
            .ok_or("the stage position is not known yet: connect first")?;
        let us = (self.exposure_ms * 1000.0).round();
        let us = if us.is_finite() && us >= 0.0 && us <= f64::from(u32::MAX) {
            us as u32
        } else {
            0
        };
        let mut b = WorkflowBuilder::z_stack(start, self.planes, self.spacing_um)
            .exposure_us(us)
            .live_view(self.live_view);
        if let Some(l) = self.laser {
            b = b.laser(l, self.laser_percent);
        }
        if !self.sample.trim().is_empty() {
            b = b.sample(self.sample.trim());
        }
        if !self.drive.trim().is_empty() {
            b = b.save_to(self.drive.trim(), self.directory.trim());
        }
        let wf = b.build().map_err(|e| e.to_string())?;
        let settings = m
            .settings
            .as_ref()
            .ok_or("the scope settings are not loaded yet: the soft limits cannot be checked")?;
        SoftLimits::from_settings(settings)
            .check_workflow(&wf)
            .map_err(|e| e.to_string())?;
        let z_end = start.get(Axis::Z)
            + f64::from(self.planes.saturating_sub(1)) * self.spacing_um / 1000.0;
        Ok((
            wf,
            format!(
                "{} planes {} µm apart, z {:.4} to {:.4} mm, {} ms",
                self.planes, self.spacing_um, start.z_mm, z_end, self.exposure_ms
            ),
        ))
    }
}

impl Viewer {
    pub(crate) fn zstack_panel(&mut self, ui: &mut egui::Ui) {
        ui.heading("Z-stack editor");
        ui.label(
            RichText::new(match self.model.position {
                Some(p) => format!(
                    "starts at the current position: x {:.3}, y {:.3}, z {:.3} mm, r {:.1}°",
                    p.x_mm, p.y_mm, p.z_mm, p.r_deg
                ),
                None => "starts at the current position (not known yet)".into(),
            })
            .weak()
            .small(),
        );
        let z = &mut self.zstack;
        let mut changed = false;
        egui::Grid::new("zstack")
            .num_columns(2)
            .spacing([8.0, 4.0])
            .show(ui, |ui| {
                ui.label("Planes");
                let r = ui.add(egui::DragValue::new(&mut z.planes).range(1..=10_000));
                self.hits.put("zstack planes", &r);
                changed |= r.changed();
                ui.end_row();
                ui.label("Spacing");
                let r = ui.add(
                    egui::DragValue::new(&mut z.spacing_um)
                        .speed(0.1)
                        .range(0.01..=1000.0)
                        .max_decimals(3)
                        .suffix(" µm"),
                );
                self.hits.put("zstack spacing", &r);
                changed |= r.changed();
                ui.end_row();
                ui.label("Exposure");
                changed |= ui
                    .add(
                        egui::DragValue::new(&mut z.exposure_ms)
                            .speed(0.1)
                            .range(0.001..=10_000.0)
                            .max_decimals(3)
                            .suffix(" ms"),
                    )
                    .changed();
                ui.end_row();
                ui.label("Laser");
                ui.horizontal(|ui| {
                    let before = z.laser;
                    egui::ComboBox::from_id_salt("zstack laser")
                        .selected_text(z.laser.map_or("none".into(), |l| format!("laser {l}")))
                        .width(80.0)
                        .show_ui(ui, |ui| {
                            ui.selectable_value(&mut z.laser, None, "none");
                            for l in 1..=4u8 {
                                ui.selectable_value(&mut z.laser, Some(l), format!("laser {l}"));
                            }
                        });
                    changed |= before != z.laser;
                    changed |= ui
                        .add_enabled(
                            z.laser.is_some(),
                            egui::DragValue::new(&mut z.laser_percent)
                                .speed(0.1)
                                .range(0.0..=100.0)
                                .suffix(" %"),
                        )
                        .changed();
                });
                ui.end_row();
                ui.label("Live view");
                changed |= ui
                    .checkbox(&mut z.live_view, "images to live view")
                    .changed();
                ui.end_row();
                ui.label("Save to");
                ui.horizontal(|ui| {
                    changed |= ui
                        .add(
                            egui::TextEdit::singleline(&mut z.drive)
                                .desired_width(90.0)
                                .hint_text("drive"),
                        )
                        .changed();
                    changed |= ui
                        .add(
                            egui::TextEdit::singleline(&mut z.directory)
                                .desired_width(90.0)
                                .hint_text("directory"),
                        )
                        .changed();
                });
                ui.end_row();
                ui.label("Sample");
                changed |= ui
                    .add(egui::TextEdit::singleline(&mut z.sample).desired_width(184.0))
                    .changed();
                ui.end_row();
            });
        if changed {
            self.model.workflow.zstack_check = None;
        }
        ui.horizontal(|ui| {
            let r = ui
                .button("Check and use")
                .on_hover_text("Build the workflow, check it against the soft limits, and make it the one Start runs");
            self.hits.put("zstack use", &r);
            if r.clicked() {
                self.use_zstack();
            }
            let r = ui.button("Save as…");
            self.hits.put("zstack save", &r);
            if r.clicked() {
                self.open_picker(Purpose::SaveWorkflow);
            }
        });
        if self.model.workflow.zstack_checking {
            ui.label(RichText::new("checking against the instrument's soft limits…").weak());
        }
        match &self.model.workflow.zstack_check {
            Some(Ok(s)) => {
                ui.label(RichText::new(format!("✔ {s}")).color(crate::app::PROGRESS_FILL));
            }
            Some(Err(e)) => {
                ui.label(RichText::new(format!("✖ {e}")).color(super::ERROR));
            }
            None => {}
        }
    }
}
