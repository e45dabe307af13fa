//! The instrument's settings text format, shared by the scope settings and
//! workflow files:
//!
//! ```text
//! <Stage limits>
//!   Soft limit max x-axis = 14.999998
//!   Home x-axis = 8.032
//! </Stage limits>
//! ```
//!
//! Sections are `<Name>` ... `</Name>` and may nest (workflow files put every
//! section inside `<Workflow Settings>`), at most [`MAX_SECTION_DEPTH`] deep.
//! Inside, each line is `key = value` (split at the first `=`, both sides
//! trimmed; the value may be empty). Parsing is lenient: lines that are
//! neither are skipped, a closing tag without its opening tag is ignored,
//! and a section left open ends with the text. Keys and section names are
//! compared ignoring ASCII case.
//!
//! Every walk over a tree (parsing, [`Section::find`], drop, clone, `Debug`,
//! `==`) uses an explicit stack, never recursion: a tree of any depth, even
//! one built by hand, cannot overflow the thread's stack.

use std::fmt;

/// The deepest nesting of sections the parser accepts: a section inside 31
/// others is the deepest allowed. Vendor files nest 2 levels; text nested
/// deeper is refused (by [`ScopeSettings::parse`](super::ScopeSettings::parse)
/// and [`Workflow::from_bytes`](super::Workflow::from_bytes)) with an error
/// naming the line, instead of building a tree nobody meant to write.
pub const MAX_SECTION_DEPTH: usize = 32;

/// One `key = value` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The key, trimmed.
    pub key: String,
    /// The value, trimmed (may be empty).
    pub value: String,
    /// The line number (0-based) in the text.
    pub line: usize,
}

/// A `<Name>` ... `</Name>` section.
///
/// `Clone`, `Debug`, `PartialEq` and `Drop` walk the tree with an explicit
/// stack, so a tree of any depth is safe to copy, print, compare and drop.
///
/// ```
/// use flamingo_client::devices::Section;
///
/// let mut deep = Section::default();
/// for _ in 0..100_000 {
///     deep = Section { name: "a".into(), entries: Vec::new(), sections: vec![deep] };
/// }
/// assert!(deep.clone() == deep);
/// assert!(deep.find("b").is_none());
/// drop(deep); // no stack overflow
/// ```
#[derive(Default, Eq)]
pub struct Section {
    /// The name between the angle brackets.
    pub name: String,
    /// Its `key = value` lines, in order.
    pub entries: Vec<Entry>,
    /// Sections nested inside it, in order.
    pub sections: Vec<Section>,
}

impl Section {
    /// The value of the first entry named `key` (ASCII case ignored).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entry(key).map(|e| e.value.as_str())
    }

    /// The first entry named `key`.
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| e.key.eq_ignore_ascii_case(key))
    }

    /// The value of `key` as a number, if present and numeric. Thousands
    /// separators (`9,002`) are accepted.
    pub fn get_f64(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(parse_number)
    }

    /// The first section named `name` at any depth below this one (in the
    /// order of the text: a section before the sections inside it).
    pub fn find(&self, name: &str) -> Option<&Section> {
        find_in(&self.sections, name)
    }
}

pub(crate) fn find_in<'a>(sections: &'a [Section], name: &str) -> Option<&'a Section> {
    let mut stack: Vec<std::slice::Iter<'a, Section>> = vec![sections.iter()];
    while let Some(level) = stack.last_mut() {
        match level.next() {
            Some(s) if s.name.eq_ignore_ascii_case(name) => return Some(s),
            Some(s) => stack.push(s.sections.iter()),
            None => {
                stack.pop();
            }
        }
    }
    None
}

impl Drop for Section {
    fn drop(&mut self) {
        // Detach every descendant into one flat list: each section dropped
        // here has no children left, so no drop recurses.
        let mut pending = std::mem::take(&mut self.sections);
        while let Some(mut s) = pending.pop() {
            pending.append(&mut s.sections);
        }
    }
}

impl Clone for Section {
    fn clone(&self) -> Section {
        fn shallow(s: &Section) -> Section {
            Section {
                name: s.name.clone(),
                entries: s.entries.clone(),
                sections: Vec::with_capacity(s.sections.len()),
            }
        }
        // (original, children copied so far, the copy being built)
        let mut stack: Vec<(&Section, usize, Section)> = vec![(self, 0, shallow(self))];
        loop {
            let top = stack.last_mut().expect("the root stays until returned");
            let src: &Section = top.0;
            if let Some(child) = src.sections.get(top.1) {
                top.1 += 1;
                stack.push((child, 0, shallow(child)));
                continue;
            }
            let (_, _, built) = stack.pop().expect("non-empty");
            match stack.last_mut() {
                Some(parent) => parent.2.sections.push(built),
                None => return built,
            }
        }
    }
}

