//! `flamingo demo`: a full session against the simulator, in-process.
//!
//! Part of the `flamingo` example (uses its command functions); include it
//! there with `#[path = "support/cli_demo.rs"] mod cli_demo;`.

use std::collections::BTreeMap;
use std::io;
use std::time::{Duration, Instant};

use flamingo_client::devices::Workflow;
use flamingo_client::sim::{SimConfig, Simulator};
use flamingo_client::{Axis, Client, ClientConfig, Error, EventKind, Result};

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
    /// Prints one step: a numbered heading and the text, or one JSON line
    /// with a "step" key.
    fn show(&mut self, step: &str, title: &str, json: JsonObject, human: &str) {
        self.n += 1;
        if self.out.json {
            let line = JsonObject::new().str("step", step).merge(&json);
            self.out.text(&line.to_string());
        } else {
            let mut s = format!("\n{}. {title}", self.n);
            for line in human.lines() {
                s.push_str("\n   ");
                s.push_str(line);
            }
            self.out.text(&s);
        }
    }

    fn report(&mut self, step: &str, title: &str, r: &dyn Report) {
        self.show(step, title, r.json(), &r.human());
    }

    /// A heading printed before a step that draws on stderr (the progress bar).
    fn announce(&self, title: &str) {
        if !self.out.json {
            self.out.text(&format!("\n{}. {title}", self.n + 1));
        }
    }

    /// The result of an announced step.
    fn finish_announced(&mut self, step: &str, r: &dyn Report) {
        if self.out.json {
            self.report(step, "", r);
        } else {
            self.n += 1;
            let text: Vec<String> = r.human().lines().map(|l| format!("   {l}")).collect();
            self.out.text(&text.join("\n"));
        }
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

    let sim = Simulator::start(sim_config()).map_err(|e| {
        Error::Io(io::Error::new(
            e.kind(),
            format!("cannot start the simulator: {e}"),
        ))
    })?;
    let addr = sim.addr().to_string();
    steps.show(
        "simulator",
        "Simulator",
        JsonObject::new()
            .str("addr", &addr)
            .str("live_addr", &sim.live_addr().to_string()),
        &format!(
            "listening on {addr} (live images on {}), 512 x 512 camera",
            sim.live_addr()
        ),
    );

    let t0 = Instant::now();
    let client = Client::connect(
        &addr,
        ClientConfig::default()
            .event_queue_depth(4096)
            .request_timeout(timeout)
            .connect_timeout(timeout),
    )?;
    let connect_time = t0.elapsed();
    steps.show(
        "connect",
        "Connect",
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

    steps.report("state", "System state", &crate::system_state(client, t)?);
    steps.report(
        "image_size",
        "Camera image size",
        &crate::image_size(client, t)?,
    );
    let pos = crate::positions(client, t)?;
    steps.report("position", "Stage position", &pos);

    let z = pos.0[2];
    let (lo, hi) = sim.config().limits[2];
    let target = if z + 0.5 <= hi {
        z + 0.5
    } else {
        (z - 0.5).max(lo)
    };
    let target = (target * 1000.0).round() / 1000.0;
    steps.report(
        "move",
        &format!("Move z to {target} mm and wait for it to stop"),
        &crate::move_axis(client, t, Axis::Z, target, true)?,
    );

    let path = std::env::temp_dir().join("flamingo-demo-snapshot.tif");
    let snap = crate::snapshot(client, t, &path)?;
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    steps.show(
        "snapshot",
        "Snapshot saved as 16-bit TIFF",
        snap.json(),
        &format!(
            "{}\n{} KB; open it in Fiji / ImageJ",
            snap.human(),
            size / 1024
        ),
    );

    let live = crate::live(client, t, LiveUntil::Duration(LIVE_FOR))?;
    steps.report(
        "live",
        &format!("Live view for {} s", LIVE_FOR.as_secs()),
        &live,
    );

    steps.announce("Workflow ZStack.txt (476-plane Z stack), progress on stderr");
    let zstack = Workflow::from_bytes(ZSTACK)?;
    let wf = crate::workflow(client, t, &zstack, "ZStack.txt", true)?;
    steps.finish_announced("workflow", &wf);

    // The workflow returned on the idle notice, which every subscription
    // received at the same time: the counts are complete.
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    // Messages of other kinds, by command name (for example the workflow
    // start's acknowledgement, which the workflow facade takes as an event).
    let mut others: BTreeMap<String, u64> = BTreeMap::new();
    for ev in events.try_iter() {
        if ev.kind.is_connection() {
            continue;
        }
        *counts.entry(ev.kind.name()).or_default() += 1;
        if ev.kind == EventKind::Unknown {
            let code = ev.code().map(|c| c.to_string()).unwrap_or_default();
            *others.entry(code).or_default() += 1;
        }
    }
    let mut json = JsonObject::new();
    let mut human = Vec::new();
    for (name, n) in &counts {
        json = json.int(name, *n);
        if *name != "unknown" {
            human.push(format!("{name} x{n}"));
        }
    }
    for (code, n) in &others {
        human.push(format!("other ({code}) x{n}"));
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
    steps.show("events", "Events seen", json, &human);

    let stats = client.stats();
    let total = started.elapsed();
    steps.show(
        "summary",
        "Summary",
        JsonObject::new()
            .int("messages_sent", stats.messages_sent)
            .int("messages_received", stats.messages_received)
            .int("timeouts", stats.timeouts)
            .num("mean_latency_ms", stats.latency.mean_us as f64 / 1e3)
            .num("seconds", (total.as_secs_f64() * 100.0).round() / 100.0),
        &format!(
            "{} messages sent, {} received, {} timeouts; request latency mean {:.2} ms, p99 {:.2} ms\n\
             demo finished in {:.1} s",
            stats.messages_sent,
            stats.messages_received,
            stats.timeouts,
            stats.latency.mean_us as f64 / 1e3,
            stats.latency.p99_us as f64 / 1e3,
            total.as_secs_f64()
        ),
    );
    Ok(())
}
