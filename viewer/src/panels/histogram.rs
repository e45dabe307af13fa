//! The histogram of the frame on screen, with the display window drawn
//! over it; dragging in it moves the nearer end of the window.

use eframe::egui::{self, Color32, Stroke};

use crate::display::Histogram;

/// Height of the histogram strip, in points.
pub const HEIGHT: f32 = 54.0;

/// Draws `h` with the window `w`; returns a new window if the user dragged
/// one of its ends.
pub fn histogram_ui(
    ui: &mut egui::Ui,
    h: &Histogram,
    w: (u16, u16),
    log: bool,
) -> (egui::Response, Option<(u16, u16)>) {
    let width = ui.available_width();
    let (rect, resp) =
        ui.allocate_exact_size(egui::vec2(width, HEIGHT), egui::Sense::click_and_drag());
    let p = ui.painter_at(rect);
    p.rect_filled(rect, 2.0, Color32::from_gray(24));
    let peak = h.bins.iter().copied().max().unwrap_or(0).max(1);
    let scale = |c: u32| -> f32 {
        if log {
            ((1.0 + c as f32).ln() / (1.0 + peak as f32).ln()).clamp(0.0, 1.0)
        } else {
            c as f32 / peak as f32
        }
    };
    let n = h.bins.len().max(1) as f32;
    let bw = rect.width() / n;
    for (i, &c) in h.bins.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let x0 = rect.left() + i as f32 * bw;
        let top = rect.bottom() - scale(c) * (rect.height() - 2.0);
        p.rect_filled(
            egui::Rect::from_min_max(
                egui::pos2(x0, top),
                egui::pos2(x0 + bw.max(1.0), rect.bottom()),
            ),
            0.0,
            Color32::from_gray(170),
        );
    }
    let span = f32::from(h.max.saturating_sub(h.min)).max(1.0);
    let x_of = |v: u16| rect.left() + (f32::from(v) - f32::from(h.min)) / span * rect.width();
    let v_of = |x: f32| {
        let v = f32::from(h.min) + (x - rect.left()) / rect.width() * span;
        v.round().clamp(0.0, 65535.0) as u16
    };
    let (lo, hi) = (x_of(w.0), x_of(w.1));
    let line = Stroke::new(1.5, Color32::from_rgb(90, 170, 250));
    // The window's mapping: black at its low end rising to white at its high end.
    p.line_segment(
        [
            egui::pos2(lo.clamp(rect.left(), rect.right()), rect.bottom()),
            egui::pos2(hi.clamp(rect.left(), rect.right()), rect.top()),
        ],
        line,
    );
    for x in [lo, hi] {
        if (rect.left()..=rect.right()).contains(&x) {
            p.line_segment(
                [egui::pos2(x, rect.top()), egui::pos2(x, rect.bottom())],
                line,
            );
        }
    }
    let mut out = None;
    if let Some(pos) = resp.interact_pointer_pos() {
        if resp.dragged() || resp.clicked() {
            let v = v_of(pos.x);
            let (mut a, mut b) = w;
            if (pos.x - lo).abs() <= (pos.x - hi).abs() {
                a = v.min(b.saturating_sub(1));
            } else {
                b = v.max(a.saturating_add(1));
            }
            if (a, b) != w {
                out = Some((a, b));
            }
        }
    }
    (resp, out)
}
