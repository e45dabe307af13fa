//! `flamingo demo`: a full session against the simulator, in-process.
//!
//! Part of the `flamingo` example (uses its command functions); include it
//! there with `#[path = "support/cli_demo.rs"] mod cli_demo;`.

use std::collections::BTreeMap;
use std::io;
use std::time::{Duration, Instant};

use flamingo_client::devices::Workflow;
use flamingo_client::sim::{SimConfig, Simulator};
use flamingo_client::{Axis, Client, ClientConfig, Error, Result};

use crate::cli_json::JsonObject;
use crate::{LiveUntil, Out, Report};

/// The workflow the demo runs: the repository's Z-stack fixture (476 planes).
const ZSTACK: &[u8] = include_bytes!("../../fixtures/ZStack.txt");
/// How long the demo keeps live view on.
const LIVE_FOR: Duration = Duration::from_secs(2);

/// The simulator of the demo: a small camera so images are quick on any PC,
/// a fast stage, 50 frames/s of live view and 3 ms per workflow plane.
fn sim_config() -> SimConfig {
    SimConfig::default()
        .image_size(512, 512)
        .stage_velocity(50.0, 720.0)
        .live_fps(50.0)
        .plane_interval(Duration::from_millis(3))
}

struct Steps<'a> {
    out: &'a Out,
    n: usize,
}

impl Steps<'_> {
    /// Prints a step's numbered heading before it runs (nothing with `--json`).
    fn begin(&mut self, title: &str) {
        self.n += 1;
        if !self.out.json {
            self.out.text(&format!("\n{}. {title}", self.n));
        }
    }

    /// Prints a step's result: its text under the heading, or one JSON line
    /// with a "step" key.
    fn end(&mut self, step: &str, json: JsonObject, human: &str) {
        if self.out.json {
            let line = JsonObject::new().str("step", step).merge(&json);
            self.out.text(&line.to_string());
        } else {
            let text: Vec<String> = human.lines().map(|l| format!("   {l}")).collect();
            self.out.text(&text.join("\n"));
        }
    }

    /// A step whose result is a report.
    fn report(&mut self, step: &str, r: &dyn Report) {
        self.end(step, r.json(), &r.human());
    }
}

/// An event kind in plain words.
fn plain(name: &str) -> &str {
    match name {
        "motion_stopped" => "stage stopped",
        "system_idle" => "system idle",
        "stack_complete" => "stack complete",
        "gauge_size" => "progress maximum",
        "gauge_value" => "progress updates",
        "images_saved" => "images saved",
        "laser_level" => "laser level reports",
        "unknown" => "other messages",
        other => other,
    }
}

/// Runs the demo; `timeout` is the per-request deadline.
pub fn run(out: &Out, timeout: Duration) -> Result<()> {
    let started = Instant::now();
    if !out.json {
        out.text(
            "Flamingo demo: a full session against the built-in microscope simulator\n\
             ========================================================================",
        );
    }
    let mut steps = Steps { out, n: 0 };

    steps.begin("Start the simulator");
    let sim = Simulator::start(sim_config()).map_err(|e| {
        Error::Io(io::Error::new(
            e.kind(),
            format!("cannot start the simulator: {e}"),
        ))
    })?;
    let addr = sim.addr().to_string();
    steps.end(
        "simulator",
        JsonObject::new()
            .str("addr", &addr)
            .str("live_addr", &sim.live_addr().to_string()),
        &format!(
            "listening on {addr} (live images on {}), 512 x 512 camera",
            sim.live_addr()
        ),
    );

    steps.begin("Connect");
    let t0 = Instant::now();
    let client = Client::connect(
        &addr,
        ClientConfig::default()
            .event_queue_depth(4096)
            .request_timeout(timeout)
            .connect_timeout(timeout),
    )?;
    let connect_time = t0.elapsed();
    steps.end(
        "connect",
        JsonObject::new().num("ms", ms(connect_time)),
        &format!("connected to {addr} in {:.1} ms", ms(connect_time)),
    );
    let result = session(&client, &sim, &mut steps, timeout, started);
    client.close();
    sim.stop();
    result
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}

