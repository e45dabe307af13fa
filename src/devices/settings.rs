//! The scope settings: loaded from the instrument, parsed into sections.

use std::time::Duration;

use super::sections::{find_in, parse, Section};
use super::{msg0, run, Base, Camera, Op, SoftLimits};
use crate::codec::{Axis, CommandCode as C};
use crate::{Error, Result};

/// The scope settings text, parsed. The raw text is kept as received.
///
/// The format (sections of `key = value` lines) is described in
/// [`Section`]. Typed helpers cover what programs need most; anything else
/// is reachable with [`get`](ScopeSettings::get).
///
/// ```
/// use flamingo_client::devices::ScopeSettings;
/// use flamingo_client::Axis;
///
/// let s = ScopeSettings::parse("<Stage limits>\n  Soft limit min z-axis = 11.000\n  Soft limit max z-axis = 25.000\n</Stage limits>\n")?;
/// assert_eq!(s.get("Stage limits", "Soft limit max z-axis"), Some("25.000"));
/// assert_eq!(s.soft_limits(Axis::Z), Some((11.0, 25.0)));
/// assert!(s.raw().starts_with("<Stage limits>"));
/// # Ok::<(), flamingo_client::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeSettings {
    raw: String,
    sections: Vec<Section>,
}

impl ScopeSettings {
    /// Parses settings text. Lenient: lines that do not fit the format are
    /// skipped (they stay in [`raw`](ScopeSettings::raw)). Errors:
    /// `InvalidArgument` if sections nest deeper than
    /// [`MAX_SECTION_DEPTH`](super::MAX_SECTION_DEPTH) (the message names the line).
    ///
    /// ```
    /// use flamingo_client::devices::ScopeSettings;
    ///
    /// assert!(ScopeSettings::parse(&"<a>\n".repeat(1000)).is_err());
    /// ```
    pub fn parse(text: &str) -> Result<ScopeSettings> {
        let sections =
            parse(text).map_err(|e| Error::invalid(format!("the settings text's {e}")))?;
        Ok(ScopeSettings {
            raw: text.to_string(),
            sections,
        })
    }

    /// Parses settings bytes (invalid UTF-8 is replaced, not an error).
    /// Errors: as [`parse`](ScopeSettings::parse).
    pub fn from_bytes(bytes: &[u8]) -> Result<ScopeSettings> {
        ScopeSettings::parse(&String::from_utf8_lossy(bytes))
    }

    /// The text exactly as received (after UTF-8 decoding).
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The top-level sections, in order.
    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    /// The first section named `name` (ASCII case ignored), at any depth.
    pub fn section(&self, name: &str) -> Option<&Section> {
        find_in(&self.sections, name)
    }

    /// The value of `key` in section `section`.
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.section(section)?.get(key)
    }

    /// The value of `key` in section `section` as a number.
    pub fn get_f64(&self, section: &str, key: &str) -> Option<f64> {
        self.section(section)?.get_f64(key)
    }

    fn stage(&self, what: &str, axis: Axis) -> Option<f64> {
        self.get_f64("Stage limits", &format!("{what} {}-axis", axis.name()))
    }

    /// The soft limits `(min, max)` of an axis (mm, or degrees for R): the
    /// instrument refuses moves outside them.
    pub fn soft_limits(&self, axis: Axis) -> Option<(f64, f64)> {
        Some((
            self.stage("Soft limit min", axis)?,
            self.stage("Soft limit max", axis)?,
        ))
    }

    /// The hard limits `(min, max)` of an axis.
    pub fn hard_limits(&self, axis: Axis) -> Option<(f64, f64)> {
        Some((
            self.stage("Hard limit min", axis)?,
            self.stage("Hard limit max", axis)?,
        ))
    }

    /// The home position of an axis.
    pub fn home(&self, axis: Axis) -> Option<f64> {
        self.stage("Home", axis)
    }

    /// The description of filter wheel position `position` (1 to 8), such
    /// as `"525/50"`.
    pub fn filter_description(&self, position: u8) -> Option<&str> {
        self.get(
            "Filter wheel encoder counts",
            &format!("Filter wheel description {position}"),
        )
    }

    /// The microscope's name (section `Type`).
    pub fn microscope_name(&self) -> Option<&str> {
        self.get("Type", "Microscope name")
    }
}

/// Loads the scope settings. Made by [`Client::settings`](crate::Client::settings).
///
/// ```no_run
/// # fn main() -> flamingo_client::Result<()> {
/// use flamingo_client::{Axis, Client, ClientConfig};
///
/// let client = Client::connect("127.0.0.1:53717", ClientConfig::default())?;
/// let settings = client.settings().load()?;
/// let (min, max) = settings.soft_limits(Axis::Z).expect("limits in the settings");
/// println!("{}: z from {min} to {max} mm", settings.microscope_name().unwrap_or("?"));
/// std::fs::write("ScopeSettings.txt", settings.raw())?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Settings {
    base: Base,
}

