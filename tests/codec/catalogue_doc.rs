//! Keeps `protocol.md` in step with the code.
//!
//! The tables of protocol.md that restate something the code defines are
//! fenced by HTML comments (`<!-- catalogue:begin -->` ... `<!-- catalogue:end -->`
//! and so on). These tests parse the fenced tables and compare them with the
//! codec: the command catalogue row by row, the message and live-header
//! layouts, the golden hex dumps, the flags, the unsolicited codes and the
//! limits that are codec constants. A change to either side without the other
//! fails here, naming the row.

use std::collections::{BTreeMap, BTreeSet};

use flamingo_client::codec::{
    hex_dump, offset, CommandCode, Flags, LiveHeader, MatchKey, Message, StatusPolicy, Unsolicited,
    CATALOGUE, DEFAULT_ADDITIONAL_DATA_LIMIT, DEFAULT_MAX_IMAGE_BYTES, LIVE_HEADER_LEN,
    MESSAGE_LEN, TEXT_LEN,
};

fn doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/protocol.md");
    std::fs::read_to_string(path)
        .expect("protocol.md at the repository root")
        .replace("\r\n", "\n")
}

/// The text between `<!-- NAME:begin -->` and `<!-- NAME:end -->`.
fn region<'a>(doc: &'a str, name: &str) -> &'a str {
    let begin = format!("<!-- {name}:begin -->");
    let end = format!("<!-- {name}:end -->");
    let a = doc
        .find(&begin)
        .unwrap_or_else(|| panic!("protocol.md lacks {begin}"));
    let b = doc[a..]
        .find(&end)
        .unwrap_or_else(|| panic!("protocol.md lacks {end}"));
    &doc[a + begin.len()..a + b]
}

/// The cells of a markdown table row, trimmed; None for non-rows and for
/// header separator rows.
fn cells(line: &str) -> Option<Vec<String>> {
    let l = line.trim();
    if !l.starts_with('|') || !l.ends_with('|') || l.len() < 2 {
        return None;
    }
    let v: Vec<String> = l[1..l.len() - 1]
        .split('|')
        .map(|c| c.trim().to_string())
        .collect();
    if v.iter()
        .all(|c| c.chars().all(|ch| matches!(ch, '-' | ':')))
    {
        return None;
    }
    Some(v)
}

fn unquote(s: &str) -> &str {
    s.trim_matches('`')
}

fn policy_name(p: StatusPolicy) -> &'static str {
    if p == StatusPolicy::CHECKED {
        "CHECKED"
    } else if p == StatusPolicy::INFORMATIONAL {
        "INFORMATIONAL"
    } else {
        panic!("catalogue uses a policy protocol.md has no name for: {p:?}")
    }
}

fn unsolicited_name(u: Unsolicited) -> &'static str {
    match u {
        Unsolicited::Never => "Never",
        Unsolicited::Sometimes => "Sometimes",
        Unsolicited::Always => "Always",
    }
}

fn key_name(k: MatchKey) -> &'static str {
    match k {
        MatchKey::Code => "Code",
        MatchKey::Int0 => "Int0",
    }
}

