//! The image: live view, a snapshot or a stack plane, with contrast (the
//! frame's range, auto from the histogram, or min/max), the histogram, zoom
//! (wheel, Fit, 1:1) and pan (drag), the pixel value and position under the
//! cursor, a scale bar from the pixel size, and keyboard jogging.
//!
//! Keyboard rule: the arrow keys and Page Up/Down move the stage only while
//! the image has the keyboard focus — click the image to give it the focus
//! (a blue frame and a banner show it); Esc, or a click anywhere else,
//! takes it away. Text fields never jog the stage.

use std::time::Duration;

use eframe::egui::{self, Color32, RichText, Stroke, TextureHandle, TextureOptions};
use flamingo_client::live::Frame;
use flamingo_client::Axis;

use crate::app::Viewer;
use crate::display::{Contrast, DisplayFrame, Histogram, Source, AUTO_SATURATED};

/// Blue: the keyboard focus.
const FOCUS: Color32 = Color32::from_rgb(70, 150, 255);
/// Zoom limits: screen points per image pixel.
const MAX_SCALE: f32 = 64.0;

/// The contrast controls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The frame's own display range.
    Frame,
    /// Auto from each frame's histogram.
    Auto,
    /// The min/max fields.
    Manual,
}

/// The frame on screen.
pub struct Shown {
    /// The frame.
    pub frame: Frame,
    /// Where it came from.
    pub source: Source,
    /// The window used.
    pub window: (u16, u16),
    /// Its histogram.
    pub histogram: Histogram,
    /// Conversion time (on the display thread).
    pub took: Duration,
}

/// The image's view state.
pub struct ImageView {
    texture: Option<TextureHandle>,
    /// The frame on screen.
    pub shown: Option<Shown>,
    /// Screen points per image pixel; `None`: fit the view.
    pub scale: Option<f32>,
    /// The image position (pixels) at the view's centre; `None`: the middle.
    pub center: Option<egui::Vec2>,
    /// Contrast mode.
    pub mode: Mode,
    /// The window of manual contrast (follows the shown window otherwise).
    pub min: u16,
    /// See `min`.
    pub max: u16,
    /// Percent saturated at each end in auto mode.
    pub saturated: f64,
    /// The histogram on a log scale.
    pub log_hist: bool,
    /// The pixel under the cursor: x, y, value.
    pub hover: Option<(u32, u32, u16)>,
    /// The view had the keyboard focus in the last frame.
    pub focused: bool,
}

impl Default for ImageView {
    fn default() -> Self {
        ImageView {
            texture: None,
            shown: None,
            scale: None,
            center: None,
            mode: Mode::Frame,
            min: 0,
            max: 65535,
            saturated: AUTO_SATURATED,
            log_hist: true,
            hover: None,
            focused: false,
        }
    }
}

impl ImageView {
    /// Puts a converted frame on screen.
    pub fn show(&mut self, ctx: &egui::Context, f: DisplayFrame) {
        match &mut self.texture {
            Some(t) => t.set(f.image, TextureOptions::NEAREST),
            None => {
                self.texture = Some(ctx.load_texture("image", f.image, TextureOptions::NEAREST))
            }
        }
        if self.mode != Mode::Manual {
            (self.min, self.max) = f.window;
        }
        self.shown = Some(Shown {
            frame: f.frame,
            source: f.source,
            window: f.window,
            histogram: f.histogram,
            took: f.took,
        });
    }

    /// The contrast the controls ask for.
    pub fn contrast(&self) -> Contrast {
        match self.mode {
            Mode::Frame => Contrast::Frame,
            Mode::Auto => Contrast::Auto {
                saturated: self.saturated,
            },
            Mode::Manual => Contrast::Manual {
                min: self.min,
                max: self.max.max(self.min.saturating_add(1)),
            },
        }
    }

    /// The last conversion's time, if a frame is shown.
    pub fn convert_time(&self) -> Option<Duration> {
        self.shown.as_ref().map(|s| s.took)
    }

    /// The image position (pixels, fractional) under a screen point.
    fn to_image(&self, view: egui::Rect, fw: f32, fh: f32, p: egui::Pos2) -> egui::Vec2 {
        let (scale, center) = self.geometry(view, fw, fh);
        center + (p - view.center()) / scale
    }

