//! A small typed builder for the common workflows: a Z stack and a snapshot.

use std::fmt::Write;

use super::file::check_value;
use super::Workflow;
use crate::devices::illumination::led_level_from_percent;
use crate::devices::lasers::check_laser;
use crate::devices::{finite, LedColour, StagePosition};
use crate::{Error, Result};

/// Builds the workflow file of a Z stack or a snapshot, in the layout of
/// the vendor's files (`fixtures/ZStack.txt`).
///
/// The stack starts at `start` and goes up in Z: `planes` planes
/// `plane_spacing_um` apart. The frame rate is `1 / exposure`, and the Z
/// velocity is one plane spacing per frame. Everything is checked by
/// [`build`](WorkflowBuilder::build), before anything is sent: numbers must
/// be finite, the plane spacing above zero, laser indices 1 to 4, levels 0 to
/// 100 %, texts one line of at most 255 bytes.
///
/// Lasers are written as `Laser N = level enabled` lines. To keep the
/// vendor's own labels (`Laser 2 2: 488 nm MLE`), load a file saved by the
/// vendor software and change it with [`Workflow::set`] instead.
///
/// ```
/// use flamingo_client::devices::{StagePosition, WorkflowBuilder};
///
/// let start = StagePosition { x_mm: 8.0, y_mm: 12.9, z_mm: 20.6, r_deg: 0.0 };
/// let wf = WorkflowBuilder::z_stack(start, 100, 2.5)
///     .exposure_us(10_000)
///     .laser(3, 5.88)
///     .save_to("/media/deploy/ctlsm1", "MM01")
///     .comments("embryo 3")
///     .build()?;
/// assert_eq!(wf.planes(), Some(100));
/// assert_eq!(wf.get("End Position", "Z (mm)"), Some("20.85"));
/// assert_eq!(wf.get("Illumination Source", "Laser 3"), Some("5.88 1"));
/// # Ok::<(), flamingo_client::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct WorkflowBuilder {
    start: StagePosition,
    planes: u32,
    spacing_um: f64,
    exposure_us: u32,
    lasers: [Option<f64>; 4],
    invalid_laser: Option<u8>,
    led: Option<(LedColour, f64)>,
    drive: String,
    directory: String,
    comments: String,
    sample: String,
    save_format: String,
    max_projection: bool,
    live_view: bool,
    left_path: bool,
    right_path: bool,
}

impl WorkflowBuilder {
    /// A Z stack of `planes` planes, `plane_spacing_um` micrometres apart,
    /// starting at `start` and going up in Z. Saved as TIFF, no live view.
    pub fn z_stack(start: StagePosition, planes: u32, plane_spacing_um: f64) -> WorkflowBuilder {
        WorkflowBuilder {
            start,
            planes,
            spacing_um: plane_spacing_um,
            exposure_us: 10_000,
            lasers: [None; 4],
            invalid_laser: None,
            led: None,
            drive: String::new(),
            directory: String::new(),
            comments: String::new(),
            sample: String::new(),
            save_format: "Tiff".into(),
            max_projection: false,
            live_view: false,
            left_path: true,
            right_path: true,
        }
    }

    /// A single image at `at`, with the frame also sent to live view.
    pub fn snapshot(at: StagePosition) -> WorkflowBuilder {
        WorkflowBuilder {
            live_view: true,
            ..WorkflowBuilder::z_stack(at, 1, 10.0)
        }
    }

    /// Exposure time in microseconds (default 10 000).
    #[must_use]
    pub fn exposure_us(mut self, us: u32) -> Self {
        self.exposure_us = us;
        self
    }

    /// Enables laser `laser` (1 to 4) at `percent`.
    #[must_use]
    pub fn laser(mut self, laser: u8, percent: f64) -> Self {
        match usize::from(laser)
            .checked_sub(1)
            .and_then(|i| self.lasers.get_mut(i))
        {
            Some(slot) => *slot = Some(percent),
            // Reported by build().
            None => self.invalid_laser = Some(laser),
        }
        self
    }

