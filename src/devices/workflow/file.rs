//! A workflow file: the text the instrument runs.

use std::borrow::Cow;
use std::path::Path;

use crate::devices::sections::{
    classify, find_in, parse, parse_number, Entry, Line, Section, MAX_SECTION_DEPTH,
};
use crate::{Error, Result};

/// The most planes (images per stack) [`Workflow::validate`] accepts.
pub const MAX_PLANES: u32 = 100_000;

/// The sections [`Workflow::validate`] requires inside `<Workflow Settings>`.
const REQUIRED_SECTIONS: [&str; 4] = [
    "Experiment Settings",
    "Stack Settings",
    "Start Position",
    "Illumination Source",
];

/// Longest value [`Workflow::set`] and the builder accept, in bytes. The
/// instrument's own limit is not documented; values in vendor files are far
/// shorter.
pub(crate) const MAX_VALUE_LEN: usize = 255;

/// A workflow file, kept byte for byte as loaded or built (line endings
/// included) and parsed into sections for reading.
///
/// The format (see `fixtures/ZStack.txt`) is the settings format of
/// [`Section`]: a `<Workflow Settings>` section holding `<Experiment
/// Settings>`, `<Stack Settings>`, `<Start Position>`, `<Illumination
/// Source>` and so on. Load one saved by the vendor software, change what
/// you need with [`set`](Workflow::set), or build a common one with
/// [`WorkflowBuilder`](super::WorkflowBuilder).
///
/// ```
/// use flamingo_client::devices::Workflow;
///
/// let mut wf = Workflow::from_text("<Workflow Settings>\n  <Stack Settings>\n    Number of planes = 476\n  </Stack Settings>\n</Workflow Settings>\n")?;
/// assert_eq!(wf.planes(), Some(476));
/// wf.set("Stack Settings", "Number of planes", "10")?;
/// assert_eq!(wf.planes(), Some(10));
/// assert!(wf.text().contains("    Number of planes = 10\n"));
/// # Ok::<(), flamingo_client::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workflow {
    bytes: Vec<u8>,
    sections: Vec<Section>,
}

