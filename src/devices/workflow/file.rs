//! A workflow file: the text the instrument runs.

use std::borrow::Cow;
use std::path::Path;

use crate::devices::sections::{find_in, parse, parse_number, Section};
use crate::{Error, Result};

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
}
