//! Deeply nested settings text must not overflow the stack: the section
//! parser refuses nesting past its documented limit with a typed error, and
//! every operation on a section tree (drop, clone, debug, compare, find) is
//! iterative, so even a tree built by hand at any depth is safe.
//!
//! 200 000 levels (`"<a>\n"` repeated, 800 KB, well under the
//! additional-data limit) is far deeper than a recursive walk survives on a
//! test thread's 2 MiB stack.

use std::time::Duration;

use flamingo_client::devices::{Section, Workflow};
use flamingo_client::sim::{SimConfig, Simulator};
use flamingo_client::{Client, ClientConfig, Error};

const DEPTH: usize = 200_000;

fn deep_text() -> String {
    "<a>\n".repeat(DEPTH)
}

#[test]
fn deep_workflow_text_is_refused() {
    match Workflow::from_text(&deep_text()) {
        Err(Error::InvalidArgument { what }) => {
            assert!(what.contains("nest"), "{what}");
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a 200 000-deep workflow was accepted"),
    }
}

#[test]
fn deep_settings_from_the_instrument_are_a_protocol_error() {
    let sim = Simulator::start(SimConfig::default().settings_text(deep_text())).unwrap();
    let client = Client::connect(&sim.addr().to_string(), ClientConfig::default()).unwrap();
    let r = client.settings().timeout(Duration::from_secs(10)).load();
    match r {
        Err(Error::Protocol { detail }) => assert!(detail.contains("nest"), "{detail}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("200 000-deep settings were accepted"),
    }
    client.close();
    sim.stop();
}

#[test]
fn a_deep_tree_built_by_hand_is_safe() {
    let mut s = Section::default();
    for _ in 0..DEPTH {
        s = Section {
            name: "a".into(),
            entries: Vec::new(),
            sections: vec![s],
        };
    }
    let c = s.clone();
    assert!(c == s);
    assert!(s.find("nothing").is_none());
    let text = format!("{s:?}");
    assert!(text.len() > DEPTH, "{}", text.len());
    assert!(text.starts_with("Section { name: \"a\""), "{}", &text[..60]);
    let mut other = c.clone();
    // Differ at the bottom only.
    {
        let mut at = &mut other;
        while !at.sections.is_empty() {
            at = &mut at.sections[0];
        }
        at.name = "b".into();
    }
    assert!(other != s);
    assert_eq!(other.find("B").map(|b| b.name.as_str()), Some("b"));
    drop(c);
    drop(other);
    drop(s);
}
