//! The window's panels, one file each. Each adds a method to
//! [`Viewer`](crate::app::Viewer) that draws the panel and turns its clicks
//! into actions.
//!
//! Instrument panels are disabled (greyed) while the client is not
//! connected: what they show is then the last value reported, and nothing
//! can be sent.

pub mod camera;
pub mod confirm;
pub mod developer;
pub mod histogram;
pub mod image;
pub mod lasers;
pub mod led;
pub mod log;
pub mod positions;
pub mod stage;
pub mod top_bar;
pub mod workflow;
pub mod zstack;

use eframe::egui::{Color32, RichText};

/// Amber: a value typed in but not set on the instrument yet.
pub const PENDING: Color32 = Color32::from_rgb(230, 180, 60);
/// The colour of errors.
pub const ERROR: Color32 = Color32::from_rgb(240, 110, 100);

/// What the instrument reported, or a dash before it has.
pub fn reported(v: Option<String>) -> RichText {
    RichText::new(v.unwrap_or_else(|| "—".into())).monospace()
}

/// The line under a panel's heading while the link is down.
pub fn stale_note(connected: bool) -> Option<RichText> {
    (!connected).then(|| {
        RichText::new("not connected: last values reported")
            .weak()
            .small()
    })
}
