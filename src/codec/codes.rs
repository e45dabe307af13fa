//! The command catalogue: every known command code, its protocol name, and
//! the rules the client applies to it (may it arrive unsolicited, how replies
//! are matched to requests, which statuses are errors).

use std::fmt;

/// A 32-bit command code (the second field of every message).
///
/// Known codes are associated constants, grouped by subsystem in the source
/// and in `protocol.md`. `Display` prints the protocol name, or the code in hex
/// when it is not in the catalogue.
///
/// ```
/// use flamingo_client::codec::CommandCode;
///
/// assert_eq!(CommandCode::CAMERA_IMAGE_SIZE_GET.to_string(), "CAMERA_IMAGE_SIZE_GET");
/// assert_eq!(CommandCode(0x3027), CommandCode::CAMERA_IMAGE_SIZE_GET);
/// assert_eq!(CommandCode(0xBEEF).to_string(), "0x0000BEEF");
/// assert!(CommandCode::STAGE_MOTION_STOPPED.info().unwrap().unsolicited.always());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct CommandCode(pub u32);

macro_rules! catalogue {
    ($( $(#[$doc:meta])* $sub:ident $name:ident = $val:literal, $uns:ident, $key:ident, $status:ident; )*) => {
        impl CommandCode {
            $( $(#[$doc])* pub const $name: CommandCode = CommandCode($val); )*
        }
        /// Every code in the catalogue, sorted by code.
        pub static CATALOGUE: &[CodeInfo] = &[
            $( CodeInfo {
                code: CommandCode($val),
                name: stringify!($name),
                subsystem: Subsystem::$sub,
                unsolicited: Unsolicited::$uns,
                match_key: MatchKey::$key,
                status: StatusPolicy::$status,
            }, )*
        ];
    };
}

catalogue! {
    // ---- Common (0x1000) ----
    /// Scope settings (listed only).
    Common COMMON_SCOPE_SETTINGS = 0x1007, Never, Code, CHECKED;
    /// Save the scope settings file sent as additional data; 128-byte ack, status 0 = OK.
    Common COMMON_SCOPE_SETTINGS_SAVE = 0x1008, Never, Code, CHECKED;
    /// Load the scope settings: ack plus the settings text as additional data.
    Common COMMON_SCOPE_SETTINGS_LOAD = 0x1009, Never, Code, CHECKED;
    /// Control settings save (listed only).
    Common COMMON_CONTROL_SETTINGS_SAVE = 0x100B, Never, Code, CHECKED;
    /// Storage path query (int32Data0 = 0): mount points, one per line, in the additional data.
    Common STORAGE_PATH = 0x1013, Never, Code, CHECKED;
    /// Unmount a storage path (named only).
    Common STORAGE_PATH_UNMOUNT = 0x1014, Never, Code, CHECKED;
    /// Drive speed test (named only).
    Common STORAGE_PATH_TEST = 0x1015, Never, Code, CHECKED;
    /// System update live view (listed only).
    Common COMMON_SYSTEM_UPDATE_LIVE_VIEW = 0x1017, Never, Code, CHECKED;
    /// Alternative, version-dependent workflow start (doubtful).
    Common COMMON_WORK_FLOW_START_ALT = 0x1028, Never, Code, CHECKED;
    // ---- Laser (0x2000) ----
    /// Set a laser level: int32Data0 = laser 1-4, buffer = percent as text.
    Laser LASER_LEVEL_SET = 0x2001, Never, Code, CHECKED;
    /// Get a laser level: int32Data0 = laser; reply text in the buffer. Also broadcast during workflows.
    Laser LASER_LEVEL_GET = 0x2002, Sometimes, Int0, INFORMATIONAL;
    /// Enable a laser (named only).
    Laser LASER_ENABLE = 0x2003, Never, Code, CHECKED;
    /// Laser preview enable: int32Data0 = laser.
    Laser LASER_PREVIEW_ENABLE = 0x2004, Never, Code, CHECKED;
    /// Laser preview disable (named LASER_ENABLE_LINE in one source).
    Laser LASER_PREVIEW_DISABLE = 0x2005, Never, Code, CHECKED;
    /// Disable a laser.
    Laser LASER_DISABLE = 0x2006, Never, Code, CHECKED;
    /// All lasers off (the Python client sends it once per laser index).
    Laser LASER_ALL_DISABLE = 0x2007, Never, Code, CHECKED;
    // ---- Camera (0x3000) ----
    /// Set the exposure in µs (int32Data0).
    Camera CAMERA_EXPOSURE_SET = 0x3001, Never, Code, CHECKED;
    /// Start a workflow: the workflow file follows as additional data.
    Camera CAMERA_WORK_FLOW_START = 0x3004, Never, Code, CHECKED;
    /// Stop the running workflow.
    Camera CAMERA_WORK_FLOW_STOP = 0x3005, Never, Code, CHECKED;
    /// Take one image; it arrives on the live port.
    Camera CAMERA_SNAPSHOT_GET = 0x3006, Never, Code, CHECKED;
    /// Start streaming frames on the live port.
    Camera CAMERA_LIVE_VIEW_START = 0x3007, Never, Code, CHECKED;
    /// Stop streaming frames.
    Camera CAMERA_LIVE_VIEW_STOP = 0x3008, Never, Code, CHECKED;
    /// Exposure in µs in int32Data0.
    Camera CAMERA_EXPOSURE_GET = 0x300A, Never, Code, INFORMATIONAL;
    /// ROI left edge (1-based) in int32Data0.
    Camera CAMERA_ROI_LEFT_SET = 0x300F, Never, Code, CHECKED;
    /// ROI left edge query.
    Camera CAMERA_ROI_LEFT_GET = 0x3010, Never, Code, INFORMATIONAL;
    /// Stack complete (unsolicited: int32Data0 acquired, int32Data1 expected,
    /// int32Data2 errors, doubleData µs). Also used by one source as CAMERA_ROI_TOP_SET.
    Camera CAMERA_STACK_COMPLETE = 0x3011, Always, Code, INFORMATIONAL;
    /// ROI top edge query.
    Camera CAMERA_ROI_TOP_GET = 0x3012, Never, Code, INFORMATIONAL;
    /// Image size: width in int32Data0, height in int32Data1.
    Camera CAMERA_IMAGE_SIZE_GET = 0x3027, Never, Code, INFORMATIONAL;
    /// Validate a workflow against the hardware (uncertain).
    Camera CAMERA_CHECK_STACK = 0x302B, Never, Code, CHECKED;
    /// Stack check updates (listed only).
    Camera CAMERA_CHECK_STACK_UPDATES = 0x3036, Never, Code, CHECKED;
    /// Pixel field of view in mm per pixel, in doubleData.
    Camera CAMERA_PIXEL_FIELD_OF_VIEW_GET = 0x3037, Never, Code, INFORMATIONAL;
    /// Pixel size (probably unused by the firmware).
    Camera CAMERA_PIXEL_SIZE_GET = 0x3042, Never, Code, INFORMATIONAL;
    /// Field of view (probably unused by the firmware).
    Camera CAMERA_FIELD_OF_VIEW_GET = 0x3043, Never, Code, INFORMATIONAL;
    // ---- LED (0x4000) ----
    /// Set the LED: int32Data0 = colour (0 R, 1 G, 2 B, 3 W), int32Data1 = DAC level.
    Led LED_SET = 0x4001, Never, Code, CHECKED;
    /// LED preview on.
    Led LED_PREVIEW_ENABLE = 0x4002, Never, Code, CHECKED;
    /// LED preview off; also broadcast during workflows.
    Led LED_PREVIEW_DISABLE = 0x4003, Sometimes, Code, CHECKED;
    /// LED selection change (seen in vendor-GUI logs).
    Led LED_SELECTION_CHANGE = 0x4006, Sometimes, Code, CHECKED;
    // ---- Filter wheel (0x5000) ----
    /// Set the filter wheel position (int32Data0).
    Filter FILTER_POSITION_SET = 0x5001, Never, Code, CHECKED;
    /// Filter wheel position in int32Data0.
    Filter FILTER_POSITION_GET = 0x5002, Never, Code, INFORMATIONAL;
    // ---- Stage (0x6000) ----
    /// Home the stage.
    Stage STAGE_HOME = 0x6001, Never, Code, CHECKED;
    /// Emergency stop of all motion.
    Stage STAGE_HALT = 0x6002, Never, Code, CHECKED;
    /// Move: int32Data0 = axis (1 X, 2 Y, 3 Z, 4 R), doubleData = target. Ends with STAGE_MOTION_STOPPED.
    Stage STAGE_POSITION_SET = 0x6004, Never, Code, CHECKED;
    /// Move, slider variant (what the vendor GUI sends).
    Stage STAGE_POSITION_SET_SLIDER = 0x6005, Never, Code, CHECKED;
    /// Axis velocity: int32Data0 = axis, doubleData = velocity (name conflict in the sources).
    Stage STAGE_VELOCITY_SET = 0x6006, Never, Code, CHECKED;
    /// Position of one axis (int32Data0) in doubleData.
    Stage STAGE_POSITION_GET = 0x6008, Never, Int0, INFORMATIONAL;
    /// Saved locations as text.
    Stage STAGE_SAVE_LOCATIONS_GET = 0x6009, Never, Code, INFORMATIONAL;
    /// Save locations.
    Stage STAGE_SAVE_LOCATIONS_SET = 0x600A, Never, Code, CHECKED;
    /// Wait for motion (named only).
    Stage STAGE_WAIT_FOR_MOTION = 0x600F, Never, Code, CHECKED;
    /// End of a move (unsolicited): int32Data0 = axis, status 1 = stopped normally.
    Stage STAGE_MOTION_STOPPED = 0x6010, Always, Code, INFORMATIONAL;
    // ---- Illumination (0x7000) ----
    /// Left light sheet on.
    Illumination ILLUMINATION_LEFT_ENABLE = 0x7004, Never, Code, CHECKED;
    /// Left light sheet off.
    Illumination ILLUMINATION_LEFT_DISABLE = 0x7005, Never, Code, CHECKED;
    /// Right light sheet on.
    Illumination ILLUMINATION_RIGHT_ENABLE = 0x7006, Never, Code, CHECKED;
    /// Right light sheet off (inferred code).
    Illumination ILLUMINATION_RIGHT_DISABLE = 0x7007, Never, Code, CHECKED;
    // ---- UI callbacks (0x9000) ----
    /// Progress maximum (unsolicited, int32Data0).
    Ui UI_SET_GAUGE_SIZE = 0x9003, Always, Code, INFORMATIONAL;
    /// Progress value (unsolicited, int32Data0 = current, int32Data1 = total).
    Ui UI_SET_GAUGE_VALUE = 0x9004, Always, Code, INFORMATIONAL;
    /// Live view update on change (listed only).
    Ui UI_LIVE_VIEW_UPDATE_ON_CHANGE_ENABLED = 0x9005, Never, Code, CHECKED;
    /// Images written to storage (unsolicited).
    Ui UI_IMAGES_SAVED_TO_STORAGE = 0x9008, Always, Code, INFORMATIONAL;
    // ---- System (0xA000) ----
    /// The system returned to idle (unsolicited). Sent by the client, it asks for idle.
    System SYSTEM_STATE_IDLE = 0xA002, Always, Code, INFORMATIONAL;
    /// System state in int32Data0: 0 idle, 1 busy, 2 error.
    System SYSTEM_STATE_GET = 0xA007, Never, Code, INFORMATIONAL;
}

impl CommandCode {
    /// Alias: the same code, 0x3011, as one source names it for the ROI top edge.
    pub const CAMERA_ROI_TOP_SET: CommandCode = CommandCode::CAMERA_STACK_COMPLETE;

    /// The raw value.
    pub const fn value(self) -> u32 {
        self.0
    }

    /// The catalogue entry for this code, if it is known.
    pub fn info(self) -> Option<&'static CodeInfo> {
        CATALOGUE
            .binary_search_by_key(&self, |i| i.code)
            .ok()
            .map(|i| &CATALOGUE[i])
    }

    /// The protocol name, if the code is known.
    pub fn name(self) -> Option<&'static str> {
        self.info().map(|i| i.name)
    }

    /// Looks a code up by its protocol name (as printed by `Display`).
    ///
    /// ```
    /// # use flamingo_client::codec::CommandCode;
    /// assert_eq!(CommandCode::from_name("STAGE_HALT"), Some(CommandCode::STAGE_HALT));
    /// assert_eq!(CommandCode::from_name("NOPE"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<CommandCode> {
        CATALOGUE.iter().find(|i| i.name == name).map(|i| i.code)
    }
}

impl fmt::Display for CommandCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "{:#010X}", self.0).map(|_| ()),
        }
    }
}