    /// Enables the LED in `colour` at `percent`.
    #[must_use]
    pub fn led(mut self, colour: LedColour, percent: f64) -> Self {
        self.led = Some((colour, percent));
        self
    }

    /// Where the instrument saves the images: a drive (mount point) and a
    /// directory on it.
    #[must_use]
    pub fn save_to(mut self, drive: &str, directory: &str) -> Self {
        self.drive = drive.into();
        self.directory = directory.into();
        self
    }

    /// The image format (`Save image data`: "Tiff" by default, "Raw"...).
    #[must_use]
    pub fn save_format(mut self, format: &str) -> Self {
        self.save_format = format.into();
        self
    }

    /// Free-text comments saved with the data.
    #[must_use]
    pub fn comments(mut self, text: &str) -> Self {
        self.comments = text.into();
        self
    }

    /// The sample name.
    #[must_use]
    pub fn sample(mut self, name: &str) -> Self {
        self.sample = name.into();
        self
    }

    /// Also save a maximum-intensity projection.
    #[must_use]
    pub fn max_projection(mut self, on: bool) -> Self {
        self.max_projection = on;
        self
    }

    /// Send the images to live view as they are taken.
    #[must_use]
    pub fn live_view(mut self, on: bool) -> Self {
        self.live_view = on;
        self
    }

    /// Which light-sheet paths are on (default both).
    #[must_use]
    pub fn illumination_paths(mut self, left: bool, right: bool) -> Self {
        self.left_path = left;
        self.right_path = right;
        self
    }