/// Section 7: one row per catalogue code, under its subsystem's heading, with
/// the hex value, decimal value, name and the three rules of the catalogue.
#[test]
fn catalogue_table_matches_code() {
    let doc = doc();
    let text = region(&doc, "catalogue");
    let mut heading = String::new();
    let mut rows: BTreeMap<u32, (Vec<String>, String)> = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') {
            heading = line.to_string();
            continue;
        }
        let Some(c) = cells(line) else { continue };
        if c[0] == "Hex" {
            assert_eq!(
                c,
                [
                    "Hex",
                    "Dec",
                    "Name",
                    "Request",
                    "Answer in",
                    "Unsolicited",
                    "Key",
                    "Status"
                ],
                "catalogue table header"
            );
            continue;
        }
        assert_eq!(c.len(), 8, "catalogue row has 8 cells: {line}");
        let hex = c[0]
            .strip_prefix("0x")
            .unwrap_or_else(|| panic!("hex cell {:?}", c[0]));
        let code = u32::from_str_radix(hex, 16).unwrap();
        assert!(
            rows.insert(code, (c, heading.clone())).is_none(),
            "code {code:#06X} listed twice in protocol.md"
        );
    }
    for info in CATALOGUE {
        let code = info.code.value();
        let (c, heading) = rows
            .remove(&code)
            .unwrap_or_else(|| panic!("protocol.md section 7 lacks {code:#06X} {}", info.name));
        let what = format!("row {code:#06X} {}", info.name);
        assert_eq!(c[0], format!("0x{code:04X}"), "{what}: hex");
        assert_eq!(c[1], code.to_string(), "{what}: decimal");
        assert_eq!(unquote(&c[2]), info.name, "{what}: name");
        assert_eq!(
            c[5],
            unsolicited_name(info.unsolicited),
            "{what}: unsolicited"
        );
        assert_eq!(c[6], key_name(info.match_key), "{what}: match key");
        assert_eq!(c[7], policy_name(info.status), "{what}: status policy");
        let sub = format!("`Subsystem::{:?}`", info.subsystem);
        assert!(
            heading.contains(&sub),
            "{what} is under {heading:?}, expected a heading naming {sub}"
        );
        assert!(!c[3].is_empty() && !c[4].is_empty(), "{what}: empty cell");
    }
    let extra: Vec<String> = rows.keys().map(|c| format!("{c:#06X}")).collect();
    assert!(
        extra.is_empty(),
        "protocol.md lists codes that are not in codec::CATALOGUE: {extra:?}"
    );
}

/// Section 7: the name conflicts are explained, with the library's handling.
#[test]
fn name_conflicts_documented() {
    let doc = doc();
    let sec = &doc[doc
        .find("### Name conflicts")
        .expect("Name conflicts section")..];
    for (code, names) in [
        (0x2005, &["LASER_PREVIEW_DISABLE", "LASER_ENABLE_LINE"][..]),
        (
            0x3011,
            &[
                "CAMERA_STACK_COMPLETE",
                "CAMERA_ROI_TOP_SET",
                "without waiting",
            ][..],
        ),
        (
            0x6006,
            &["STAGE_VELOCITY_SET", "STAGE_POSITION_SET_TEXT"][..],
        ),
    ] {
        let row = sec
            .lines()
            .find(|l| l.starts_with(&format!("| 0x{code:04X} |")))
            .unwrap_or_else(|| panic!("no conflict row for {code:#06X}"));
        for n in names {
            assert!(row.contains(n), "conflict row {code:#06X} lacks {n}");
        }
    }
    assert_eq!(
        CommandCode::CAMERA_ROI_TOP_SET,
        CommandCode::CAMERA_STACK_COMPLETE
    );
    assert!(CommandCode::CAMERA_ROI_TOP_SET
        .info()
        .unwrap()
        .unsolicited
        .always());
}

/// Section 8: every code that can arrive unsolicited is described, and only those.
#[test]
fn unsolicited_table_matches_catalogue() {
    let doc = doc();
    let text = region(&doc, "unsolicited");
    let mut listed = BTreeSet::new();
    for c in text.lines().filter_map(cells) {
        if c[0] == "Code" {
            continue;
        }
        let code = u32::from_str_radix(c[0].trim_start_matches("0x"), 16).unwrap();
        let info = CommandCode(code)
            .info()
            .unwrap_or_else(|| panic!("{code:#06X} not in the catalogue"));
        assert_eq!(unquote(&c[1]), info.name);
        assert!(
            info.unsolicited.possible(),
            "{} is listed as unsolicited but catalogued Never",
            info.name
        );
        listed.insert(code);
    }
    for info in CATALOGUE.iter().filter(|i| i.unsolicited.possible()) {
        assert!(
            listed.contains(&info.code.value()),
            "section 8 lacks {} ({:?})",
            info.name,
            info.unsolicited
        );
    }
}

