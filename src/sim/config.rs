//! [`SimConfig`]: everything about the simulated instrument that is fixed at start.

use std::collections::HashSet;
use std::time::Duration;

use super::Faults;
use crate::codec::CommandCode;

/// The default scope settings text: the repository's `fixtures/ScopeSettings.txt`.
pub const DEFAULT_SETTINGS_TEXT: &[u8] = include_bytes!("../../fixtures/ScopeSettings.txt");

/// Configuration of a [`Simulator`](super::Simulator).
///
/// Build it from `SimConfig::default()` with the builder methods, or set the
/// public fields directly. Defaults are the values of a real instrument where
/// known (stage limits and home from `fixtures/ScopeSettings.txt`) and fast,
/// small values where speed matters to tests (stage velocity, plane interval).
///
/// ```
/// use flamingo_client::sim::SimConfig;
/// use std::time::Duration;
///
/// let cfg = SimConfig::default()
///     .image_size(64, 48)
///     .live_fps(100.0)
///     .plane_interval(Duration::from_micros(200));
/// assert_eq!((cfg.image_width, cfg.image_height), (64, 48));
/// assert_eq!(cfg.port, 0);
/// ```
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Command port; the live port is `port + 1`. Default 0: a free pair of
    /// consecutive ports is chosen, first at random in 20000..32000 (below
    /// the operating systems' ephemeral ranges, whose ports outgoing
    /// connections and their TIME_WAIT remnants occupy), then among
    /// ephemeral ports. A fixed port (not 65535) lets a test restart a
    /// simulator on the same address (`SO_REUSEADDR` is set on Unix).
    pub port: u16,
    /// Camera image width in pixels. Default 2048.
    pub image_width: u32,
    /// Camera image height in pixels. Default 2048.
    pub image_height: u32,
    /// Pixel field of view in mm per pixel (`CAMERA_PIXEL_FIELD_OF_VIEW_GET`).
    /// Default `None`: it follows from the optics, the camera's pixel
    /// ([`camera_pixel_um`](SimConfig::camera_pixel_um)) divided by the
    /// magnification the settings text gives (see
    /// [`pixel_fov`](SimConfig::pixel_fov)).
    pub pixel_fov_mm: Option<f64>,
    /// The camera's pixel pitch in µm. Default 6.5 (a typical sCMOS camera,
    /// such as the PCO edge the instrument's driver is written for).
    pub camera_pixel_um: f64,
    /// Initial exposure in µs. Default 10 000.
    pub exposure_us: u32,
    /// Live view frame rate in frames per second (clamped to 0.1..=1000).
    /// Default 30.
    pub live_fps: f64,
    /// Initial velocity of X, Y and Z in mm/s. Default 20.
    pub linear_velocity: f64,
    /// Initial velocity of R in degrees/s. Default 360.
    pub rotary_velocity: f64,
    /// Soft limits `(min, max)` of X, Y, Z (mm) and R (degrees). Default from
    /// the settings fixture: X 1..15, Y 5..25, Z 11..25, R -720..720.
    pub limits: [(f64, f64); 4],
    /// Home positions of X, Y, Z, R. Default 8.032, 23.898, 19.753, -217.965.
    pub home: [f64; 4],
    /// Where the stage starts. Default: `home`.
    pub start_position: [f64; 4],
    /// The scope settings text sent by `COMMON_SCOPE_SETTINGS_LOAD`.
    /// Default [`DEFAULT_SETTINGS_TEXT`] (2958 bytes).
    pub settings_text: Vec<u8>,
    /// Codes answered even without `TRIGGER_CALL_BACK`. Default
    /// `{COMMON_SCOPE_SETTINGS_LOAD, CAMERA_WORK_FLOW_STOP}`, as the facts
    /// file reports for the real instrument.
    pub answer_without_flag: HashSet<CommandCode>,
    /// Whether `LASER_LEVEL_SET` is acknowledged (when flagged). Default
    /// false: the real instrument is not known to answer it.
    pub laser_set_acks: bool,
    /// Whether `LED_SET` is acknowledged (when flagged). Default true.
    pub led_set_acks: bool,
    /// Whether `CAMERA_WORK_FLOW_START` is acknowledged (when flagged).
    /// Default true (unknown for the real instrument).
    pub ack_workflow_start: bool,
    /// Whether an incoming 0x3011 (`CAMERA_ROI_TOP_SET`) is acknowledged. The
    /// acknowledgement is a 0x3011 message, indistinguishable from
    /// `CAMERA_STACK_COMPLETE`. Default false.
    pub ack_roi_top_set: bool,
    /// Time between planes of a workflow. Default 1 ms.
    pub plane_interval: Duration,
    /// Cap on the planes a workflow plays (`None`: as many as the workflow
    /// file says). Default `None`.
    pub max_planes: Option<u32>,
    /// How long a snapshot (or workflow) frame waits for a live client to
    /// connect before it is dropped and counted in `frames_dropped`. Covers
    /// the race between a client's live connect and the simulator accepting
    /// it. Default 1 s.
    pub live_connect_grace: Duration,
    /// Largest additional data accepted from a client; a larger announcement
    /// closes the connection. Default 64 MiB.
    pub max_additional_data: u32,
    /// How many received messages [`Simulator::received`](super::Simulator::received)
    /// keeps; older ones are discarded (0: none are kept). Default 100 000.
    pub record_limit: usize,
    /// Faults active from the start. Default none.
    pub faults: Faults,
    /// Seed of the random generator used by fragmenting and garbage faults.
    /// Default 1.
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        let home = [8.032, 23.898, 19.753, -217.965];
        SimConfig {
            port: 0,
            image_width: 2048,
            image_height: 2048,
            pixel_fov_mm: None,
            camera_pixel_um: 6.5,
            exposure_us: 10_000,
            live_fps: 30.0,
            linear_velocity: 20.0,
            rotary_velocity: 360.0,
            limits: [(1.0, 14.999998), (5.0, 25.0), (11.0, 25.0), (-720.0, 720.0)],
            home,
            start_position: home,
            settings_text: DEFAULT_SETTINGS_TEXT.to_vec(),
            answer_without_flag: [
                CommandCode::COMMON_SCOPE_SETTINGS_LOAD,
                CommandCode::CAMERA_WORK_FLOW_STOP,
            ]
            .into(),
            laser_set_acks: false,
            led_set_acks: true,
            ack_workflow_start: true,
            ack_roi_top_set: false,
            plane_interval: Duration::from_millis(1),
            max_planes: None,
            live_connect_grace: Duration::from_secs(1),
            max_additional_data: 64 * 1024 * 1024,
            record_limit: 100_000,
            faults: Faults::default(),
            seed: 1,
        }
    }
}

