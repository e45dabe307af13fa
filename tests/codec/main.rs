//! Codec tests: the message layout against golden bytes, the catalogue against protocol.md, error conversions, and property tests of framing and parsing.
//!
//! One test binary per subject: each module below is a former test file.

mod catalogue_doc;
mod errors;
mod golden;
mod props;