/// Section 2: the layout table agrees with `codec::offset` and covers 128 bytes.
#[test]
fn message_layout_matches_offsets() {
    let doc = doc();
    let text = region(&doc, "layout");
    let want: BTreeMap<&str, usize> = [
        ("start marker", offset::START),
        ("`code`", offset::CODE),
        ("`status`", offset::STATUS),
        ("`hardware_id`", offset::HARDWARE_ID),
        ("`subsystem_id`", offset::SUBSYSTEM_ID),
        ("`client_id`", offset::CLIENT_ID),
        ("`int32_data0`", offset::INT32_DATA0),
        ("`int32_data1`", offset::INT32_DATA1),
        ("`int32_data2`", offset::INT32_DATA2),
        ("`flags`", offset::FLAGS),
        ("`double_data`", offset::DOUBLE_DATA),
        ("`additional_data_len`", offset::ADDITIONAL_DATA_BYTES),
        ("`buffer`", offset::BUFFER),
        ("end marker", offset::END),
    ]
    .into_iter()
    .collect();
    let mut next = 0;
    let mut seen = 0;
    for c in text.lines().filter_map(cells) {
        if c[0] == "Offset" {
            continue;
        }
        let off: usize = c[0].parse().unwrap();
        let hex = usize::from_str_radix(c[1].trim_start_matches("0x"), 16).unwrap();
        let size: usize = c[2].parse().unwrap();
        let field = c[4].as_str();
        assert_eq!(off, hex, "{field}: decimal and hex offsets differ");
        assert_eq!(off, next, "{field}: fields must be contiguous");
        assert_eq!(
            Some(&off),
            want.get(field),
            "{field}: offset differs from codec::offset"
        );
        let type_size = match c[3].as_str() {
            "u32" | "i32" => 4,
            "f64" => 8,
            "bytes" => TEXT_LEN,
            t => panic!("unknown type {t}"),
        };
        assert_eq!(size, type_size, "{field}: size vs type");
        next += size;
        seen += 1;
    }
    assert_eq!(next, MESSAGE_LEN);
    assert_eq!(seen, want.len());
    // The wire bytes of the markers as the table states them.
    assert!(text.contains("`54 E6 21 F3`") && text.contains("`21 43 DC FE`"));
    let b = Message::new(CommandCode(0)).to_bytes();
    assert_eq!(&b[..4], &[0x54, 0xE6, 0x21, 0xF3]);
    assert_eq!(&b[124..], &[0x21, 0x43, 0xDC, 0xFE]);
}

/// Section 10: the live header table agrees with `LiveHeader`.
#[test]
fn live_header_table_matches_decoder() {
    let doc = doc();
    let text = region(&doc, "live");
    // Word i of the header holds i + 1.
    let mut b = [0u8; LIVE_HEADER_LEN];
    for i in 0..LIVE_HEADER_LEN / 4 {
        b[i * 4..i * 4 + 4].copy_from_slice(&(i as u32 + 1).to_le_bytes());
    }
    let h = LiveHeader::decode(&b);
    let value = |field: &str| -> u32 {
        match field {
            "`image_size`" => h.image_size,
            "`width`" => h.width,
            "`height`" => h.height,
            "`scale_min`" => h.scale_min,
            "`scale_max`" => h.scale_max,
            "`timestamp_ms`" => h.timestamp_ms,
            "`frame_number`" => h.frame_number,
            "`exposure_us`" => h.exposure_us,
            "`reserved[0]`" => h.reserved[0],
            "`reserved[1]`" => h.reserved[1],
            f => panic!("unknown live header field {f}"),
        }
    };
    let mut rows = 0;
    for c in text.lines().filter_map(cells) {
        if c[0] == "Offset" {
            continue;
        }
        let off: usize = c[0].parse().unwrap();
        assert_eq!(c[1], "4");
        assert_eq!(c[2], "u32");
        assert_eq!(value(&c[3]) as usize, off / 4 + 1, "{} at {off}", c[3]);
        rows += 1;
    }
    assert_eq!(rows * 4, LIVE_HEADER_LEN);
}

