//! The stage's soft limits, checked before anything is sent: one safety
//! layer for every front end (the `flamingo` tool, Python, the viewer).

use std::fmt::Write as _;

use super::sections::parse_number;
use super::{ScopeSettings, StagePosition, Workflow};
use crate::{Axis, Error, Result};

/// The tile overlap the instrument accepts, in percent (it clamps to this).
const TILE_OVERLAP_PERCENT: (f64, f64) = (0.0, 50.0);

/// The range of each stage axis that moves and workflows must stay within,
/// and the camera's field of view (for the tile grid of tiled workflows).
///
/// Usually read from the instrument with
/// [`Settings::soft_limits`](super::Settings::soft_limits), or from a saved
/// settings file with [`from_settings`](SoftLimits::from_settings). An axis
/// the settings give no limits for is not checked. The checks cost nothing
/// on the wire; a refusal is [`Error::InvalidArgument`] whose message names
/// the axis, the value and the limits, and nothing is sent.
///
/// Use them directly, or opt in on a facade:
/// [`Stage::soft_limits`](super::Stage::soft_limits) checks every move, and
/// [`Workflows::soft_limits`](super::Workflows::soft_limits) checks every
/// workflow before it starts.
///
/// ```
/// use flamingo_client::devices::{ScopeSettings, SoftLimits, Workflow};
/// use flamingo_client::{Axis, Error};
///
/// let settings = ScopeSettings::parse("<Stage limits>\n  Soft limit min z-axis = 11.000\n  Soft limit max z-axis = 25.000\n</Stage limits>\n")?;
/// let limits = SoftLimits::from_settings(&settings);
/// assert_eq!(limits.get(Axis::Z), Some((11.0, 25.0)));
/// limits.check(Axis::Z, 20.0)?;
/// let e = limits.check(Axis::Z, 5.0).unwrap_err();
/// assert!(matches!(e, Error::InvalidArgument { .. }));
/// assert!(e.to_string().contains("z target 5 mm is outside the stage's soft limits for z, 11 to 25 mm"));
/// // No limits for x in these settings: not checked.
/// limits.check(Axis::X, 1000.0)?;
///
/// let mut wf = Workflow::from_bytes(std::fs::read("fixtures/ZStack.txt")?)?;
/// limits.check_workflow(&wf)?;
/// wf.set("End Position", "Z (mm)", "30")?;
/// let e = limits.check_workflow(&wf).unwrap_err();
/// assert!(e.to_string().contains("z 30 mm at the workflow's end position is outside"), "{e}");
/// # Ok::<(), flamingo_client::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SoftLimits {
    axes: [Option<(f64, f64)>; 4],
    field_of_view_mm: Option<(f64, f64)>,
    from_settings: bool,
}

impl SoftLimits {
    /// No limits: every check passes (add some with [`axis`](SoftLimits::axis)).
    pub fn none() -> SoftLimits {
        SoftLimits::default()
    }

    /// The soft limits the instrument's settings give (section `Stage
    /// limits`, `Soft limit min/max x-axis`...). Axes without both values are
    /// not checked. The field of view is not in the settings: add it with
    /// [`field_of_view_mm`](SoftLimits::field_of_view_mm) (as
    /// [`Settings::soft_limits`](super::Settings::soft_limits) does).
    pub fn from_settings(settings: &ScopeSettings) -> SoftLimits {
        SoftLimits {
            axes: Axis::ALL.map(|a| settings.soft_limits(a).filter(|&(lo, hi)| lo <= hi)),
            field_of_view_mm: None,
            from_settings: true,
        }
    }

    /// Sets the limits of one axis (mm, or degrees for R). Errors:
    /// `InvalidArgument` if a bound is not a finite number or `min > max`.
    pub fn axis(mut self, axis: Axis, min: f64, max: f64) -> Result<SoftLimits> {
        if !(min.is_finite() && max.is_finite() && min <= max) {
            return Err(Error::invalid(format!(
                "the soft limits of {axis} must be two finite numbers, the smaller first, not {min} and {max}"
            )));
        }
        self.axes[index(axis)] = Some((min, max));
        Ok(self)
    }