impl Workflow {
    /// A workflow from the bytes of a file. Errors: `InvalidArgument` if
    /// empty (the instrument answers an empty workflow with "Work flow
    /// empty") or if its sections nest deeper than
    /// [`MAX_SECTION_DEPTH`](crate::devices::MAX_SECTION_DEPTH).
    /// The content is checked by [`validate`](Workflow::validate).
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Result<Workflow> {
        let bytes = bytes.into();
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(Error::invalid("the workflow is empty"));
        }
        let sections = parse(&String::from_utf8_lossy(&bytes))
            .map_err(|e| Error::invalid(format!("the workflow file's {e}")))?;
        Ok(Workflow { bytes, sections })
    }

    /// A workflow from text.
    pub fn from_text(text: &str) -> Result<Workflow> {
        Workflow::from_bytes(text.as_bytes())
    }

    /// Reads a workflow file. Errors: `Io` (the file cannot be read),
    /// `InvalidArgument` (it is empty).
    pub fn load(path: impl AsRef<Path>) -> Result<Workflow> {
        Workflow::from_bytes(std::fs::read(path)?)
    }

    /// Writes the workflow to a file, byte for byte.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        std::fs::write(path, &self.bytes)?;
        Ok(())
    }

    /// The bytes sent to the instrument.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The file as text (invalid UTF-8 replaced).
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.bytes)
    }

    /// The top-level sections.
    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    /// The first section named `name` (ASCII case ignored), at any depth.
    pub fn section(&self, name: &str) -> Option<&Section> {
        find_in(&self.sections, name)
    }

    /// The value of `key` in section `section` (at any depth).
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.section(section)?.get(key)
    }

    /// `Number of planes` in `Stack Settings`.
    pub fn planes(&self) -> Option<u32> {
        let v = parse_number(self.get("Stack Settings", "Number of planes")?)?;
        (v >= 0.0 && v <= f64::from(u32::MAX) && v.fract() == 0.0).then_some(v as u32)
    }

    /// `Work flow live view enabled` in `Experiment Settings`.
    pub fn live_view(&self) -> Option<bool> {
        parse_bool(self.get("Experiment Settings", "Work flow live view enabled")?)
    }

    /// Checks that the file is a workflow the instrument can run, before
    /// anything is sent. The rules:
    ///
    /// - every non-blank line is a section tag (`<Name>`, `</Name>`) or a
    ///   `key = value` line inside a section; tags close in order and every
    ///   section is closed;
    /// - everything is inside one `<Workflow Settings>` section, which holds
    ///   `<Experiment Settings>`, `<Stack Settings>`, `<Start Position>` and
    ///   `<Illumination Source>`;
    /// - `Number of planes` is a whole number from 1 to [`MAX_PLANES`];
    ///   the start position's `X (mm)`, `Y (mm)`, `Z (mm)` and
    ///   `Angle (degrees)` are numbers (and the end position's, if given);
    /// - where given, `Plane spacing (um)`, `Exposure time (us)` and
    ///   `Frame rate (f/s)` are numbers above zero, `Change in Z axis (mm)`
    ///   is a number, `Work flow live view enabled` is true or false, and each
    ///   `Laser N ... = LEVEL ON` has a level from 0 to 100 and ON 0 or 1.
    ///
    /// Errors: `InvalidArgument` naming the line (1-based) and what to fix.
    /// Files saved by the vendor software and built by
    /// [`WorkflowBuilder`](super::WorkflowBuilder) pass.
    ///
    /// ```
    /// use flamingo_client::devices::Workflow;
    ///
    /// let e = Workflow::from_text("garbage\n")?.validate().unwrap_err();
    /// assert!(e.to_string().contains("line 1"));
    /// let z = Workflow::from_bytes(std::fs::read("fixtures/ZStack.txt")?)?;
    /// z.validate()?;
    /// # Ok::<(), flamingo_client::Error>(())
    /// ```
    pub fn validate(&self) -> Result<()> {
        check_syntax(&self.text(), true).map_err(Error::invalid)?;
        let root = match self.sections.as_slice() {
            [root] if root.name.eq_ignore_ascii_case("Workflow Settings") => root,
            _ => {
                return Err(Error::invalid(
                    "everything must be inside one <Workflow Settings> section",
                ))
            }
        };
        for name in REQUIRED_SECTIONS {
            if root.find(name).is_none() {
                return Err(Error::invalid(format!(
                    "<Workflow Settings> has no <{name}> section (a workflow needs {})",
                    REQUIRED_SECTIONS.map(|n| format!("<{n}>")).join(", ")
                )));
            }
        }
        let section = |name: &str| root.find(name).expect("checked above");
        let stack = section("Stack Settings");
        let planes = require(stack, "Number of planes")?;
        let n = number(planes, "a whole number of planes")?;
        if n.fract() != 0.0 || !(1.0..=f64::from(MAX_PLANES)).contains(&n) {
            return Err(at(
                planes,
                format!("must be a whole number from 1 to {MAX_PLANES}"),
            ));
        }
        if let Some(e) = given(stack, "Change in Z axis (mm)") {
            number(e, "a number of millimetres")?;
        }
        let experiment = section("Experiment Settings");
        for key in [
            "Plane spacing (um)",
            "Exposure time (us)",
            "Frame rate (f/s)",
        ] {
            if let Some(e) = given(experiment, key) {
                if number(e, "a number above zero")? <= 0.0 {
                    return Err(at(e, "must be above zero"));
                }
            }
        }
        if let Some(e) = given(experiment, "Work flow live view enabled") {
            if parse_bool(&e.value).is_none() {
                return Err(at(e, "must be true or false"));
            }
        }
        for (name, required) in [("Start Position", true), ("End Position", false)] {
            let Some(p) = root.find(name) else {
                continue;
            };
            for key in ["X (mm)", "Y (mm)", "Z (mm)", "Angle (degrees)"] {
                let e = if required {
                    Some(require(p, key)?)
                } else {
                    given(p, key)
                };
                if let Some(e) = e {
                    number(e, "a number")?;
                }
            }
        }
        for e in &section("Illumination Source").entries {
            let is_laser = e
                .key
                .strip_prefix("Laser ")
                .and_then(|r| r.split_whitespace().next())
                .is_some_and(|n| n.parse::<u8>().is_ok());
            if !is_laser || e.value.is_empty() {
                continue;
            }
            let mut parts = e.value.split_whitespace();
            let level = parts.next().and_then(parse_number);
            let on = parts.next();
            match (level, on, parts.next()) {
                (Some(l), Some("0" | "1"), None) if (0.0..=100.0).contains(&l) => {}
                _ => {
                    return Err(at(
                        e,
                        "must be a level from 0 to 100 and 0 (off) or 1 (on), as in \"5.88 1\"",
                    ))
                }
            }
        }
        Ok(())
    }

    /// Replaces the value of `key` in section `section`, keeping the rest of
    /// the file (indentation, line endings, every other line) as it was.
    ///
    /// Errors (`InvalidArgument`): the key is not in that section (this
    /// edits, it does not add), the file is not UTF-8 text, or the value
    /// is not one line of at most 255 bytes without `<` or `>`.
    pub fn set(&mut self, section: &str, key: &str, value: &str) -> Result<()> {
        check_value(key, value)?;
        let line_no = self
            .section(section)
            .ok_or_else(|| Error::invalid(format!("the workflow has no section <{section}>")))?
            .entry(key)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "section <{section}> of the workflow has no key \"{key}\""
                ))
            })?
            .line;
        let text = std::str::from_utf8(&self.bytes).map_err(|_| {
            Error::invalid("the workflow file is not UTF-8 text; it cannot be edited")
        })?;
        let mut out = String::with_capacity(text.len() + value.len());
        for (n, line) in text.split_inclusive('\n').enumerate() {
            if n != line_no {
                out.push_str(line);
                continue;
            }
            let body = line.trim_end_matches(['\r', '\n']);
            let ending = &line[body.len()..];
            let eq = body.find('=').expect("an entry line has '='");
            out.push_str(body[..eq].trim_end());
            out.push_str(" = ");
            out.push_str(value);
            out.push_str(ending);
        }
        *self = Workflow::from_bytes(out.into_bytes())?;
        Ok(())
    }
}