impl fmt::Debug for CommandCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n}({:#06x})", self.0),
            None => write!(f, "CommandCode({:#06x})", self.0),
        }
    }
}

impl From<u32> for CommandCode {
    fn from(v: u32) -> Self {
        CommandCode(v)
    }
}

/// The subsystem a code belongs to (its high nibble group).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Subsystem {
    Common,
    Laser,
    Camera,
    Led,
    Filter,
    Stage,
    Illumination,
    Ui,
    System,
}

/// Whether a code can arrive without being asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unsolicited {
    /// Only ever a reply to a request of the same code.
    Never,
    /// Either a reply or a broadcast. A broadcast may satisfy a waiting request
    /// of the same code and key: it reports the same quantity the request asks for.
    Sometimes,
    /// Always an event. Never matched to a request: `request()` refuses such a
    /// code, because its replies could not be told apart from broadcasts.
    Always,
}

impl Unsolicited {
    /// True for [`Unsolicited::Always`].
    pub fn always(self) -> bool {
        self == Unsolicited::Always
    }
    /// True unless [`Unsolicited::Never`].
    pub fn possible(self) -> bool {
        self != Unsolicited::Never
    }
}

/// How a reply is matched to the request that caused it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatchKey {
    /// By command code alone, first-in first-out.
    Code,
    /// By command code and the echoed `int32Data0` (stage axis, laser index), FIFO per pair.
    Int0,
}