    /// Scale and centre in effect for a view.
    fn geometry(&self, view: egui::Rect, fw: f32, fh: f32) -> (f32, egui::Vec2) {
        let fit = (view.width() / fw).min(view.height() / fh).max(1e-3);
        (
            self.scale.unwrap_or(fit),
            self.center.unwrap_or(egui::vec2(fw / 2.0, fh / 2.0)),
        )
    }
}

impl Viewer {
    pub(crate) fn image_panel(&mut self, ui: &mut egui::Ui) {
        self.image_toolbar(ui);
        self.image_info(ui);
        if let Some(s) = &self.image.shown {
            let (r, w) =
                super::histogram::histogram_ui(ui, &s.histogram, s.window, self.image.log_hist);
            self.hits.put("histogram", &r);
            if let Some((a, b)) = w {
                self.image.mode = Mode::Manual;
                (self.image.min, self.image.max) = (a, b);
            }
        }
        let status_h = ui.text_style_height(&egui::TextStyle::Monospace) + 6.0;
        let avail = ui.available_size();
        let size = egui::vec2(avail.x, (avail.y - status_h).max(64.0));
        let (rect, resp) = ui.allocate_exact_size(size, egui::Sense::click_and_drag());
        self.hits.put("image", &resp);
        self.image_view(ui, rect, &resp);
        self.image_status(ui);
        let c = self.image.contrast();
        if c != self.display.contrast() {
            self.display.set_contrast(c);
        }
    }

