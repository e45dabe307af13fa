//! The instrument model: everything but the stage (see `stage.rs`).

use std::sync::Arc;

use crossbeam_channel::Sender;

use super::SimConfig;

/// `SYSTEM_STATE_GET` value: idle.
pub const STATE_IDLE: i32 = 0;
/// `SYSTEM_STATE_GET` value: busy (a workflow runs or a snapshot is pending).
pub const STATE_BUSY: i32 = 1;
/// `SYSTEM_STATE_GET` value: error.
pub const STATE_ERROR: i32 = 2;

/// Mutable state of the simulated instrument.
pub(crate) struct Instrument {
    /// Error condition, cleared by a `SYSTEM_STATE_IDLE` from a client.
    pub error: bool,
    /// Stop signal of the running workflow, if one runs.
    pub workflow: Option<Sender<()>>,
    /// Snapshot (or workflow) frames waiting to be delivered.
    pub snapshots_pending: u32,
    pub exposure_us: u32,
    /// Laser levels in percent, lasers 1..=4.
    pub laser_level: [f64; 4],
    pub laser_enabled: [bool; 4],
    pub laser_preview: [bool; 4],
    pub led_colour: i32,
    pub led_level: i32,
    pub led_preview: bool,
    pub filter: i32,
    /// Left and right light sheets.
    pub illumination: [bool; 2],
    pub roi_left: i32,
    pub roi_top: i32,
    pub live_view: bool,
    pub settings: Arc<Vec<u8>>,
    pub workflows: Vec<Vec<u8>>,
}

impl Instrument {
    pub(crate) fn new(cfg: &SimConfig) -> Instrument {
        Instrument {
            error: false,
            workflow: None,
            snapshots_pending: 0,
            exposure_us: cfg.exposure_us,
            laser_level: [0.0; 4],
            laser_enabled: [false; 4],
            laser_preview: [false; 4],
            led_colour: 0,
            led_level: 32000,
            led_preview: false,
            filter: 1,
            illumination: [false; 2],
            roi_left: 1,
            roi_top: 1,
            live_view: false,
            settings: Arc::new(cfg.settings_text.clone()),
            workflows: Vec::new(),
        }
    }

    pub(crate) fn busy(&self) -> bool {
        self.workflow.is_some() || self.snapshots_pending > 0
    }

    /// The `SYSTEM_STATE_GET` value, given the `error_state` fault.
    pub(crate) fn state(&self, error_fault: bool) -> i32 {
        if error_fault || self.error {
            STATE_ERROR
        } else if self.busy() {
            STATE_BUSY
        } else {
            STATE_IDLE
        }
    }
}

/// Index 0..4 of laser `n` (1..=4).
pub(crate) fn laser_index(n: i32) -> Option<usize> {
    (1..=4).contains(&n).then(|| (n - 1) as usize)
}