/// Checks the shape of workflow text line by line (the first rule of
/// [`Workflow::validate`]); the error names the line. With `strict` false,
/// entries outside sections and several top-level sections are allowed
/// (what the simulator accepts).
pub(crate) fn check_syntax(text: &str, strict: bool) -> std::result::Result<(), String> {
    // (name, line) of each open section.
    let mut open: Vec<(&str, usize)> = Vec::new();
    let mut roots = 0;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let shown = || {
            let t = line.trim();
            let cut: String = t.chars().take(60).collect();
            if cut.len() < t.len() {
                format!("{cut}...")
            } else {
                cut
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        match classify(line) {
            Line::Open(name) => {
                if name.is_empty() {
                    return Err(format!("line {n}: a section tag needs a name: {:?}", shown()));
                }
                if open.len() >= MAX_SECTION_DEPTH {
                    return Err(format!(
                        "line {n}: sections nest more than {MAX_SECTION_DEPTH} deep"
                    ));
                }
                if open.is_empty() && strict {
                    roots += 1;
                    if roots > 1 {
                        return Err(format!(
                            "line {n}: <{name}> is outside <Workflow Settings>; everything must be inside one <Workflow Settings> section"
                        ));
                    }
                }
                open.push((name, n));
            }
            Line::Close(name) => match open.last() {
                Some((o, _)) if o.eq_ignore_ascii_case(name) => {
                    open.pop();
                }
                Some((o, at)) => {
                    return Err(format!(
                        "line {n}: </{name}> does not close <{o}> (opened at line {at})"
                    ))
                }
                None => return Err(format!("line {n}: </{name}> closes no open section")),
            },
            Line::Entry(..) if open.is_empty() && strict => {
                return Err(format!(
                    "line {n}: {:?} is outside any section; everything must be inside <Workflow Settings>",
                    shown()
                ))
            }
            Line::Entry(..) => {}
            Line::Other => {
                return Err(format!(
                    "line {n}: {:?} is neither a section tag (<Name> or </Name>) nor a \"key = value\" line",
                    shown()
                ))
            }
        }
    }
    match open.last() {
        Some((name, at)) => Err(format!(
            "<{name}> opened at line {at} is never closed (add </{name}>)"
        )),
        None => Ok(()),
    }
}

/// An error about one entry's value, naming its line.
fn at(e: &Entry, why: impl std::fmt::Display) -> Error {
    Error::invalid(format!(
        "line {}: \"{}\" = {:?} {why}",
        e.line + 1,
        e.key,
        e.value
    ))
}

/// The entry `key` of `s`, which must be there with a value.
fn require<'a>(s: &'a Section, key: &str) -> Result<&'a Entry> {
    match s.entry(key) {
        Some(e) if !e.value.is_empty() => Ok(e),
        Some(e) => Err(at(e, "has no value")),
        None => Err(Error::invalid(format!(
            "section <{}> has no \"{key}\" line",
            s.name
        ))),
    }
}

