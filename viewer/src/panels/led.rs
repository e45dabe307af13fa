//! The LED: colour, level, preview. The instrument has no query for the
//! LED, so the panel shows the last setting it acknowledged.

use eframe::egui::{self, RichText};
use flamingo_client::devices::LedColour;

use crate::app::Viewer;

impl Viewer {
    pub(crate) fn led_panel(&mut self, ui: &mut egui::Ui) {
        let connected = self.model.connected();
        ui.horizontal(|ui| {
            ui.heading("LED");
            if let Some(n) = super::stale_note(connected) {
                ui.label(n);
            }
        });
        ui.add_enabled_ui(connected, |ui| self.led_body(ui));
    }

    fn led_body(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            egui::ComboBox::from_id_salt("led colour")
                .selected_text(self.model.led_colour.to_string())
                .width(70.0)
                .show_ui(ui, |ui| {
                    for c in [
                        LedColour::Red,
                        LedColour::Green,
                        LedColour::Blue,
                        LedColour::White,
                    ] {
                        ui.selectable_value(&mut self.model.led_colour, c, c.to_string());
                    }
                });
            ui.add(egui::Slider::new(&mut self.model.led_percent, 0.0..=100.0).suffix(" %"));
            let r = ui.small_button("Set");
            self.hits.put("led set", &r);
            if r.clicked() {
                let (c, p) = (self.model.led_colour, self.model.led_percent);
                self.set_led(c, p);
            }
            let mut on = self.model.led_preview.unwrap_or(false);
            let r = ui.checkbox(&mut on, "preview");
            self.hits.put("led preview", &r);
            if r.changed() {
                self.set_led_preview(on);
            }
        });
        ui.label(
            RichText::new(match self.model.led_set {
                Some((c, p)) => format!("last acknowledged: {c} at {p:.0} %"),
                None => "not set since connecting (the instrument does not report the LED)".into(),
            })
            .weak()
            .small(),
        );
    }
}