impl Settings {
    pub(crate) fn new(base: Base) -> Settings {
        Settings { base }
    }

    /// Sets the deadline of each operation.
    #[must_use]
    pub fn timeout(mut self, d: Duration) -> Settings {
        self.base.timeout = d;
        self
    }

    /// Loads the scope settings (`COMMON_SCOPE_SETTINGS_LOAD`: the text comes
    /// as additional data after the acknowledgement) and parses them.
    /// Errors besides the usual: `Protocol` if the reply carries no text or
    /// its sections nest deeper than [`MAX_SECTION_DEPTH`](super::MAX_SECTION_DEPTH).
    pub fn load(&self) -> Result<ScopeSettings> {
        run(|| self.submit_load())
    }

    /// The stage's soft limits from the instrument's settings, with the
    /// camera's field of view (pixel size times image size, for the tiles of
    /// tiled workflows) when the camera reports it. The three requests go
    /// out together and share the facade's timeout.
    ///
    /// Errors: those of [`load`](Settings::load); the camera's answers are
    /// optional (a camera that does not report its size leaves the field of
    /// view unknown), except that a lost connection is an error.
    ///
    /// ```no_run
    /// # fn main() -> flamingo_client::Result<()> {
    /// use flamingo_client::{Axis, Client, ClientConfig};
    ///
    /// let client = Client::connect("127.0.0.1:53717", ClientConfig::default())?;
    /// let limits = client.settings().soft_limits()?;
    /// println!("soft limits: {limits}");
    /// let stage = client.stage().soft_limits(limits);
    /// // Refused here, before anything is sent, if outside the limits.
    /// stage.move_and_wait(Axis::Z, 20.0)?;
    /// # Ok(()) }
    /// ```
    pub fn soft_limits(&self) -> Result<SoftLimits> {
        let settings = self.submit_load()?;
        let camera = Camera::new(self.base.clone());
        let pixel = camera.submit_pixel_fov_mm();
        let size = camera.submit_image_size();
        let limits = SoftLimits::from_settings(&settings.wait()?);
        let pixel = optional(pixel.and_then(Op::wait))?;
        let size = optional(size.and_then(Op::wait))?;
        Ok(match (pixel, size) {
            (Some(mm), Some(s)) if mm > 0.0 => limits
                .field_of_view_mm(mm * f64::from(s.width), mm * f64::from(s.height))
                .unwrap_or(limits),
            _ => limits,
        })
    }

    /// Non-blocking form of [`load`](Settings::load).
    pub fn submit_load(&self) -> Result<Op<ScopeSettings>> {
        self.base.checked(
            "the scope settings",
            msg0(C::COMMON_SCOPE_SETTINGS_LOAD, 0),
            |r| {
                if r.data.is_empty() {
                    return Err(Error::protocol(
                        "the scope settings reply carried no settings text",
                    ));
                }
                let text = String::from_utf8_lossy(&r.data);
                let sections = parse(&text).map_err(|e| {
                    Error::protocol(format!("the scope settings from the microscope: {e}"))
                })?;
                Ok(ScopeSettings {
                    raw: text.into_owned(),
                    sections,
                })
            },
        )
    }
}

/// A value whose absence is tolerated: `None` on any error but a lost
/// connection.
fn optional<T>(r: Result<T>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_disconnected() => Err(e),
        Err(e) => {
            log::debug!("soft limits: no field of view: {e}");
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_fixture() {
        let s =
            ScopeSettings::from_bytes(include_bytes!("../../fixtures/ScopeSettings.txt")).unwrap();
        assert_eq!(s.raw().len(), 2958);
        assert_eq!(s.sections().len(), 7);
        assert_eq!(s.soft_limits(Axis::X), Some((1.0, 14.999998)));
        assert_eq!(s.soft_limits(Axis::Z), Some((11.0, 25.0)));
        assert_eq!(s.hard_limits(Axis::Z), Some((8.0, 25.0)));
        assert_eq!(s.soft_limits(Axis::R), Some((-720.0, 720.0)));
        assert_eq!(s.home(Axis::R), Some(-217.965));
        assert_eq!(s.filter_description(2), Some("525/50"));
        assert_eq!(s.microscope_name(), Some("n7"));
        assert_eq!(
            s.get("Type", "Microscope address"),
            Some("10.129.37.22 53717")
        );
        assert_eq!(
            s.get(
                "camera overlap settings",
                "Camera 1 capture mode (0: full, 1: from front, 2: from back)"
            ),
            Some("0")
        );
        assert_eq!(s.get_f64("LED settings", "Intensity red"), Some(42000.0));
    }
}