fn session(
    client: &Client,
    sim: &Simulator,
    steps: &mut Steps<'_>,
    t: Duration,
    started: Instant,
) -> Result<()> {
    // Every event of the session, counted at the end. The queue is deep
    // enough for the whole session (the workflow sends about 480).
    let events = client.subscribe();

    steps.begin("System state");
    steps.report("state", &crate::system_state(client, t)?);
    steps.begin("Camera image size");
    steps.report("image_size", &crate::image_size(client, t)?);
    steps.begin("Stage position");
    let pos = crate::positions(client, t)?;
    steps.report("position", &pos);

    let z = pos.0[2];
    let (lo, hi) = sim.config().limits[2];
    let target = if z + 0.5 <= hi {
        z + 0.5
    } else {
        (z - 0.5).max(lo)
    };
    let target = (target * 1000.0).round() / 1000.0;
    steps.begin(&format!("Move z to {target} mm and wait for it to stop"));
    let quiet = Out { json: true };
    crate::check_soft_limits(client, t, Axis::Z, target, &quiet)?;
    steps.report("move", &crate::move_axis(client, t, Axis::Z, target, true)?);

    steps.begin("Snapshot: one image, saved as 16-bit TIFF");
    let path = std::env::temp_dir().join("flamingo-demo-snapshot.tif");
    let snap = crate::snapshot(client, t, &path, 1)?;
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    steps.end(
        "snapshot",
        snap.json(),
        &format!(
            "{}\n{} KB; open it in Fiji / ImageJ",
            snap.human(),
            size / 1024
        ),
    );

    steps.begin(&format!("Live view for {} s", LIVE_FOR.as_secs()));
    let live = crate::live(client, t, LiveUntil::Duration(LIVE_FOR), !steps.out.json)?;
    steps.report("live", &live);

    steps.begin("Workflow ZStack.txt (476-plane Z stack), progress on stderr");
    let zstack = Workflow::from_bytes(ZSTACK)?;
    zstack.validate()?;
    let limits = client.settings().timeout(t).soft_limits()?;
    let wf = crate::workflow(
        client,
        t,
        &zstack,
        "ZStack.txt",
        true,
        !steps.out.json,
        Some(limits),
    )?;
    steps.report("workflow", &wf);

    // The workflow returned on the idle notice, which every subscription
    // received at the same time: the counts are complete.
    steps.begin("Events seen");
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    for ev in events.try_iter() {
        if ev.kind.is_connection() {
            continue;
        }
        *counts.entry(ev.kind.name()).or_default() += 1;
    }
    let mut json = JsonObject::new();
    let mut human = Vec::new();
    for (name, n) in &counts {
        json = json.int(name, *n);
        human.push(format!("{} x{n}", plain(name)));
    }
    let mut human = if human.is_empty() {
        "none".to_string()
    } else {
        human.join(", ")
    };
    if events.dropped() > 0 {
        human.push_str(&format!(
            " (and {} not counted: queue full)",
            events.dropped()
        ));
    }
    steps.end("events", json, &human);

    steps.begin("Summary");
    let stats = client.stats();
    let total = started.elapsed();
    steps.end(
        "summary",
        JsonObject::new()
            .int("messages_sent", stats.messages_sent)
            .int("messages_received", stats.messages_received)
            .int("timeouts", stats.timeouts)
            .num("mean_latency_ms", stats.latency.mean_us as f64 / 1e3)
            .num("seconds", (total.as_secs_f64() * 100.0).round() / 100.0),
        &format!(
            "{}, {} received, {}; request latency mean {:.2} ms, p99 {:.2} ms\n\
             demo finished in {:.1} s",
            crate::plural(stats.messages_sent, "message") + " sent",
            stats.messages_received,
            crate::plural(stats.timeouts, "timeout"),
            stats.latency.mean_us as f64 / 1e3,
            stats.latency.p99_us as f64 / 1e3,
            total.as_secs_f64()
        ),
    );
    Ok(())
}