impl SimConfig {
    /// Sets [`port`](SimConfig::port).
    #[must_use]
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }
    /// Sets the camera image size in pixels.
    #[must_use]
    pub fn image_size(mut self, width: u32, height: u32) -> Self {
        self.image_width = width;
        self.image_height = height;
        self
    }
    /// Sets [`pixel_fov_mm`](SimConfig::pixel_fov_mm) (instead of following
    /// the optics).
    #[must_use]
    pub fn pixel_fov_mm(mut self, mm: f64) -> Self {
        self.pixel_fov_mm = Some(mm);
        self
    }
    /// Sets [`camera_pixel_um`](SimConfig::camera_pixel_um).
    #[must_use]
    pub fn camera_pixel_um(mut self, um: f64) -> Self {
        self.camera_pixel_um = um;
        self
    }
    /// The magnification on the camera: `Objective lens magnification`
    /// times `Tube lens length (mm)` / `Tube lens design focal length (mm)`
    /// (section `Type` of the settings text; a missing tube lens ratio is
    /// 1). `None` if the settings give no objective magnification.
    ///
    /// ```
    /// use flamingo_client::sim::SimConfig;
    ///
    /// // The default settings: a 6.205x objective, tube lens as designed.
    /// assert_eq!(SimConfig::default().magnification(), Some(6.205));
    /// ```
    pub fn magnification(&self) -> Option<f64> {
        let text = String::from_utf8_lossy(&self.settings_text);
        let value = |key: &str| {
            text.lines().find_map(|l| {
                let (k, v) = l.split_once('=')?;
                if k.trim().eq_ignore_ascii_case(key) {
                    v.trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|v| v.is_finite() && *v > 0.0)
                } else {
                    None
                }
            })
        };
        let objective = value("Objective lens magnification")?;
        let tube = match (
            value("Tube lens length (mm)"),
            value("Tube lens design focal length (mm)"),
        ) {
            (Some(l), Some(f)) => l / f,
            _ => 1.0,
        };
        Some(objective * tube)
    }
    /// The pixel field of view the simulator reports, in mm per pixel:
    /// [`pixel_fov_mm`](SimConfig::pixel_fov_mm) if set, else the camera
    /// pixel over the [`magnification`](SimConfig::magnification) (the
    /// camera pixel itself without one).
    ///
    /// ```
    /// use flamingo_client::sim::SimConfig;
    ///
    /// // 6.5 µm camera pixels through a 6.205x objective: 1.048 µm per pixel.
    /// let mm = SimConfig::default().pixel_fov();
    /// assert!((mm - 0.0065 / 6.205).abs() < 1e-15);
    /// assert_eq!(SimConfig::default().pixel_fov_mm(0.000253).pixel_fov(), 0.000253);
    /// ```
    pub fn pixel_fov(&self) -> f64 {
        self.pixel_fov_mm
            .unwrap_or_else(|| self.camera_pixel_um / 1000.0 / self.magnification().unwrap_or(1.0))
    }
    /// Sets the initial [`exposure_us`](SimConfig::exposure_us).
    #[must_use]
    pub fn exposure_us(mut self, us: u32) -> Self {
        self.exposure_us = us;
        self
    }
    /// Sets [`live_fps`](SimConfig::live_fps).
    #[must_use]
    pub fn live_fps(mut self, fps: f64) -> Self {
        self.live_fps = fps;
        self
    }
    /// Sets the initial stage velocities: X/Y/Z in mm/s and R in degrees/s.
    #[must_use]
    pub fn stage_velocity(mut self, linear_mm_s: f64, rotary_deg_s: f64) -> Self {
        self.linear_velocity = linear_mm_s;
        self.rotary_velocity = rotary_deg_s;
        self
    }
    /// Sets the [`start_position`](SimConfig::start_position) of X, Y, Z, R.
    #[must_use]
    pub fn start_position(mut self, position: [f64; 4]) -> Self {
        self.start_position = position;
        self
    }
    /// Sets [`settings_text`](SimConfig::settings_text).
    #[must_use]
    pub fn settings_text(mut self, text: impl Into<Vec<u8>>) -> Self {
        self.settings_text = text.into();
        self
    }
    /// Adds (`true`) or removes (`false`) a code from
    /// [`answer_without_flag`](SimConfig::answer_without_flag).
    #[must_use]
    pub fn answer_without_flag(mut self, code: CommandCode, answer: bool) -> Self {
        if answer {
            self.answer_without_flag.insert(code);
        } else {
            self.answer_without_flag.remove(&code);
        }
        self
    }
    /// Sets [`laser_set_acks`](SimConfig::laser_set_acks).
    #[must_use]
    pub fn laser_set_acks(mut self, ack: bool) -> Self {
        self.laser_set_acks = ack;
        self
    }
    /// Sets [`led_set_acks`](SimConfig::led_set_acks).
    #[must_use]
    pub fn led_set_acks(mut self, ack: bool) -> Self {
        self.led_set_acks = ack;
        self
    }
    /// Sets [`ack_workflow_start`](SimConfig::ack_workflow_start).
    #[must_use]
    pub fn ack_workflow_start(mut self, ack: bool) -> Self {
        self.ack_workflow_start = ack;
        self
    }
    /// Sets [`ack_roi_top_set`](SimConfig::ack_roi_top_set).
    #[must_use]
    pub fn ack_roi_top_set(mut self, ack: bool) -> Self {
        self.ack_roi_top_set = ack;
        self
    }
    /// Sets [`plane_interval`](SimConfig::plane_interval).
    #[must_use]
    pub fn plane_interval(mut self, interval: Duration) -> Self {
        self.plane_interval = interval;
        self
    }
    /// Sets [`max_planes`](SimConfig::max_planes).
    #[must_use]
    pub fn max_planes(mut self, cap: Option<u32>) -> Self {
        self.max_planes = cap;
        self
    }
    /// Sets [`live_connect_grace`](SimConfig::live_connect_grace).
    #[must_use]
    pub fn live_connect_grace(mut self, grace: Duration) -> Self {
        self.live_connect_grace = grace;
        self
    }
    /// Sets [`max_additional_data`](SimConfig::max_additional_data).
    #[must_use]
    pub fn max_additional_data(mut self, bytes: u32) -> Self {
        self.max_additional_data = bytes;
        self
    }
    /// Sets [`record_limit`](SimConfig::record_limit).
    #[must_use]
    pub fn record_limit(mut self, messages: usize) -> Self {
        self.record_limit = messages;
        self
    }
    /// Sets the [`faults`](SimConfig::faults) active from the start.
    #[must_use]
    pub fn faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }
    /// Sets [`seed`](SimConfig::seed).
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}
