//! `flamingo facts FILE`: what a recording shows about the protocol's open
//! questions, as text or one JSON object.
//!
//! Part of the `flamingo` example; include it there with
//! `#[path = "support/cli_facts.rs"] mod cli_facts;`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use flamingo_client::record::{CodeFacts, Facts, Latency};
use flamingo_client::{Error, Result};

use crate::cli_args::FactsArgs;
use crate::cli_json::JsonObject;
use crate::{Out, Report};

/// `facts`.
pub fn run(args: &FactsArgs, out: &Out) -> Result<()> {
    let facts = Facts::from_file(&args.file).map_err(|e| Error::Io(e.into()))?;
    if let Some(p) = &facts.problem {
        out.warn(&format!("{p}; the report covers the records before it"));
    }
    out.result(&FactsReport {
        file: &args.file,
        facts: &facts,
    });
    Ok(())
}

struct FactsReport<'a> {
    file: &'a Path,
    facts: &'a Facts,
}

/// `STAGE_POSITION_GET 0x6008`, or `0x7777 (unknown)`.
fn label(c: &CodeFacts) -> String {
    match c.name() {
        Some(n) => format!("{n} 0x{:04X}", c.code.0),
        None => format!("0x{:04X} (not in the catalogue)", c.code.0),
    }
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 10.0 {
        format!("{ms:.3} ms")
    } else if ms < 10_000.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.1} s", ms / 1e3)
    }
}

fn us(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e7).round() / 10.0
}

fn latency_json(l: &Latency) -> Option<JsonObject> {
    let p = |q: f64| l.percentile(q).map_or(0.0, us);
    (l.count > 0).then(|| {
        JsonObject::new()
            .int("count", l.count)
            .num("min", us(l.min))
            .num("p50", p(50.0))
            .num("p90", p(90.0))
            .num("p99", p(99.0))
            .num("max", us(l.max))
            .num("mean", l.mean().map_or(0.0, us))
    })
}

fn code_json(c: &CodeFacts) -> JsonObject {
    let statuses = c
        .statuses
        .iter()
        .fold(JsonObject::new(), |o, (s, n)| o.int(&s.to_string(), *n));
    let o = JsonObject::new()
        .str("name", c.name().unwrap_or("unknown"))
        .bool("known", c.name().is_some())
        .int("sent", c.sent)
        .int("sent_unflagged", c.sent_unflagged)
        .int("replies", c.replies)
        .object(
            "echo",
            &JsonObject::new()
                .int("same", c.echo_same)
                .int("differs", c.echo_differs)
                .int("untested", c.echo_untested),
        );
    let o = match latency_json(&c.latency) {
        Some(l) => o.object("latency_us", &l),
        None => o.null("latency_us"),
    };
    o.int("late", c.late)
        .int("unanswered", c.unanswered)
        .object(
            "unflagged",
            &JsonObject::new()
                .int("answered", c.unflagged_answered)
                .int("unanswered", c.unflagged_unanswered),
        )
        .object(
            "unsolicited",
            &JsonObject::new()
                .int("count", c.unsolicited)
                .int("others_open", c.unsolicited_others_open)
                .int("seen_elsewhere", c.unsolicited_seen_elsewhere),
        )
        .int("replies_seen_elsewhere", c.replies_seen_elsewhere)
        .object("statuses", &statuses)
        .int("with_data", c.with_data)
        .int("max_data", c.max_data)
}