    /// Sets the camera's field of view on the sample, in millimetres (pixel
    /// size times image width and height), which places the tiles of a tiled
    /// workflow. Errors: `InvalidArgument` unless both are finite and above
    /// zero.
    pub fn field_of_view_mm(mut self, width: f64, height: f64) -> Result<SoftLimits> {
        if !(width.is_finite() && height.is_finite() && width > 0.0 && height > 0.0) {
            return Err(Error::invalid(format!(
                "the field of view must be two finite sizes above zero, not {width} x {height} mm"
            )));
        }
        self.field_of_view_mm = Some((width, height));
        Ok(self)
    }

    /// The limits `(min, max)` of an axis, if known.
    pub fn get(&self, axis: Axis) -> Option<(f64, f64)> {
        self.axes[index(axis)]
    }

    /// The field of view `(width, height)` in mm, if known.
    pub fn field_of_view(&self) -> Option<(f64, f64)> {
        self.field_of_view_mm
    }

    /// True if no axis has limits (every check passes).
    pub fn is_empty(&self) -> bool {
        self.axes.iter().all(Option::is_none)
    }

    /// Checks a target of one axis. Errors: `InvalidArgument` naming the
    /// axis, the value and the limits if it is outside them (or not a finite
    /// number). An axis without limits passes.
    pub fn check(&self, axis: Axis, value: f64) -> Result<()> {
        self.check_value(axis, value, |v| {
            format!("{axis} target {v} {}", axis.unit())
        })
    }

    /// Checks the four axes of a position.
    pub fn check_position(&self, position: &StagePosition) -> Result<()> {
        for (axis, v) in position.targets() {
            self.check(axis, v)?;
        }
        Ok(())
    }

    /// Checks every position a workflow takes the stage to, after
    /// [`Workflow::validate`] (whose errors it returns first):
    ///
    /// - the start position and the end position (missing end values are
    ///   the start's); a stack runs from the start Z to the end Z;
    /// - with `Number of angles` and `Angle step size` (Experiment
    ///   Settings), every angle from the start's on;
    /// - a tiled workflow (`Stack option = Tile`): every tile. The
    ///   instrument lays tiles on a grid one field of view apart less the
    ///   overlap (`Stack option settings 1` and `2`, percent of the field in
    ///   X and Y, 0 to 50), centred on the region from the start to the end
    ///   position widened by half a field; the outer tiles can lie beyond the
    ///   start and end. Without a known field of view only the start and end
    ///   are checked.
    ///
    /// Errors: `InvalidArgument` naming the place (for example "tile column
    /// 7 of 7"), the axis, the value and the limits.
    pub fn check_workflow(&self, workflow: &Workflow) -> Result<()> {
        workflow.validate()?;
        let start = position(workflow, "Start Position", None);
        let end = position(workflow, "End Position", Some(start));
        self.check_place("start position", &start)?;
        self.check_place("end position", &end)?;
        let number = |section: &str, key: &str| workflow.get(section, key).and_then(parse_number);
        if let (Some(n), Some(step)) = (
            number("Experiment Settings", "Number of angles"),
            number("Experiment Settings", "Angle step size"),
        ) {
            if n >= 2.0 {
                let last = start.r_deg + (n.floor() - 1.0) * step;
                self.check_value(Axis::R, last, |v| {
                    format!(
                        "r {v} deg at the workflow's last angle ({n} angles, {step} degrees apart)"
                    )
                })?;
            }
        }
        let tiled = workflow
            .get("Stack Settings", "Stack option")
            .is_some_and(|o| o.trim().eq_ignore_ascii_case("tile"));
        if let (true, Some((fov_x, fov_y))) = (tiled, self.field_of_view_mm) {
            let overlap = |key: &str| number("Stack Settings", key).unwrap_or(0.0);
            for (axis, s, e, fov, overlap, what) in [
                (
                    Axis::X,
                    start.x_mm,
                    end.x_mm,
                    fov_x,
                    overlap("Stack option settings 1"),
                    "column",
                ),
                (
                    Axis::Y,
                    start.y_mm,
                    end.y_mm,
                    fov_y,
                    overlap("Stack option settings 2"),
                    "row",
                ),
            ] {
                let grid = TileLine::new(s, e, fov, overlap);
                for (k, v) in [(1, grid.first), (grid.count, grid.last)] {
                    self.check_value(axis, v, |v| {
                        format!(
                            "{axis} {v} {} at the workflow's tile {what} {k} of {}",
                            axis.unit(),
                            grid.count
                        )
                    })?;
                }
            }
        }
        Ok(())
    }