/// Outcome of classifying a reply status with a [`StatusPolicy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusClass {
    /// The status means success (or carries information, not an error).
    Ok,
    /// The instrument is busy.
    Busy,
    /// The instrument refused the command.
    Refused,
}

/// Which reply statuses count as success, as "busy" or as a refusal; the
/// typed device API reports the last two as its busy and refused errors.
///
/// Statuses are compared as small sets (values 0 to 31); any status that is
/// neither in `ok` nor in `busy` is a refusal. `request()` never applies the
/// policy: it returns the reply with its status untouched.
///
/// ```
/// use flamingo_client::codec::{StatusPolicy, StatusClass};
///
/// let p = StatusPolicy::CHECKED;
/// assert_eq!(p.classify(0), StatusClass::Ok);
/// assert_eq!(p.classify(1), StatusClass::Busy);
/// assert_eq!(p.classify(7), StatusClass::Refused);
/// assert_eq!(StatusPolicy::INFORMATIONAL.classify(1), StatusClass::Ok);
/// assert_eq!(StatusPolicy::new(&[0, 1], &[]).classify(1), StatusClass::Ok);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StatusPolicy {
    ok: u32,
    busy: u32,
    any_ok: bool,
}

/// Status meaning success on commands with a checked status.
pub const STATUS_OK: u32 = 0;
/// Status meaning "busy" on commands with a checked status (the default policy).
pub const STATUS_BUSY: u32 = 1;