impl Report for FactsReport<'_> {
    fn json(&self) -> JsonObject {
        let f = self.facts;
        let meta = f
            .meta
            .iter()
            .fold(JsonObject::new(), |o, (k, v)| o.str(k, v));
        let codes = f.codes.values().fold(JsonObject::new(), |o, c| {
            o.object(&format!("0x{:04X}", c.code.0), &code_json(c))
        });
        let o = JsonObject::new()
            .str("file", &self.file.display().to_string())
            .num("duration_s", f.duration.as_secs_f64())
            .int("records", f.records)
            .bool("finished", f.finished);
        let o = match &f.problem {
            Some(p) => o.str("problem", p),
            None => o.null("problem"),
        };
        o.int("dropped_records", f.dropped_records)
            .int("command_connections", f.command_connections)
            .int("live_connections", f.live_connections)
            .int("messages_to_instrument", f.messages_to_instrument)
            .int("messages_to_client", f.messages_to_client)
            .int("frames", f.frames)
            .int("skipped_bytes_from_client", f.skipped_bytes.0)
            .int("skipped_bytes_from_instrument", f.skipped_bytes.1)
            .int("live_unparsed", f.live_unparsed)
            .int("failed_streams", f.failed_streams)
            .int("other_code_messages", f.other_code_messages)
            .object("meta", &meta)
            .object("codes", &codes)
    }

    fn human(&self) -> String {
        let f = self.facts;
        let mut s = String::new();
        let meta = |k: &str| {
            f.meta
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        let _ = writeln!(
            s,
            "Recording {}: {:.1} s, {} records, {}",
            self.file.display(),
            f.duration.as_secs_f64(),
            f.records,
            if f.finished {
                "finished cleanly"
            } else {
                "not finished (the recorder was stopped abruptly)"
            }
        );
        if let (Some(tool), Some(up)) = (meta("tool"), meta("upstream")) {
            let _ = writeln!(s, "  made by {tool}, instrument at {up}");
        }
        let _ = writeln!(
            s,
            "  {} command and {} live connections; {} messages to the instrument, {} from it; {} live frames",
            f.command_connections,
            f.live_connections,
            f.messages_to_instrument,
            f.messages_to_client,
            f.frames
        );
        if f.dropped_records > 0 {
            let _ = writeln!(
                s,
                "  {} records were lost while recording (the disk was too slow): counts below are low",
                f.dropped_records
            );
        }
        if f.skipped_bytes != (0, 0) || f.live_unparsed > 0 || f.failed_streams > 0 {
            let _ = writeln!(
                s,
                "  {} bytes between messages from the instrument and {} from clients were not messages; \
                 {} live streams had a bad header; {} connection directions failed",
                f.skipped_bytes.1, f.skipped_bytes.0, f.live_unparsed, f.failed_streams
            );
        }
        if f.other_code_messages > 0 {
            let _ = writeln!(
                s,
                "  {} messages of codes beyond the first {} are counted only (a damaged stream?)",
                f.other_code_messages,
                flamingo_client::record::MAX_CODES
            );
        }
        let codes: Vec<&CodeFacts> = f.codes.values().collect();
        let section = |s: &mut String, title: &str, lines: Vec<String>, none: &str| {
            let _ = writeln!(s, "\n{title}");
            if lines.is_empty() {
                let _ = writeln!(s, "  {none}");
            }
            for l in lines {
                let _ = writeln!(s, "  {l}");
            }
        };
        section(
            &mut s,
            "Do replies echo the request's int32Data0? (requests with int32Data0 = 0 tell nothing)",
            codes
                .iter()
                .filter(|c| c.echo_same + c.echo_differs > 0)
                .map(|c| {
                    format!(
                        "{:<44} {} of {} replies echo it, {} differ",
                        label(c),
                        c.echo_same,
                        c.echo_same + c.echo_differs,
                        c.echo_differs
                    )
                })
                .collect(),
            "no reply to a request with a non-zero int32Data0",
        );
        section(
            &mut s,
            "Unsolicited messages (not answering a request), and whether other connections got them too",
            codes
                .iter()
                .filter(|c| c.unsolicited > 0)
                .map(|c| {
                    let other = if c.unsolicited_others_open == 0 {
                        "no other connection was open".to_string()
                    } else {
                        format!(
                            "{} while another connection was open, which received {} of them too",
                            c.unsolicited_others_open, c.unsolicited_seen_elsewhere
                        )
                    };
                    format!("{:<44} {:>6}; {other}", label(c), c.unsolicited)
                })
                .collect(),
            "none",
        );
        let shared: Vec<String> = codes
            .iter()
            .filter(|c| c.replies_seen_elsewhere > 0)
            .map(|c| {
                format!(
                    "{:<44} {} replies also reached another connection",
                    label(c),
                    c.replies_seen_elsewhere
                )
            })
            .collect();
        if !shared.is_empty() {
            section(&mut s, "Replies other connections received too", shared, "");
        }
        section(
            &mut s,
            "Reply latency (request to reply, at the recorder; percentiles within about 26 %)",
            codes
                .iter()
                .filter(|c| c.latency.count > 0)
                .map(|c| {
                    let l = &c.latency;
                    let p = |q| l.percentile(q).map_or("-".into(), ms);
                    format!(
                        "{:<44} {:>6} replies  min {}  p50 {}  p90 {}  p99 {}  max {}{}",
                        label(c),
                        l.count,
                        ms(l.min),
                        p(50.0),
                        p(90.0),
                        p(99.0),
                        ms(l.max),
                        if c.late > 0 {
                            format!("  ({} later than 3 s)", c.late)
                        } else {
                            String::new()
                        }
                    )
                })
                .collect(),
            "no replies",
        );
        section(
            &mut s,
            "Messages sent without TRIGGER_CALL_BACK: answered? (answered = a message of the code came back before the next request of the code)",
            codes
                .iter()
                .filter(|c| c.sent_unflagged > 0)
                .map(|c| {
                    format!(
                        "{:<44} {} sent: {} answered, {} not",
                        label(c),
                        c.sent_unflagged,
                        c.unflagged_answered,
                        c.unflagged_unanswered
                    )
                })
                .collect(),
            "none were sent",
        );
        section(
            &mut s,
            "Flagged requests never answered (before their connection ended)",
            codes
                .iter()
                .filter(|c| c.unanswered > 0)
                .map(|c| format!("{:<44} {} of {} sent", label(c), c.unanswered, c.sent))
                .collect(),
            "none",
        );
        section(
            &mut s,
            "Codes outside the catalogue",
            f.unknown_codes()
                .map(|c| {
                    format!(
                        "0x{:04X}  {} sent by clients, {} from the instrument",
                        c.code.0,
                        c.sent,
                        c.replies + c.unsolicited
                    )
                })
                .collect(),
            "none",
        );
        section(
            &mut s,
            "Status values from the instrument, and additional data",
            codes
                .iter()
                .filter(|c| !c.statuses.is_empty())
                .map(|c| {
                    let st: Vec<String> = c
                        .statuses
                        .iter()
                        .map(|(v, n)| format!("{v}: {n}"))
                        .collect();
                    let data = if c.with_data > 0 {
                        format!(
                            "; {} with additional data (up to {} bytes)",
                            c.with_data, c.max_data
                        )
                    } else {
                        String::new()
                    };
                    format!("{:<44} status {}{data}", label(c), st.join(", "))
                })
                .collect(),
            "no messages from the instrument",
        );
        s
    }
}