    fn image_toolbar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal_wrapped(|ui| {
            ui.heading("Image");
            if let Some(s) = &self.session {
                let mut on = s.live.is_on();
                let r = ui.checkbox(&mut on, "live");
                self.hits.put("live", &r);
                if r.changed() {
                    s.live.set_on(on);
                }
            }
            ui.separator();
            ui.label("contrast");
            let r = egui::ComboBox::from_id_salt("contrast mode")
                .selected_text(match self.image.mode {
                    Mode::Frame => "frame's range",
                    Mode::Auto => "auto",
                    Mode::Manual => "min / max",
                })
                .width(100.0)
                .show_ui(ui, |ui| {
                    let r = ui.selectable_value(&mut self.image.mode, Mode::Frame, "frame's range");
                    self.hits.put("contrast frame", &r);
                    let r = ui
                        .selectable_value(&mut self.image.mode, Mode::Auto, "auto")
                        .on_hover_text(
                            "each frame's histogram, a few pixels saturated at each end",
                        );
                    self.hits.put("contrast auto mode", &r);
                    let r = ui.selectable_value(&mut self.image.mode, Mode::Manual, "min / max");
                    self.hits.put("contrast manual", &r);
                });
            self.hits.put("contrast mode", &r.response);
            let manual = self.image.mode == Mode::Manual;
            let r = ui.add_enabled(
                manual,
                egui::DragValue::new(&mut self.image.min)
                    .speed(10.0)
                    .prefix("min "),
            );
            self.hits.put("contrast min", &r);
            let r = ui.add_enabled(
                manual,
                egui::DragValue::new(&mut self.image.max)
                    .speed(10.0)
                    .prefix("max "),
            );
            self.hits.put("contrast max", &r);
            if self.image.mode == Mode::Auto {
                ui.add(
                    egui::DragValue::new(&mut self.image.saturated)
                        .speed(0.05)
                        .range(0.0..=10.0)
                        .suffix(" % sat."),
                );
            }
            let h = self
                .image
                .shown
                .as_ref()
                .map(|s| (s.histogram.auto, (s.histogram.min, s.histogram.max)));
            let r = ui
                .add_enabled(h.is_some(), egui::Button::new("Auto"))
                .on_hover_text("Set min/max from this frame's histogram (0.35 % saturated)");
            self.hits.put("contrast auto", &r);
            if let (true, Some((auto, _))) = (r.clicked(), h) {
                self.image.mode = Mode::Manual;
                (self.image.min, self.image.max) = auto;
            }
            let r = ui
                .add_enabled(h.is_some(), egui::Button::new("Min–max"))
                .on_hover_text("Set min/max to this frame's darkest and brightest pixel");
            self.hits.put("contrast minmax", &r);
            if let (true, Some((_, mm))) = (r.clicked(), h) {
                self.image.mode = Mode::Manual;
                (self.image.min, self.image.max) = mm;
            }
            ui.checkbox(&mut self.image.log_hist, "log");
            ui.separator();
            let r = ui.button("Fit");
            self.hits.put("zoom fit", &r);
            if r.clicked() {
                self.image.scale = None;
                self.image.center = None;
            }
            let r = ui.button("1:1");
            self.hits.put("zoom 1:1", &r);
            if r.clicked() {
                self.image.scale = Some(1.0 / ui.ctx().pixels_per_point());
            }
            if let Some(s) = self.image.scale {
                ui.label(
                    RichText::new(format!("{:.0} %", s * ui.ctx().pixels_per_point() * 100.0))
                        .monospace(),
                );
            } else {
                ui.label(RichText::new("fit").monospace());
            }
        });
        if self.image.max <= self.image.min {
            self.image.max = self.image.min.saturating_add(1);
        }
    }

    fn image_info(&mut self, ui: &mut egui::Ui) {
        let status = self
            .session
            .as_ref()
            .map(|s| s.live.status.lock().clone())
            .unwrap_or_default();
        let shown_fps = if self.shown_at.len() >= 2 {
            let span = self.shown_at[self.shown_at.len() - 1]
                .duration_since(self.shown_at[0])
                .as_secs_f64();
            (self.shown_at.len() - 1) as f64 / span.max(1e-3)
        } else {
            0.0
        };
        ui.horizontal_wrapped(|ui| {
            let text = match &self.image.shown {
                Some(s) => format!(
                    "{} #{} · {} × {} px · display {}..{} · mean {:.0}",
                    match s.source {
                        Source::Live => "live frame".to_string(),
                        Source::Snapshot(n) => format!("SNAPSHOT {n} · frame"),
                        Source::StackPlane(n) => format!("stack plane {n} · frame"),
                    },
                    s.frame.frame_number(),
                    s.frame.width(),
                    s.frame.height(),
                    s.window.0,
                    s.window.1,
                    s.histogram.mean
                ),
                None => "no frame yet".into(),
            };
            ui.label(RichText::new(text).monospace());
            ui.label(
                RichText::new(format!(
                    "· {:.1} fps received · {:.1} fps shown · {} frames · {} dropped · live: {}",
                    status.fps, shown_fps, status.frames_total, status.dropped_total, status.state
                ))
                .monospace()
                .weak(),
            );
            if status.stats.bad_headers > 0 || status.stats.reconnects > 0 {
                ui.label(
                    RichText::new(format!(
                        "· {} bad headers · {} live reconnects",
                        status.stats.bad_headers, status.stats.reconnects
                    ))
                    .monospace(),
                );
            }
        });
        if let Some(e) = &status.error {
            ui.label(RichText::new(e).color(super::ERROR));
        }
    }

    fn image_view(&mut self, ui: &mut egui::Ui, rect: egui::Rect, resp: &egui::Response) {
        let painter = ui.painter_at(rect);
        painter.rect_filled(rect, 0.0, Color32::from_gray(12));
        if resp.clicked() || resp.drag_started() {
            resp.request_focus();
        }
        let focused = resp.has_focus();
        if focused {
            ui.memory_mut(|m| {
                m.set_focus_lock_filter(
                    resp.id,
                    egui::EventFilter {
                        horizontal_arrows: true,
                        vertical_arrows: true,
                        tab: false,
                        escape: false,
                    },
                )
            });
        }
        self.image.focused = focused;
        self.layout.image = None;
        self.image.hover = None;
        let (tex_id, frame) = match (&self.image.texture, &self.image.shown) {
            (Some(t), Some(s)) => (t.id(), s.frame.clone()),
            _ => {
                painter.text(
                    rect.center(),
                    egui::Align2::CENTER_CENTER,
                    "no image",
                    egui::FontId::proportional(16.0),
                    Color32::GRAY,
                );
                self.keyboard_jog(ui, resp, focused);
                return;
            }
        };
        let (fw, fh) = (frame.width() as f32, frame.height() as f32);
        // Zoom about the cursor (wheel, or pinch / ctrl+wheel), pan by dragging.
        if resp.hovered() {
            let (wheel, pinch) = ui.input(|i| (i.smooth_scroll_delta.y, i.zoom_delta()));
            let factor = (wheel / 200.0).exp() * pinch;
            if (factor - 1.0).abs() > 1e-4 {
                let (scale, center) = self.image.geometry(rect, fw, fh);
                let fit = (rect.width() / fw).min(rect.height() / fh);
                let new = (scale * factor).clamp((fit * 0.5).min(1.0), MAX_SCALE);
                if let Some(p) = resp.hover_pos() {
                    let at = center + (p - rect.center()) / scale;
                    self.image.center = Some(at - (p - rect.center()) / new);
                }
                self.image.scale = Some(new);
            }
        }
        if resp.dragged() {
            let (scale, center) = self.image.geometry(rect, fw, fh);
            self.image.center = Some(center - resp.drag_delta() / scale);
        }
        if resp.double_clicked() {
            self.image.scale = None;
            self.image.center = None;
        }
        let (scale, center) = self.image.geometry(rect, fw, fh);
        let img =
            egui::Rect::from_min_size(rect.center() - center * scale, egui::vec2(fw, fh) * scale);
        painter.image(
            tex_id,
            img,
            egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0)),
            Color32::WHITE,
        );
        let visible = img.intersect(rect);
        if visible.is_positive() {
            self.layout.image = Some(visible);
        }
        // The pixel under the cursor.
        if let Some(p) = resp.hover_pos() {
            let at = self.image.to_image(rect, fw, fh, p);
            if at.x >= 0.0 && at.y >= 0.0 && at.x < fw && at.y < fh {
                let (x, y) = (at.x as u32, at.y as u32);
                let v = self.timer.time("frame.pixel", || frame.pixel(x, y));
                self.image.hover = Some((x, y, v));
            }
        }
        // Scale bar.
        if let Some(um) = self.model.camera.pixel_um {
            scale_bar(&painter, rect, um / f64::from(scale));
        }
        if focused {
            painter.rect_stroke(
                rect.shrink(1.0),
                0.0,
                Stroke::new(2.0, FOCUS),
                egui::StrokeKind::Inside,
            );
            let banner =
                "Keyboard jogs the stage: Left/Right X · Up/Down Y · PgUp PgDn Z · Shift ×10 · Esc releases";
            let galley = painter.layout_no_wrap(
                banner.into(),
                egui::FontId::proportional(13.0),
                Color32::WHITE,
            );
            let r = egui::Rect::from_min_size(
                rect.left_top() + egui::vec2(6.0, 6.0),
                galley.size() + egui::vec2(10.0, 6.0),
            );
            painter.rect_filled(r, 3.0, FOCUS.gamma_multiply(0.85));
            painter.galley(r.min + egui::vec2(5.0, 3.0), galley, Color32::WHITE);
        }
        self.keyboard_jog(ui, resp, focused);
    }

    /// Arrow keys and Page Up/Down jog the stage while the image has the
    /// keyboard focus; Esc gives the focus up.
    fn keyboard_jog(&mut self, ui: &mut egui::Ui, resp: &egui::Response, focused: bool) {
        if !focused {
            return;
        }
        use egui::Key;
        let (keys, shift, esc) = ui.input(|i| {
            let mut keys = Vec::new();
            for (k, axis, dir) in [
                (Key::ArrowLeft, Axis::X, -1.0),
                (Key::ArrowRight, Axis::X, 1.0),
                (Key::ArrowUp, Axis::Y, 1.0),
                (Key::ArrowDown, Axis::Y, -1.0),
                (Key::PageUp, Axis::Z, 1.0),
                (Key::PageDown, Axis::Z, -1.0),
            ] {
                let n = i
                    .events
                    .iter()
                    .filter(
                        |e| matches!(e, egui::Event::Key { key, pressed: true, .. } if *key == k),
                    )
                    .count();
                for _ in 0..n {
                    keys.push((axis, dir));
                }
            }
            (keys, i.modifiers.shift, i.key_pressed(Key::Escape))
        });
        if esc {
            resp.surrender_focus();
            return;
        }
        if !self.model.connected() || self.model.confirm.is_some() {
            return;
        }
        let times = if shift { 10.0 } else { 1.0 };
        for (axis, dir) in keys {
            self.jog(axis, dir * times);
        }
    }

    fn image_status(&mut self, ui: &mut egui::Ui) {
        let um = self.model.camera.pixel_um;
        let text = match self.image.hover {
            Some((x, y, v)) => match um {
                Some(um) => format!(
                    "x {x}, y {y} px · {:.2}, {:.2} µm · value {v}",
                    f64::from(x) * um,
                    f64::from(y) * um
                ),
                None => format!("x {x}, y {y} px · value {v}"),
            },
            None => "point at the image for the pixel value".into(),
        };
        ui.horizontal(|ui| {
            ui.label(RichText::new(text).monospace());
            if !self.image.focused {
                ui.label(
                    RichText::new("· click the image to jog the stage with the keyboard")
                        .weak()
                        .small(),
                );
            }
        });
    }
}