    fn check_place(&self, place: &str, p: &StagePosition) -> Result<()> {
        for (axis, v) in p.targets() {
            self.check_value(axis, v, |v| {
                format!("{axis} {v} {} at the workflow's {place}", axis.unit())
            })?;
        }
        Ok(())
    }

    /// `what(value)` names the value ("z target 5 mm").
    fn check_value(&self, axis: Axis, value: f64, what: impl Fn(f64) -> String) -> Result<()> {
        if !value.is_finite() {
            return Err(Error::invalid(format!(
                "{} is not a finite number",
                what(value)
            )));
        }
        match self.get(axis) {
            Some((lo, hi)) if !(lo..=hi).contains(&value) => {
                let mut m = format!(
                    "{} is outside the stage's soft limits for {axis}, {lo} to {hi} {}",
                    what(value),
                    axis.unit()
                );
                if self.from_settings {
                    m.push_str(" (from the microscope's settings)");
                }
                Err(Error::invalid(m))
            }
            _ => Ok(()),
        }
    }
}

impl std::fmt::Display for SoftLimits {
    /// `x 1 to 15 mm, y 5 to 25 mm, z 11 to 25 mm, r -720 to 720 deg`
    /// (axes without limits are left out; `none` if there are none).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = String::new();
        for a in Axis::ALL {
            if let Some((lo, hi)) = self.get(a) {
                if !s.is_empty() {
                    s.push_str(", ");
                }
                let _ = write!(s, "{a} {lo} to {hi} {}", a.unit());
            }
        }
        f.write_str(if s.is_empty() { "none" } else { &s })
    }
}

fn index(axis: Axis) -> usize {
    match axis {
        Axis::X => 0,
        Axis::Y => 1,
        Axis::Z => 2,
        Axis::R => 3,
    }
}

/// A validated workflow's position in `section`; values missing there are
/// `default`'s (the end position defaults to the start).
fn position(wf: &Workflow, section: &str, default: Option<StagePosition>) -> StagePosition {
    let mut p = default.unwrap_or_default();
    for (axis, key) in [
        (Axis::X, "X (mm)"),
        (Axis::Y, "Y (mm)"),
        (Axis::Z, "Z (mm)"),
        (Axis::R, "Angle (degrees)"),
    ] {
        if let Some(v) = wf.get(section, key).and_then(parse_number) {
            p.set(axis, v);
        }
    }
    p
}

/// The tile centres along one axis: `count` of them, from `first` to `last`
/// (only the outer two matter for a range check, so the grid, which can be
/// large, is never listed).
#[derive(Clone, Copy, Debug, PartialEq)]
struct TileLine {
    count: u64,
    first: f64,
    last: f64,
}