/// The entry `key` of `s` if it is there with a value.
fn given<'a>(s: &'a Section, key: &str) -> Option<&'a Entry> {
    s.entry(key).filter(|e| !e.value.is_empty())
}

fn number(e: &Entry, what: &str) -> Result<f64> {
    parse_number(&e.value).ok_or_else(|| at(e, format!("is not {what}")))
}

pub(crate) fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "on" | "1" => Some(true),
        "false" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// A value fit for a `key = value` line.
pub(crate) fn check_value(key: &str, value: &str) -> Result<()> {
    if value.len() > MAX_VALUE_LEN {
        return Err(Error::invalid(format!(
            "the text for \"{key}\" is too long: {} bytes, at most {MAX_VALUE_LEN}",
            value.len()
        )));
    }
    if value.contains(['\n', '\r', '<', '>']) {
        return Err(Error::invalid(format!(
            "the text for \"{key}\" must be one line without '<' or '>': {value:?}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures() {
        let z = Workflow::from_bytes(&include_bytes!("../../../fixtures/ZStack.txt")[..]).unwrap();
        assert_eq!(z.planes(), Some(476));
        assert_eq!(z.live_view(), Some(false));
        assert_eq!(z.get("Start Position", "Z (mm)"), Some("20.621"));
        assert_eq!(z.sections().len(), 1);
        assert_eq!(z.sections()[0].name, "Workflow Settings");
        let s =
            Workflow::from_bytes(&include_bytes!("../../../fixtures/Snapshot.txt")[..]).unwrap();
        assert_eq!(s.planes(), Some(1));
        assert_eq!(s.live_view(), Some(true));
    }

    #[test]
    fn set_keeps_everything_else() {
        let original = include_bytes!("../../../fixtures/ZStack.txt");
        let mut z = Workflow::from_bytes(&original[..]).unwrap();
        z.set("stack settings", "number of planes", "12").unwrap();
        assert_eq!(z.planes(), Some(12));
        let before = String::from_utf8_lossy(original);
        let after = z.text();
        let diff: Vec<_> = before
            .lines()
            .zip(after.lines())
            .filter(|(a, b)| a != b)
            .collect();
        assert_eq!(
            diff,
            vec![("    Number of planes = 476", "    Number of planes = 12")]
        );
        assert_eq!(before.len() - 1, after.len());
    }

    #[test]
    fn set_crlf_and_errors() {
        let mut w = Workflow::from_text("<A>\r\n  k = 1\r\n</A>\r\n").unwrap();
        w.set("A", "k", "two").unwrap();
        assert_eq!(w.as_bytes(), b"<A>\r\n  k = two\r\n</A>\r\n");
        assert!(w.set("A", "nope", "1").is_err());
        assert!(w.set("B", "k", "1").is_err());
        assert!(w.set("A", "k", "a\nb").is_err());
        assert!(w.set("A", "k", &"x".repeat(300)).is_err());
        assert!(Workflow::from_text(" \n").is_err());
    }

    #[test]
    fn fixtures_and_built_files_validate() {
        for f in [
            &include_bytes!("../../../fixtures/ZStack.txt")[..],
            &include_bytes!("../../../fixtures/Snapshot.txt")[..],
        ] {
            Workflow::from_bytes(f).unwrap().validate().unwrap();
        }
        let at = crate::devices::StagePosition {
            x_mm: 8.0,
            y_mm: 20.0,
            z_mm: 15.0,
            r_deg: 0.0,
        };
        crate::devices::WorkflowBuilder::z_stack(at, 10, 2.5)
            .laser(2, 10.0)
            .build()
            .unwrap()
            .validate()
            .unwrap();
    }

    fn invalid(text: &str) -> String {
        match Workflow::from_text(text).and_then(|w| w.validate()) {
            Err(Error::InvalidArgument { what }) => what,
            other => panic!("{text:?}: {other:?}"),
        }
    }

    #[test]
    fn mistakes_name_their_line() {
        let z =
            String::from_utf8_lossy(include_bytes!("../../../fixtures/ZStack.txt")).into_owned();
        let with = |from: &str, to: &str| {
            assert!(z.contains(from), "{from}");
            z.replacen(from, to, 1)
        };
        assert!(invalid("garbage").starts_with("line 1: \"garbage\" is neither"));
        assert!(invalid("\n\nk = v\n").starts_with("line 3: "));
        assert!(invalid("<A>\n</B>\n").contains("line 2: </B> does not close <A>"));
        assert!(invalid("</A>\n").contains("closes no open section"));
        assert!(invalid("<A>\n k = 1\n").contains("never closed"));
        assert!(invalid("<A>\n</A>\n<B>\n</B>\n").contains("line 3: <B> is outside"));
        assert!(invalid("<Workflow Settings>\n</Workflow Settings>\n")
            .contains("no <Experiment Settings>"));
        assert!(
            invalid(&with("Number of planes = 476", "Number of planes = 0"))
                .contains("line 30: \"Number of planes\" = \"0\" must be a whole number")
        );
        assert!(
            invalid(&with("Number of planes = 476", "Number of planes = 2.5"))
                .contains("whole number")
        );
        assert!(
            invalid(&with("Number of planes = 476", "Number of planes = many"))
                .contains("is not a whole number of planes")
        );
        assert!(
            invalid(&with("Number of planes = 476", "Number of planes = 100001"))
                .contains("100000")
        );
        assert!(invalid(&with("Number of planes = 476\n", "")).contains("no \"Number of planes\""));
        assert!(invalid(&with("X (mm) = 2.624", "X (mm) = left")).contains("line 48: \"X (mm)\""));
        assert!(invalid(&with("Y (mm) = 12.980", "Y (mm) = ")).contains("has no value"));
        assert!(
            invalid(&with("Plane spacing (um) = 2.5", "Plane spacing (um) = -1"))
                .contains("above zero")
        );
        assert!(invalid(&with("= 5.88 1", "= 500 1")).contains("level from 0 to 100"));
        assert!(invalid(&with("= 5.88 1", "= 5.88 yes")).contains("level from 0 to 100"));
        assert!(invalid(&with(
            "Work flow live view enabled = false",
            "Work flow live view enabled = maybe"
        ))
        .contains("true or false"));
        // End position values may be left empty; given ones must be numbers.
        Workflow::from_text(&with("Y (mm) = 20\n", "Y (mm) = \n"))
            .unwrap()
            .validate()
            .unwrap();
        assert!(invalid(&with("Y (mm) = 20\n", "Y (mm) = twenty\n")).contains("not a number"));
    }
}