/// A scale bar in the bottom-left corner of `view`: a round length of about
/// 120 points, labelled.
fn scale_bar(p: &egui::Painter, view: egui::Rect, um_per_point: f64) {
    if !(um_per_point.is_finite() && um_per_point > 0.0) {
        return;
    }
    let len_um = nice_length(120.0 * um_per_point);
    let len = (len_um / um_per_point) as f32;
    let left = view.left() + 16.0;
    let y = view.bottom() - 16.0;
    let bar = egui::Rect::from_min_max(egui::pos2(left, y - 4.0), egui::pos2(left + len, y + 1.0));
    p.rect_filled(bar.expand(1.5), 1.0, Color32::from_black_alpha(200));
    p.rect_filled(bar, 0.0, Color32::WHITE);
    let label = if len_um >= 1000.0 {
        format!("{} mm", len_um / 1000.0)
    } else {
        format!("{len_um} µm")
    };
    let g = p.layout_no_wrap(label, egui::FontId::proportional(13.0), Color32::WHITE);
    let at = egui::pos2(left + len / 2.0 - g.size().x / 2.0, y - 8.0 - g.size().y);
    p.rect_filled(
        egui::Rect::from_min_size(at, g.size()).expand(2.0),
        2.0,
        Color32::from_black_alpha(160),
    );
    p.galley(at, g, Color32::WHITE);
}