impl StatusPolicy {
    /// The status carries information (position replies, motion stopped): never an error.
    pub const INFORMATIONAL: StatusPolicy = StatusPolicy {
        ok: 0,
        busy: 0,
        any_ok: true,
    };
    /// 0 is success, [`STATUS_BUSY`] (1) is busy, anything else is a refusal.
    pub const CHECKED: StatusPolicy = StatusPolicy {
        ok: 1 << STATUS_OK,
        busy: 1 << STATUS_BUSY,
        any_ok: false,
    };

    /// A policy from explicit sets. Values above 31 cannot be listed and are refusals.
    pub const fn new(ok: &[u32], busy: &[u32]) -> StatusPolicy {
        StatusPolicy {
            ok: mask(ok),
            busy: mask(busy),
            any_ok: false,
        }
    }

    /// Classifies a reply status.
    pub const fn classify(&self, status: u32) -> StatusClass {
        if self.any_ok {
            return StatusClass::Ok;
        }
        if status < 32 && self.ok & (1 << status) != 0 {
            StatusClass::Ok
        } else if status < 32 && self.busy & (1 << status) != 0 {
            StatusClass::Busy
        } else {
            StatusClass::Refused
        }
    }
}

const fn mask(values: &[u32]) -> u32 {
    let mut m = 0u32;
    let mut i = 0;
    while i < values.len() {
        if values[i] < 32 {
            m |= 1 << values[i];
        }
        i += 1;
    }
    m
}

