//! `flamingo record` (the recording proxy) and `flamingo replay` (a
//! recording served by the simulator).
//!
//! Part of the `flamingo` example; include it there with
//! `#[path = "support/cli_record.rs"] mod cli_record;`.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use flamingo_client::record::{Proxy, ProxyConfig, ProxyStats};
use flamingo_client::sim::{ReplayConfig, ReplayPace, ReplayReport, Simulator};
use flamingo_client::{Error, Result};

use crate::cli_args::{Global, RecordArgs, ReplayArgs};
use crate::cli_interrupt;
use crate::cli_json::JsonObject;
use crate::cli_progress::StatusLine;
use crate::{Out, Report};

/// How often the status line is refreshed (and Ctrl-C looked at).
const TICK: Duration = Duration::from_millis(250);

/// The first address `addr` resolves to.
fn resolve(addr: &str) -> Result<SocketAddr> {
    let connect = |source| Error::Connect {
        addr: addr.to_string(),
        source,
    };
    addr.to_socket_addrs()
        .map_err(connect)?
        .next()
        .ok_or_else(|| {
            connect(io::Error::new(
                io::ErrorKind::NotFound,
                "the name resolved to no address",
            ))
        })
}

/// Waits until Ctrl-C (true) or `until` (false), calling `tick` every
/// [`TICK`].
fn wait(until: Option<Instant>, mut tick: impl FnMut() -> bool) -> bool {
    let interrupts = cli_interrupt::receiver();
    loop {
        let left = until.map(|u| u.saturating_duration_since(Instant::now()));
        if left.is_some_and(|l| l.is_zero()) || tick() {
            return false;
        }
        match interrupts.recv_timeout(left.map_or(TICK, |l| l.min(TICK))) {
            Ok(()) => return true,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return false,
        }
    }
}

// ---------------------------------------------------------------- record

/// What `record` did.
struct RecordReport<'a> {
    file: &'a Path,
    stats: ProxyStats,
}

impl Report for RecordReport<'_> {
    fn json(&self) -> JsonObject {
        let s = &self.stats;
        JsonObject::new()
            .str("file", &self.file.display().to_string())
            .int("connections", s.connections)
            .int("messages", s.messages)
            .int("frames", s.frames)
            .int("records", s.records)
            .int("bytes", s.file_bytes)
            .int("dropped_records", s.dropped_records)
    }
    fn human(&self) -> String {
        let s = &self.stats;
        let mut t = format!(
            "Recorded {} messages and {} live frames over {} connections into {} ({} records, {} bytes)",
            s.messages,
            s.frames,
            s.connections,
            self.file.display(),
            s.records,
            s.file_bytes
        );
        if s.upstream_failures > 0 {
            t.push_str(&format!(
                "\n{} client connections were closed because the microscope could not be reached",
                s.upstream_failures
            ));
        }
        if s.dropped_records > 0 {
            t.push_str(&format!(
                "\n{} records were dropped because the disk did not keep up (the traffic itself was forwarded)",
                s.dropped_records
            ));
        }
        t
    }
}

