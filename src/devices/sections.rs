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
//! section inside `<Workflow Settings>`). Inside, each line is `key = value`
//! (split at the first `=`, both sides trimmed; the value may be empty).
//! Parsing is lenient: lines that are neither are skipped, a closing tag
//! without its opening tag is ignored, and a section left open ends with the
//! text. Keys and section names are compared ignoring ASCII case.

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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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

    /// The first section named `name` at any depth below this one.
    pub fn find(&self, name: &str) -> Option<&Section> {
        find_in(&self.sections, name)
    }
}

pub(crate) fn find_in<'a>(sections: &'a [Section], name: &str) -> Option<&'a Section> {
    for s in sections {
        if s.name.eq_ignore_ascii_case(name) {
            return Some(s);
        }
        if let Some(found) = find_in(&s.sections, name) {
            return Some(found);
        }
    }
    None
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

/// Parses the text into its top-level sections. Entries outside any section
/// are kept in a section with an empty name, first.
pub(crate) fn parse(text: &str) -> Vec<Section> {
    let mut stack: Vec<Section> = vec![Section::default()];
    for (n, line) in text.lines().enumerate() {
        match classify(line) {
            Line::Open(name) => stack.push(Section {
                name: name.to_string(),
                ..Section::default()
            }),
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
    let root = stack.pop().expect("root");
    let mut out = Vec::with_capacity(root.sections.len() + 1);
    if !root.entries.is_empty() {
        out.push(Section {
            name: String::new(),
            entries: root.entries,
            sections: Vec::new(),
        });
    }
    out.extend(root.sections);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_and_lenient() {
        let text = "stray = 1\n<A>\n  k = v\n  <B>\n    x = 1 = 2\n    junk\n  </B>\n  empty =\n</A>\n</Z>\n<C>\n  c = 3";
        let s = parse(text);
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
        let s = parse("<A>\r\n k = v\r\n</A>\r\n");
        assert_eq!(s[0].get("k"), Some("v"));
    }
}