impl PartialEq for Section {
    fn eq(&self, other: &Section) -> bool {
        let mut stack = vec![(self, other)];
        while let Some((a, b)) = stack.pop() {
            if a.name != b.name || a.entries != b.entries || a.sections.len() != b.sections.len() {
                return false;
            }
            stack.extend(a.sections.iter().zip(&b.sections));
        }
        true
    }
}

/// Indentation of `{:#?}` stops growing below this depth, so printing a
/// very deep tree stays linear in its size.
const DEBUG_MAX_INDENT: usize = 32;

impl fmt::Debug for Section {
    /// The derived form (`Section { name: .., entries: [..], sections: [..] }`);
    /// with `{:#?}`, one field or entry per line, indented.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pretty = f.alternate();
        let pad = |f: &mut fmt::Formatter<'_>, depth: usize| -> fmt::Result {
            for _ in 0..depth.min(DEBUG_MAX_INDENT) {
                f.write_str("    ")?;
            }
            Ok(())
        };
        let open = |f: &mut fmt::Formatter<'_>, s: &Section, d: usize| -> fmt::Result {
            if !pretty {
                write!(
                    f,
                    "Section {{ name: {:?}, entries: {:?}, sections: [",
                    s.name, s.entries
                )?;
                return Ok(());
            }
            f.write_str("Section {\n")?;
            pad(f, d + 1)?;
            writeln!(f, "name: {:?},", s.name)?;
            pad(f, d + 1)?;
            f.write_str("entries: [")?;
            if !s.entries.is_empty() {
                f.write_str("\n")?;
                for e in &s.entries {
                    pad(f, d + 2)?;
                    writeln!(f, "{e:?},")?;
                }
                pad(f, d + 1)?;
            }
            f.write_str("],\n")?;
            pad(f, d + 1)?;
            f.write_str("sections: [")?;
            if !s.sections.is_empty() {
                f.write_str("\n")?;
            }
            Ok(())
        };
        // (section, children printed so far)
        let mut stack: Vec<(&Section, usize)> = vec![(self, 0)];
        open(f, self, 0)?;
        while let Some(top) = stack.last_mut() {
            let (s, next) = (top.0, top.1);
            // Indent of this section's brace: each nesting adds a field level
            // and an item level.
            let d = 2 * (stack.len() - 1);
            if let Some(child) = s.sections.get(next) {
                stack.last_mut().expect("non-empty").1 += 1;
                if pretty {
                    pad(f, d + 2)?;
                } else if next > 0 {
                    f.write_str(", ")?;
                }
                open(f, child, d + 2)?;
                stack.push((child, 0));
                continue;
            }
            stack.pop();
            if pretty {
                if !s.sections.is_empty() {
                    pad(f, d + 1)?;
                }
                f.write_str("],\n")?;
                pad(f, d)?;
                f.write_str("}")?;
                if !stack.is_empty() {
                    f.write_str(",\n")?;
                }
            } else {
                f.write_str("] }")?;
            }
        }
        Ok(())
    }
}

/// A number as the instrument writes it: trimmed, `,` thousands separators allowed.
pub(crate) fn parse_number(v: &str) -> Option<f64> {
    let v = v.trim();
    let cleaned;
    let v = if v.contains(',') {
        cleaned = v.replace(',', "");
        cleaned.as_str()
    } else {
        v
    };
    v.parse::<f64>().ok().filter(|x| x.is_finite())
}

/// What a line is.
pub(crate) enum Line<'a> {
    Open(&'a str),
    Close(&'a str),
    Entry(&'a str, &'a str),
    Other,
}

pub(crate) fn classify(line: &str) -> Line<'_> {
    let t = line.trim();
    if let Some(inner) = t.strip_prefix('<').and_then(|r| r.strip_suffix('>')) {
        return match inner.strip_prefix('/') {
            Some(name) => Line::Close(name.trim()),
            None => Line::Open(inner.trim()),
        };
    }
    match t.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Line::Entry(k.trim(), v.trim()),
        _ => Line::Other,
    }
}

/// Text nested deeper than [`MAX_SECTION_DEPTH`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TooDeep {
    /// The line (1-based) of the section that went past the limit.
    pub line: usize,
}

impl fmt::Display for TooDeep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sections nest more than {MAX_SECTION_DEPTH} deep at line {} (at most {MAX_SECTION_DEPTH} levels are accepted)",
            self.line
        )
    }
}