/// `record`: the proxy until Ctrl-C or `--for`.
pub fn record(args: &RecordArgs, g: &Global, out: &Out) -> Result<()> {
    let upstream = resolve(&g.addr)?;
    let mut cfg = ProxyConfig::new(args.listen, upstream).connect_timeout(g.timeout);
    if let Some(n) = args.pixels {
        cfg = cfg.pixels(n);
    }
    let guard = cli_interrupt::Guard::new();
    let proxy = Proxy::create(cfg, &args.out).map_err(Error::Io)?;
    let (addr, live) = (proxy.addr(), proxy.live_addr());
    if out.json {
        out.text(
            &JsonObject::new()
                .str("addr", &addr.to_string())
                .str("live_addr", &live.to_string())
                .str("upstream", &upstream.to_string())
                .str("file", &args.out.display().to_string())
                .to_string(),
        );
    } else {
        out.text(&format!("listening on {addr}"));
        eprintln!(
            "recording into {}: connect your software to {addr} (live images on {live}) instead of \
             the microscope at {upstream}; press Ctrl-C to stop",
            args.out.display()
        );
    }
    let until = args.duration.and_then(|d| Instant::now().checked_add(d));
    let mut status = StatusLine::new(out.json);
    let interrupted = wait(until, || {
        if status.due() {
            let s = proxy.stats();
            status.show(&format!(
                "recording: {} connections, {} messages, {} frames, {} bytes written",
                s.connections, s.messages, s.frames, s.file_bytes
            ));
        }
        false
    });
    status.finish();
    let stats = proxy.stop().map_err(|e| {
        Error::Io(io::Error::new(
            e.kind(),
            format!("finishing the recording {}: {e}", args.out.display()),
        ))
    })?;
    drop(guard);
    out.result(&RecordReport {
        file: &args.out,
        stats,
    });
    if interrupted {
        return Err(cli_interrupt::error(&format!(
            "stopped recording; {} is complete",
            args.out.display()
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------- replay

/// What `replay` did.
struct ReplayDone(ReplayReport);

impl Report for ReplayDone {
    fn json(&self) -> JsonObject {
        let r = &self.0;
        let o = JsonObject::new()
            .int("requests", r.requests)
            .int("answered", r.answered)
            .int("unanswerable", r.unanswerable_total)
            .int("replies", r.replies_sent)
            .int("events", r.events_sent)
            .int("frames", r.frames_sent)
            .int("not_sent", r.not_sent)
            .int("skipped_requests", r.skipped_requests)
            .bool("finished", r.finished);
        match &r.problem {
            Some(p) => o.str("problem", p),
            None => o.null("problem"),
        }
    }
    fn human(&self) -> String {
        self.0.to_string()
    }
}

/// `replay`: a recording served until Ctrl-C, `--for` or `--until-done`.
pub fn replay(args: &ReplayArgs, out: &Out) -> Result<()> {
    let pace = if args.fast {
        ReplayPace::Fast
    } else {
        ReplayPace::Recorded
    };
    let guard = cli_interrupt::Guard::new();
    let sim = Simulator::replay_file(
        &args.file,
        ReplayConfig::default().port(args.port).pace(pace),
    )
    .map_err(|e| {
        Error::Io(io::Error::new(
            e.kind(),
            format!("cannot replay {}: {e}", args.file.display()),
        ))
    })?;
    let addr = sim.addr();
    if out.json {
        out.text(
            &JsonObject::new()
                .str("addr", &addr.to_string())
                .str("live_addr", &sim.live_addr().to_string())
                .to_string(),
        );
    } else {
        out.text(&format!("listening on {addr}"));
        eprintln!(
            "replaying {}: commands on {addr}, live images on {}; press Ctrl-C to stop",
            args.file.display(),
            sim.live_addr()
        );
    }
    let until = args.duration.and_then(|d| Instant::now().checked_add(d));
    let mut status = StatusLine::new(out.json);
    let mut seen_client = false;
    let interrupted = wait(until, || {
        let report = sim.replay_report().unwrap_or_default();
        if status.due() {
            status.show(&format!(
                "replay: {} requests answered, {} unanswerable, {} events, {} frames{}",
                report.answered,
                report.unanswerable_total,
                report.events_sent,
                report.frames_sent,
                if report.finished {
                    "; recording played to its end"
                } else {
                    ""
                }
            ));
        }
        let open = sim.open_connections();
        seen_client |= open > 0 || report.requests > 0;
        args.until_done && report.finished && seen_client && open == 0
    });
    status.finish();
    sim.stop();
    let report = sim.replay_report().unwrap_or_default();
    drop(guard);
    if out.json {
        for u in &report.unanswerable {
            let o = JsonObject::new()
                .int("connection", u.connection)
                .str("code", &format!("0x{:04X}", u.code.0))
                .str("name", u.code.name().unwrap_or("unknown"))
                .int("int32_data0", u.int32_data0)
                .num("at_s", u.at.as_secs_f64())
                .str("reason", &u.reason);
            out.text(&JsonObject::new().object("unanswerable", &o).to_string());
        }
    }
    out.result(&ReplayDone(report));
    if interrupted {
        return Err(cli_interrupt::error("stopped the replay"));
    }
    Ok(())
}