/// The largest 1, 2 or 5 × 10ⁿ not above `v`.
pub fn nice_length(v: f64) -> f64 {
    let e = v.log10().floor();
    let base = 10f64.powf(e);
    let m = v / base;
    let n = if m >= 5.0 {
        5.0
    } else if m >= 2.0 {
        2.0
    } else {
        1.0
    };
    // Exact decimal values (0.1, 0.2, 0.5...) print without noise.
    let x = n * base;
    if e < 0.0 {
        let d = 10f64.powi((-e) as i32);
        (n * base * d).round() / d
    } else {
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_bar_lengths_are_round() {
        assert_eq!(nice_length(126.0), 100.0);
        assert_eq!(nice_length(260.0), 200.0);
        assert_eq!(nice_length(7.3), 5.0);
        assert_eq!(nice_length(0.37), 0.2);
    }

    #[test]
    fn zoom_geometry_maps_the_view_centre_to_the_image_centre() {
        let v = ImageView::default();
        let view = egui::Rect::from_min_size(egui::pos2(0.0, 0.0), egui::vec2(400.0, 200.0));
        // A 100 x 100 image fits at 2 points per pixel.
        let (s, c) = v.geometry(view, 100.0, 100.0);
        assert_eq!((s, c), (2.0, egui::vec2(50.0, 50.0)));
        let at = v.to_image(view, 100.0, 100.0, egui::pos2(210.0, 100.0));
        assert_eq!(at, egui::vec2(55.0, 50.0));
    }
}