impl TileLine {
    fn new(start: f64, end: f64, fov: f64, overlap_percent: f64) -> TileLine {
        if start == end || fov.is_nan() || fov <= 0.0 {
            return TileLine {
                count: 1,
                first: start,
                last: start,
            };
        }
        let overlap = overlap_percent.clamp(TILE_OVERLAP_PERCENT.0, TILE_OVERLAP_PERCENT.1);
        let pitch = fov * (100.0 - overlap) / 100.0;
        let (lo, hi) = (start.min(end) - fov / 2.0, start.max(end) + fov / 2.0);
        let n = ((hi - lo) / pitch).ceil().max(1.0);
        // The grid is centred on the region it covers.
        let first = lo + (hi - lo - n * pitch) / 2.0 + pitch / 2.0;
        TileLine {
            count: n as u64,
            first,
            last: first + (n - 1.0) * pitch,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_limits() -> SoftLimits {
        let s =
            ScopeSettings::from_bytes(include_bytes!("../../fixtures/ScopeSettings.txt")).unwrap();
        SoftLimits::from_settings(&s)
    }

    fn zstack() -> Workflow {
        Workflow::from_bytes(&include_bytes!("../../fixtures/ZStack.txt")[..]).unwrap()
    }

    fn invalid(r: Result<()>) -> String {
        match r {
            Err(Error::InvalidArgument { what }) => what,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn limits_from_the_fixture() {
        let l = fixture_limits();
        assert_eq!(l.get(Axis::Z), Some((11.0, 25.0)));
        assert_eq!(l.get(Axis::R), Some((-720.0, 720.0)));
        assert_eq!(
            l.to_string(),
            "x 1 to 14.999998 mm, y 5 to 25 mm, z 11 to 25 mm, r -720 to 720 deg"
        );
        l.check(Axis::Z, 11.0).unwrap();
        l.check(Axis::Z, 25.0).unwrap();
        assert_eq!(
            invalid(l.check(Axis::Z, 30.0)),
            "z target 30 mm is outside the stage's soft limits for z, 11 to 25 mm (from the microscope's settings)"
        );
        assert!(invalid(l.check(Axis::X, f64::NAN)).contains("not a finite number"));
        let manual = SoftLimits::none().axis(Axis::Y, 0.0, 1.0).unwrap();
        assert_eq!(
            invalid(manual.check(Axis::Y, 2.0)),
            "y target 2 mm is outside the stage's soft limits for y, 0 to 1 mm"
        );
        assert!(SoftLimits::none().axis(Axis::Y, 1.0, 0.0).is_err());
        assert!(SoftLimits::none().field_of_view_mm(0.0, 1.0).is_err());
        assert!(SoftLimits::none().is_empty());
        assert_eq!(SoftLimits::none().to_string(), "none");
    }

    #[test]
    fn workflow_start_end_and_angles() {
        let l = fixture_limits();
        l.check_workflow(&zstack()).unwrap();
        let mut wf = zstack();
        wf.set("Start Position", "Z (mm)", "5").unwrap();
        assert_eq!(
            invalid(l.check_workflow(&wf)),
            "z 5 mm at the workflow's start position is outside the stage's soft limits for z, 11 to 25 mm (from the microscope's settings)"
        );
        let mut wf = zstack();
        wf.set("End Position", "Y (mm)", "200").unwrap();
        assert!(invalid(l.check_workflow(&wf))
            .starts_with("y 200 mm at the workflow's end position is outside"));
        // An empty end value is the start's.
        let mut wf = zstack();
        wf.set("End Position", "Z (mm)", "").unwrap();
        l.check_workflow(&wf).unwrap();
        // Angles.
        let mut wf = zstack();
        wf.set("Experiment Settings", "Number of angles", "4")
            .unwrap();
        wf.set("Experiment Settings", "Angle step size", "200")
            .unwrap();
        assert!(invalid(l.check_workflow(&wf)).contains("last angle (4 angles"));
        wf.set("Experiment Settings", "Angle step size", "90")
            .unwrap();
        l.check_workflow(&wf).unwrap();
        // Validation comes first.
        let mut wf = zstack();
        wf.set("Stack Settings", "Number of planes", "0").unwrap();
        assert!(invalid(l.check_workflow(&wf)).contains("Number of planes"));
    }

    #[test]
    fn tiles_can_lie_beyond_the_start_and_end() {
        // X from 2.624 to 7.798 with a 2 mm field and 5 % overlap: the
        // region is 7.174 mm wide, 4 tiles 1.9 mm apart cover 7.6 mm, so the
        // outer tile centres lie 0.263 mm beyond the start and the end.
        let line = TileLine::new(2.624, 7.798, 2.0, 5.0);
        assert_eq!(line.count, 4);
        assert!(
            (line.first - (1.624 - 0.213 + 0.95)).abs() < 1e-9,
            "{line:?}"
        );
        assert!((line.last - line.first - 3.0 * 1.9).abs() < 1e-9);
        assert!(line.first < 2.624 && line.last > 7.798);
        // Centred: symmetric about the middle of start and end.
        let mid = (2.624 + 7.798) / 2.0;
        assert!(((line.first + line.last) / 2.0 - mid).abs() < 1e-9);
        // One tile when start == end; overlap clamped to 50 %.
        assert_eq!(TileLine::new(3.0, 3.0, 1.0, 10.0).count, 1);
        assert_eq!(TileLine::new(0.0, 1.0, 1.0, 90.0).count, 4);

        let l = fixture_limits();
        let mut wf = zstack();
        wf.set("Start Position", "X (mm)", "1.2").unwrap();
        // Without a field of view, only the start and end count.
        l.check_workflow(&wf).unwrap();
        let l = l.field_of_view_mm(2.0, 2.0).unwrap();
        let e = invalid(l.check_workflow(&wf));
        assert!(
            e.contains("at the workflow's tile column 1 of 5 is outside"),
            "{e}"
        );
        assert!(e.contains("outside the stage's soft limits for x, 1 to 14.999998 mm"));
        // Not tiled: no grid.
        wf.set("Stack Settings", "Stack option", "ZStack").unwrap();
        l.check_workflow(&wf).unwrap();
    }
}