/// The messages behind the golden dumps of protocol.md.
fn goldens() -> BTreeMap<&'static str, Message> {
    let t = Flags::TRIGGER_CALL_BACK;
    [
        (
            "camera_image_size_get",
            Message::new(CommandCode::CAMERA_IMAGE_SIZE_GET).with_flags(t),
        ),
        (
            "stage_position_get_y",
            Message::new(CommandCode::STAGE_POSITION_GET)
                .with_int32_data0(2)
                .with_flags(t),
        ),
        (
            "laser_level_reply",
            Message::new(CommandCode::LASER_LEVEL_GET)
                .with_int32_data0(3)
                .with_flags(t)
                .with_text("11.49")
                .unwrap(),
        ),
    ]
    .into_iter()
    .collect()
}

/// Section 2: every golden dump is exactly what the encoder produces.
#[test]
fn golden_dumps_match_encoder() {
    let doc = doc();
    let mut want = goldens();
    let tag = "<!-- golden:";
    let mut rest = doc.as_str();
    while let Some(i) = rest.find(tag) {
        let after = &rest[i + tag.len()..];
        let name = &after[..after.find(" -->").unwrap()];
        let block_start = after
            .find("```text\n")
            .expect("```text block after golden tag")
            + 8;
        let block = &after[block_start..];
        let block = &block[..block.find("```").unwrap()];
        let msg = want
            .remove(name)
            .unwrap_or_else(|| panic!("unknown or repeated golden dump {name:?} in protocol.md"));
        assert_eq!(
            block,
            hex_dump(&msg.to_bytes()),
            "golden dump {name} differs from the encoder"
        );
        rest = &after[block_start..];
    }
    assert!(
        want.is_empty(),
        "golden dumps missing from protocol.md: {:?}",
        want.keys()
    );
    assert!(doc.contains("`0a d7 a3 70 3d 8a 1e 40`"));
    let b = Message::new(CommandCode(0))
        .with_double_data(7.635)
        .to_bytes();
    assert_eq!(
        &b[40..48],
        &[0x0a, 0xd7, 0xa3, 0x70, 0x3d, 0x8a, 0x1e, 0x40]
    );
}

/// Section 3: every named flag with its value.
#[test]
fn flags_table_matches() {
    let doc = doc();
    for f in [
        Flags::TRIGGER_CALL_BACK,
        Flags::EXPERIMENT_TIME_REMAINING,
        Flags::STAGE_POSITIONS_IN_BUFFER,
        Flags::MAX_PROJECTION,
        Flags::SAVE_TO_DISK,
        Flags::STAGE_NOT_UPDATE_CLIENT,
        Flags::STAGE_ZSWEEP,
    ] {
        let row = format!("| `0x{:08X}` | `{f}` |", f.bits());
        assert!(doc.contains(&row), "protocol.md section 3 lacks {row}");
    }
}

/// Section 12: limits that are codec constants carry the constant's value.
#[test]
fn limits_match_constants() {
    let doc = doc();
    let text = region(&doc, "limits");
    let consts: BTreeMap<&str, u64> = [
        ("`codec::MESSAGE_LEN`", MESSAGE_LEN as u64),
        ("`codec::TEXT_LEN`", TEXT_LEN as u64),
        ("`codec::LIVE_HEADER_LEN`", LIVE_HEADER_LEN as u64),
        (
            "`codec::DEFAULT_ADDITIONAL_DATA_LIMIT`",
            u64::from(DEFAULT_ADDITIONAL_DATA_LIMIT),
        ),
        (
            "`codec::DEFAULT_MAX_IMAGE_BYTES`",
            u64::from(DEFAULT_MAX_IMAGE_BYTES),
        ),
    ]
    .into_iter()
    .collect();
    let mut checked = 0;
    for c in text.lines().filter_map(cells) {
        let Some(&v) = consts.get(c[2].as_str()) else {
            continue;
        };
        let (n, unit) = c[1].split_once(' ').expect("value and unit");
        let n: u64 = n.parse().unwrap();
        let bytes = match unit {
            "B" => n,
            "KiB" => n << 10,
            "MiB" => n << 20,
            u => panic!("unit {u}"),
        };
        assert_eq!(bytes, v, "limit {} in protocol.md", c[0]);
        checked += 1;
    }
    assert_eq!(checked, consts.len(), "every codec limit is in the table");
}