    /// Checks everything and writes the file.
    pub fn build(&self) -> Result<Workflow> {
        if let Some(l) = self.invalid_laser {
            check_laser(l)?;
        }
        for axis in crate::Axis::ALL {
            finite(
                &format!("the {} coordinate of the start position", axis.name()),
                self.start.get(axis),
            )?;
        }
        if self.planes == 0 {
            return Err(Error::invalid("a workflow needs at least one plane"));
        }
        let spacing = finite("the plane spacing in µm", self.spacing_um)?;
        if spacing <= 0.0 {
            return Err(Error::invalid(format!(
                "the plane spacing must be above zero, not {spacing} µm"
            )));
        }
        if self.exposure_us == 0 {
            return Err(Error::invalid("the exposure must be at least 1 µs"));
        }
        for (i, level) in self.lasers.iter().enumerate() {
            if let Some(p) = *level {
                let p = finite(&format!("the level of laser {}", i + 1), p)?;
                if !(0.0..=100.0).contains(&p) {
                    return Err(Error::invalid(format!(
                        "the level of laser {} must be between 0 and 100 %, not {p}",
                        i + 1
                    )));
                }
            }
        }
        let led = match self.led {
            Some((c, p)) => Some((c, p, led_level_from_percent(p)?)),
            None => None,
        };
        for (key, v) in [
            ("Save image drive", &self.drive),
            ("Save image directory", &self.directory),
            ("Comments", &self.comments),
            ("Sample", &self.sample),
            ("Save image data", &self.save_format),
        ] {
            check_value(key, v)?;
        }
        let fps = 1e6 / f64::from(self.exposure_us);
        let dz_mm = f64::from(self.planes) * spacing / 1000.0;
        let mut end = self.start;
        end.z_mm += dz_mm;
        let z_velocity = spacing / 1000.0 * fps;
        let b = |v: bool| if v { "true" } else { "false" };
        let path = |on: bool| if on { "ON 1" } else { "OFF 0" };

        let mut t = String::with_capacity(2300);
        let mut line = |indent: usize, s: &str| {
            let _ = writeln!(t, "{:indent$}{s}", "");
        };
        line(0, "<Workflow Settings>");
        line(2, "<Experiment Settings>");
        line(4, &format!("Plane spacing (um) = {}", num(spacing)));
        line(4, &format!("Frame rate (f/s) = {fps:.6}"));
        line(4, &format!("Exposure time (us) = {}", self.exposure_us));
        line(4, "Duration (dd:hh:mm:ss) = 00:00:00:00");
        line(4, "Interval (dd:hh:mm:ss) = 00:00:00:00");
        line(4, &format!("Sample = {}", self.sample));
        line(4, "Number of angles = ");
        line(4, "Angle step size = ");
        line(4, "Region = ");
        line(4, &format!("Save image drive = {}", self.drive));
        line(4, &format!("Save image directory = {}", self.directory));
        line(4, &format!("Comments = {}", self.comments));
        line(
            4,
            &format!("Save max projection = {}", b(self.max_projection)),
        );
        line(4, "Display max projection = false");
        line(4, &format!("Save image data = {}", self.save_format));
        line(4, "Save to subfolders = false");
        line(
            4,
            &format!("Work flow live view enabled = {}", b(self.live_view)),
        );
        line(2, "</Experiment Settings>");
        line(2, "<Camera Settings>");
        line(4, "Exposure time (us) = ");
        line(4, "Frame rate (f/s) = ");
        line(4, "AOI width = ");
        line(4, "AOI height = ");
        line(2, "</Camera Settings>");
        line(2, "<Stack Settings>");
        line(4, "Stack index = ");
        line(4, &format!("Change in Z axis (mm) = {}", num(dz_mm)));
        line(4, &format!("Number of planes = {}", self.planes));
        line(4, "Number of planes saved = ");
        line(4, &format!("Z stage velocity (mm/s) = {}", num(z_velocity)));
        line(4, "Rotational stage velocity (°/s) = 0");
        line(4, "Auto update stack calculations = true");
        line(4, "Date time stamp = ");
        line(4, "Stack file name = ");
        for cam in 1..=2 {
            line(4, &format!("Camera {cam} capture percentage = 100"));
            line(
                4,
                &format!(
                    "Camera {cam} capture mode (0 full, 1 from front, 2 from back, 3 none) = 0"
                ),
            );
            line(4, &format!("Camera {cam} capture range = "));
        }
        line(4, "Stack option = ZStack");
        line(4, "Stack option settings 1 = ");
        line(4, "Stack option settings 2 = ");
        line(2, "</Stack Settings>");
        for (name, p) in [("Start Position", self.start), ("End Position", end)] {
            line(2, &format!("<{name}>"));
            line(4, &format!("X (mm) = {}", num(p.x_mm)));
            line(4, &format!("Y (mm) = {}", num(p.y_mm)));
            line(4, &format!("Z (mm) = {}", num(p.z_mm)));
            line(4, &format!("Angle (degrees) = {}", num(p.r_deg)));
            line(2, &format!("</{name}>"));
        }
        line(2, "<Illumination Source>");
        for (i, level) in self.lasers.iter().enumerate() {
            let (p, on) = level.map_or((0.0, 0), |p| (p, 1));
            line(4, &format!("Laser {} = {p:.2} {on}", i + 1));
        }
        let (colour, pct, dac, on) = match led {
            Some((c, p, dac)) => (c.wire(), p, dac, 1),
            None => (0, 0.0, crate::devices::LED_LEVEL_MIN, 0),
        };
        line(4, &format!("LED_RGB_Board = {pct:.2} {on}"));
        line(4, &format!("LED selection = {colour} 0"));
        line(4, &format!("LED DAC = {dac} 0"));
        line(2, "</Illumination Source>");
        line(2, "<Illumination Path>");
        line(4, &format!("Left path = {}", path(self.left_path)));
        line(4, &format!("Right path = {}", path(self.right_path)));
        line(2, "</Illumination Path>");
        line(2, "<Illumination Options>");
        line(4, "Run stack with multiple lasers on = false");
        line(2, "</Illumination Options>");
        line(0, "</Workflow Settings>");
        Workflow::from_bytes(t.into_bytes())
    }
}