/// One catalogue entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodeInfo {
    /// The code.
    pub code: CommandCode,
    /// Its protocol name.
    pub name: &'static str,
    /// Its subsystem.
    pub subsystem: Subsystem,
    /// Whether it arrives unsolicited.
    pub unsolicited: Unsolicited,
    /// How replies to it are matched.
    pub match_key: MatchKey,
    /// The default status policy.
    pub status: StatusPolicy,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_sorted_unique_and_complete() {
        for w in CATALOGUE.windows(2) {
            assert!(w[0].code < w[1].code, "{:?} !< {:?}", w[0].code, w[1].code);
        }
        assert_eq!(CATALOGUE.len(), 59);
        for i in CATALOGUE {
            assert_eq!(i.code.info().unwrap().name, i.name);
            assert_eq!(CommandCode::from_name(i.name), Some(i.code));
        }
    }

    #[test]
    fn unsolicited_classes() {
        for c in [0x6010, 0xA002, 0x3011, 0x9003, 0x9004, 0x9008] {
            assert!(CommandCode(c).info().unwrap().unsolicited.always());
        }
        for c in [0x2002, 0x4003] {
            assert_eq!(
                CommandCode(c).info().unwrap().unsolicited,
                Unsolicited::Sometimes
            );
        }
        assert!(!CommandCode::CAMERA_IMAGE_SIZE_GET
            .info()
            .unwrap()
            .unsolicited
            .possible());
    }

    #[test]
    fn names_match_vendor_list() {
        // Decimal values from the server's CommandCodes.h extract.
        let list = [
            ("COMMON_SCOPE_SETTINGS_LOAD", 4105),
            ("COMMON_SCOPE_SETTINGS_SAVE", 4104),
            ("CAMERA_WORK_FLOW_START", 12292),
            ("STAGE_POSITION_GET", 24584),
            ("STAGE_POSITION_SET", 24580),
            ("STAGE_MOTION_STOPPED", 24592),
            ("CAMERA_SNAPSHOT_GET", 12294),
            ("SYSTEM_STATE_IDLE", 40962),
            ("CAMERA_PIXEL_FIELD_OF_VIEW_GET", 12343),
            ("CAMERA_IMAGE_SIZE_GET", 12327),
            ("CAMERA_WORK_FLOW_STOP", 12293),
            ("SYSTEM_STATE_GET", 40967),
        ];
        for (name, v) in list {
            assert_eq!(CommandCode::from_name(name), Some(CommandCode(v)), "{name}");
        }
    }

    #[test]
    fn status_policy_edges() {
        let p = StatusPolicy::new(&[0, 40], &[2]);
        assert_eq!(p.classify(40), StatusClass::Refused);
        assert_eq!(p.classify(u32::MAX), StatusClass::Refused);
        assert_eq!(p.classify(2), StatusClass::Busy);
    }
}