/// Parses the text into its top-level sections. Entries outside any section
/// are kept in a section with an empty name, first. Errors: a section opened
/// more than [`MAX_SECTION_DEPTH`] deep.
pub(crate) fn parse(text: &str) -> Result<Vec<Section>, TooDeep> {
    // stack[0] holds what is outside every section; stack[d] is the open
    // section at depth d.
    let mut stack: Vec<Section> = vec![Section::default()];
    for (n, line) in text.lines().enumerate() {
        match classify(line) {
            Line::Open(name) => {
                if stack.len() > MAX_SECTION_DEPTH {
                    return Err(TooDeep { line: n + 1 });
                }
                stack.push(Section {
                    name: name.to_string(),
                    entries: Vec::new(),
                    sections: Vec::new(),
                })
            }
            Line::Close(name) => {
                // Close up to the matching open section, if there is one.
                if let Some(pos) = stack
                    .iter()
                    .skip(1)
                    .rposition(|s| s.name.eq_ignore_ascii_case(name))
                {
                    let depth = pos + 1;
                    while stack.len() > depth {
                        let s = stack.pop().expect("depth >= 1");
                        stack.last_mut().expect("root").sections.push(s);
                    }
                }
            }
            Line::Entry(k, v) => stack.last_mut().expect("root").entries.push(Entry {
                key: k.to_string(),
                value: v.to_string(),
                line: n,
            }),
            Line::Other => {}
        }
    }
    while stack.len() > 1 {
        let s = stack.pop().expect("len > 1");
        stack.last_mut().expect("root").sections.push(s);
    }
    let mut root = stack.pop().expect("root");
    let mut out = Vec::with_capacity(root.sections.len() + 1);
    if !root.entries.is_empty() {
        out.push(Section {
            name: String::new(),
            entries: std::mem::take(&mut root.entries),
            sections: Vec::new(),
        });
    }
    out.append(&mut root.sections);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_and_lenient() {
        let text = "stray = 1\n<A>\n  k = v\n  <B>\n    x = 1 = 2\n    junk\n  </B>\n  empty =\n</A>\n</Z>\n<C>\n  c = 3";
        let s = parse(text).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].name, "");
        assert_eq!(s[0].get("STRAY"), Some("1"));
        assert_eq!(s[1].name, "A");
        assert_eq!(s[1].get("k"), Some("v"));
        assert_eq!(s[1].get("empty"), Some(""));
        assert_eq!(s[1].sections[0].get("x"), Some("1 = 2"));
        assert_eq!(s[1].find("b").unwrap().entries[0].line, 4);
        assert_eq!(s[2].get_f64("c"), Some(3.0));
        assert_eq!(find_in(&s, "B").unwrap().name, "B");
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number("9,002"), Some(9002.0));
        assert_eq!(parse_number(" 2.5 "), Some(2.5));
        assert_eq!(parse_number(""), None);
        assert_eq!(parse_number("inf"), None);
    }

    #[test]
    fn crlf() {
        let s = parse("<A>\r\n k = v\r\n</A>\r\n").unwrap();
        assert_eq!(s[0].get("k"), Some("v"));
    }

    #[test]
    fn depth_limit() {
        let ok = "<a>\n".repeat(MAX_SECTION_DEPTH);
        let s = parse(&ok).unwrap();
        let mut depth = 0;
        let mut at = &s[..];
        while let Some(first) = at.first() {
            depth += 1;
            at = &first.sections;
        }
        assert_eq!(depth, MAX_SECTION_DEPTH);
        let deep = format!("x = 1\n{ok}<b>\n");
        let e = parse(&deep).unwrap_err();
        assert_eq!(e.line, MAX_SECTION_DEPTH + 2);
        assert!(e.to_string().contains("line 34"), "{e}");
        // Closed sections free their depth.
        let wide = "<a>\n</a>\n".repeat(1000);
        assert_eq!(parse(&wide).unwrap().len(), 1000);
    }

    #[test]
    fn debug_forms() {
        let s = parse("<A>\n k = v\n <B>\n </B>\n <C>\n </C>\n</A>\n").unwrap();
        assert_eq!(
            format!("{:?}", s[0]),
            "Section { name: \"A\", entries: [Entry { key: \"k\", value: \"v\", line: 1 }], sections: [Section { name: \"B\", entries: [], sections: [] }, Section { name: \"C\", entries: [], sections: [] }] }"
        );
        assert_eq!(
            format!("{:#?}", s[0]),
            "Section {\n    name: \"A\",\n    entries: [\n        Entry { key: \"k\", value: \"v\", line: 1 },\n    ],\n    sections: [\n        Section {\n            name: \"B\",\n            entries: [],\n            sections: [],\n        },\n        Section {\n            name: \"C\",\n            entries: [],\n            sections: [],\n        },\n    ],\n}"
        );
        assert_eq!(s[0].clone(), s[0]);
        assert_ne!(s[0], s[0].sections[0]);
    }
}