/// A number with at most 6 decimals and no trailing zeros ("20.85", "0.01", "2").
fn num(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> StagePosition {
        StagePosition {
            x_mm: 2.624,
            y_mm: 12.98,
            z_mm: 20.621,
            r_deg: 132.84,
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(num(20.85), "20.85");
        assert_eq!(num(2.0), "2");
        assert_eq!(num(-0.0000001), "0");
        assert_eq!(num(0.1005336), "0.100534");
    }

    #[test]
    fn z_stack_matches_the_vendor_layout() {
        let wf = WorkflowBuilder::z_stack(start(), 476, 2.5)
            .laser(3, 5.88)
            .laser(4, 8.01)
            .led(LedColour::Green, 50.0)
            .build()
            .unwrap();
        let vendor =
            Workflow::from_bytes(&include_bytes!("../../../fixtures/ZStack.txt")[..]).unwrap();
        // Same sections, and every key of ours exists in the vendor file
        // (except the plain laser labels).
        let ours = &wf.sections()[0];
        let theirs = &vendor.sections()[0];
        let names = |s: &crate::devices::Section| {
            s.sections
                .iter()
                .map(|c| c.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(ours), names(theirs));
        for (a, b) in ours.sections.iter().zip(&theirs.sections) {
            for e in &a.entries {
                if !e.key.starts_with("Laser ") {
                    assert!(b.get(&e.key).is_some(), "{} / {}", a.name, e.key);
                }
            }
        }
        assert_eq!(wf.planes(), Some(476));
        assert_eq!(
            wf.get("Stack Settings", "Change in Z axis (mm)"),
            Some("1.19")
        );
        assert_eq!(wf.get("End Position", "Z (mm)"), Some("21.811"));
        assert_eq!(
            wf.get("Experiment Settings", "Frame rate (f/s)"),
            Some("100.000000")
        );
        assert_eq!(
            wf.get("Stack Settings", "Z stage velocity (mm/s)"),
            Some("0.25")
        );
        assert_eq!(wf.get("Illumination Source", "Laser 4"), Some("8.01 1"));
        assert_eq!(wf.get("Illumination Source", "Laser 1"), Some("0.00 0"));
        assert_eq!(wf.get("Illumination Source", "LED selection"), Some("1 0"));
        assert_eq!(wf.get("Illumination Source", "LED DAC"), Some("48767 0"));
        assert_eq!(wf.live_view(), Some(false));
        let snap = WorkflowBuilder::snapshot(start()).build().unwrap();
        assert_eq!(snap.planes(), Some(1));
        assert_eq!(snap.live_view(), Some(true));
    }

    #[test]
    fn invalid_arguments() {
        let bad = |b: WorkflowBuilder| matches!(b.build(), Err(Error::InvalidArgument { .. }));
        let mut nan = start();
        nan.x_mm = f64::NAN;
        assert!(bad(WorkflowBuilder::z_stack(nan, 1, 1.0)));
        assert!(bad(WorkflowBuilder::z_stack(start(), 0, 1.0)));
        assert!(bad(WorkflowBuilder::z_stack(start(), 1, 0.0)));
        assert!(bad(WorkflowBuilder::z_stack(start(), 1, f64::INFINITY)));
        assert!(bad(WorkflowBuilder::snapshot(start()).exposure_us(0)));
        assert!(bad(WorkflowBuilder::snapshot(start()).laser(0, 1.0)));
        assert!(bad(WorkflowBuilder::snapshot(start()).laser(5, 1.0)));
        assert!(bad(WorkflowBuilder::snapshot(start()).laser(1, 100.5)));
        assert!(bad(
            WorkflowBuilder::snapshot(start()).led(LedColour::Red, -1.0)
        ));
        assert!(bad(
            WorkflowBuilder::snapshot(start()).comments(&"x".repeat(256))
        ));
        assert!(bad(
            WorkflowBuilder::snapshot(start()).comments("two\nlines")
        ));
        assert!(!bad(
            WorkflowBuilder::snapshot(start()).comments(&"x".repeat(255))
        ));
    }
}
