//! The connection bar, always visible: a lamp and the state, the address,
//! Connect, Start simulator, Disconnect, and the developer-panels toggle.

use eframe::egui::{self, Color32, RichText};
use flamingo_client::ConnectionState;

use crate::app::Viewer;

impl Viewer {
    pub(crate) fn top_bar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.heading("Flamingo Viewer");
            ui.separator();
            let (text, colour) = match &self.model.conn {
                None | Some(ConnectionState::NotConnected) => {
                    ("not connected".to_string(), Color32::GRAY)
                }
                Some(ConnectionState::Connecting) => {
                    ("connecting…".to_string(), Color32::from_rgb(230, 180, 60))
                }
                Some(ConnectionState::Connected) => (
                    format!(
                        "connected {}",
                        self.session.as_ref().map_or("", |s| s.client.addr())
                    ),
                    Color32::from_rgb(80, 200, 100),
                ),
                Some(ConnectionState::Reconnecting { attempt }) => (
                    format!("reconnecting (attempt {attempt})"),
                    Color32::from_rgb(240, 160, 40),
                ),
                Some(ConnectionState::Closed { reason }) => (
                    format!("disconnected: {reason}"),
                    Color32::from_rgb(230, 80, 80),
                ),
            };
            // A lamp and the state, always visible.
            let (r, _) = ui.allocate_exact_size(egui::vec2(14.0, 14.0), egui::Sense::hover());
            ui.painter().circle_filled(r.center(), 6.0, colour);
            ui.label(RichText::new(text).color(colour).strong());
            ui.separator();
            ui.label("Address");
            ui.add(egui::TextEdit::singleline(&mut self.addr_input).desired_width(140.0));
            let busy = self.connecting.is_some();
            let r = ui.add_enabled(!busy, egui::Button::new("Connect"));
            self.hits.put("connect", &r);
            if r.clicked() {
                let a = self.addr_input.trim().to_string();
                self.connect(Some(a));
            }
            let r = ui
                .add_enabled(!busy, egui::Button::new("Start simulator"))
                .on_hover_text("Start the embedded simulator and connect to it");
            self.hits.put("start simulator", &r);
            if r.clicked() {
                self.connect(None);
            }
            let r = ui.add_enabled(self.session.is_some(), egui::Button::new("Disconnect"));
            self.hits.put("disconnect", &r);
            if r.clicked() {
                self.disconnect();
            }
            if let Some(s) = self.session.as_ref().and_then(|s| s.sim.as_ref()) {
                ui.label(RichText::new(format!("simulator on {}", s.addr())).weak());
            }
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                let r = ui
                    .checkbox(&mut self.developer, "developer")
                    .on_hover_text("Library time per UI frame and per call");
                self.hits.put("developer", &r);
            });
        });
    }
}
