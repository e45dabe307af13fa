//! A tiny JSON object writer for the `flamingo` tool's `--json` output: one
//! flat object per line, keys in insertion order, strings escaped per
//! RFC 8259 and non-finite numbers written as `null` (JSON has no NaN).
//!
//! Include it with `#[path = "support/cli_json.rs"] mod cli_json;`.
#![allow(dead_code)]

use std::fmt::Write as _;

/// A JSON object being built. `to_string()` (Display) gives the text.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JsonObject {
    body: String,
}

impl JsonObject {
    /// An empty object.
    pub fn new() -> JsonObject {
        JsonObject::default()
    }

    fn key(&mut self, key: &str) {
        if !self.body.is_empty() {
            self.body.push(',');
        }
        write_str(&mut self.body, key);
        self.body.push(':');
    }

    /// Adds a string member.
    pub fn str(mut self, key: &str, value: &str) -> JsonObject {
        self.key(key);
        write_str(&mut self.body, value);
        self
    }

    /// Adds an integer member.
    pub fn int(mut self, key: &str, value: impl Into<i128>) -> JsonObject {
        self.key(key);
        let _ = write!(self.body, "{}", value.into());
        self
    }

    /// Adds a number member; NaN and infinities become `null`.
    pub fn num(mut self, key: &str, value: f64) -> JsonObject {
        self.key(key);
        write_f64(&mut self.body, value);
        self
    }

    /// Adds a number member, or `null` for `None`.
    pub fn opt_num(self, key: &str, value: Option<f64>) -> JsonObject {
        match value {
            Some(v) => self.num(key, v),
            None => self.null(key),
        }
    }

    /// Adds a boolean member.
    pub fn bool(mut self, key: &str, value: bool) -> JsonObject {
        self.key(key);
        self.body.push_str(if value { "true" } else { "false" });
        self
    }

    /// Adds a `null` member.
    pub fn null(mut self, key: &str) -> JsonObject {
        self.key(key);
        self.body.push_str("null");
        self
    }

    /// Appends every member of `other`, in order.
    pub fn merge(mut self, other: &JsonObject) -> JsonObject {
        if !other.body.is_empty() {
            if !self.body.is_empty() {
                self.body.push(',');
            }
            self.body.push_str(&other.body);
        }
        self
    }

    /// Adds a member whose value is another object.
    pub fn object(mut self, key: &str, value: &JsonObject) -> JsonObject {
        self.key(key);
        let _ = write!(self.body, "{value}");
        self
    }
}

impl std::fmt::Display for JsonObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{{{}}}", self.body)
    }
}

/// Appends `s` as a JSON string literal (quotes included).
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            // Line and paragraph separators are valid JSON but break
            // JavaScript parsers and some line-oriented tools.
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends a finite number in the shortest form that reads back exactly
/// (Rust's `Display` for `f64` never uses an exponent, which JSON allows
/// anyway), or `null` for NaN and infinities.
pub fn write_f64(out: &mut String, v: f64) {
    if v.is_finite() {
        // -0.0 prints as "-0", which is valid JSON.
        let _ = write!(out, "{v}");
    } else {
        out.push_str("null");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_strings() {
        let mut s = String::new();
        write_str(&mut s, "a\"b\\c\nd\r\te\u{1}\u{7f}\u{8}\u{c}é\u{2028}");
        assert_eq!(s, r#""a\"b\\c\nd\r\te\u0001\u007f\b\fé\u2028""#);
        let mut w = String::new();
        write_str(&mut w, r"C:\Users\lab\snap.tif");
        assert_eq!(w, r#""C:\\Users\\lab\\snap.tif""#);
    }

    #[test]
    fn numbers_are_finite_or_null() {
        let o = JsonObject::new()
            .num("a", 8.032)
            .num("b", f64::NAN)
            .num("c", f64::INFINITY)
            .num("d", 1.0)
            .num("e", -217.965)
            .num("f", 1e-7)
            .opt_num("g", None)
            .int("h", -3i32)
            .int("i", u64::MAX);
        assert_eq!(
            o.to_string(),
            r#"{"a":8.032,"b":null,"c":null,"d":1,"e":-217.965,"f":0.0000001,"g":null,"h":-3,"i":18446744073709551615}"#
        );
        // Round trip of the shortest representation.
        let mut s = String::new();
        write_f64(&mut s, 0.1 + 0.2);
        assert_eq!(s.parse::<f64>().unwrap(), 0.1 + 0.2);
    }

    #[test]
    fn objects_and_bools() {
        let inner = JsonObject::new().str("k", "v");
        let o = JsonObject::new()
            .bool("t", true)
            .bool("f", false)
            .null("n")
            .object("o", &inner);
        assert_eq!(
            o.to_string(),
            r#"{"t":true,"f":false,"n":null,"o":{"k":"v"}}"#
        );
        assert_eq!(JsonObject::new().to_string(), "{}");
        let m = JsonObject::new()
            .str("step", "x")
            .merge(&JsonObject::new())
            .merge(&JsonObject::new().int("a", 1u8).int("b", 2u8));
        assert_eq!(m.to_string(), r#"{"step":"x","a":1,"b":2}"#);
        assert_eq!(JsonObject::new().merge(&m).to_string(), m.to_string());
    }
}
