//! `flamingo status` (also `info`): the whole instrument in one call.
//!
//! Include it with `#[path = "support/cli_status.rs"] mod cli_status;` in
//! `flamingo.rs` (it uses the tool's `Out` and `Report`).

use std::time::{Duration, Instant};

use flamingo_client::devices::{ImageSize, LedColour, Op, StagePosition, SystemState};
use flamingo_client::{Axis, Client, Result};

use crate::cli_json::JsonObject;
use crate::{Out, Report};

/// Everything `status` shows; `None` where the microscope did not say.
pub struct StatusReport {
    /// The system state.
    pub state: SystemState,
    /// The stage.
    pub position: Option<StagePosition>,
    /// The soft limits, as text.
    pub soft_limits: Option<String>,
    /// The camera image size.
    pub size: Option<ImageSize>,
    /// µm per pixel.
    pub pixel_um: Option<f64>,
    /// The exposure in µs.
    pub exposure_us: Option<u32>,
    /// Lasers 1 to 4, percent.
    pub lasers: [Option<f64>; 4],
    /// The LED colour and whether it is on, from the settings.
    pub led: Option<(Option<LedColour>, Option<bool>)>,
    /// The filter wheel position and its filter.
    pub filter: Option<(u8, Option<String>)>,
    /// The microscope's name (settings).
    pub microscope: Option<String>,
    /// The command port.
    pub addr: String,
    /// The live image port.
    pub live_addr: Option<String>,
    /// The round trip of the state query.
    pub round_trip: Duration,
}

fn state_name(s: SystemState) -> &'static str {
    match s {
        SystemState::Idle => "idle",
        SystemState::Busy => "busy",
        SystemState::Error => "error",
        SystemState::Unknown(_) => "unknown",
    }
}

fn opt_str(o: JsonObject, key: &str, v: Option<&str>) -> JsonObject {
    match v {
        Some(s) => o.str(key, s),
        None => o.null(key),
    }
}

impl Report for StatusReport {
    fn json(&self) -> JsonObject {
        let mut o = JsonObject::new()
            .str("state", state_name(self.state))
            .int("code", self.state.wire());
        for a in Axis::ALL {
            o = o.opt_num(a.name(), self.position.map(|p| p.get(a)));
        }
        o = opt_str(o, "soft_limits", self.soft_limits.as_deref());
        o = match self.size {
            Some(s) => o.int("width", s.width).int("height", s.height),
            None => o.null("width").null("height"),
        };
        o = o.opt_num("pixel_um", self.pixel_um);
        o = match self.exposure_us {
            Some(us) => o.int("exposure_us", us),
            None => o.null("exposure_us"),
        };
        for (i, l) in self.lasers.iter().enumerate() {
            o = o.opt_num(&format!("laser{}", i + 1), *l);
        }
        let (colour, on) = self.led.unwrap_or((None, None));
        o = opt_str(o, "led", colour.map(|c| c.to_string()).as_deref());
        o = match on {
            Some(b) => o.bool("led_on", b),
            None => o.null("led_on"),
        };
        o = match &self.filter {
            Some((p, d)) => opt_str(o.int("filter", *p), "filter_description", d.as_deref()),
            None => o.null("filter").null("filter_description"),
        };
        o = opt_str(o, "microscope", self.microscope.as_deref());
        o = o.str("addr", &self.addr);
        o = opt_str(o, "live_addr", self.live_addr.as_deref());
        o.num(
            "round_trip_ms",
            (self.round_trip.as_secs_f64() * 1e5).round() / 100.0,
        )
    }

    fn human(&self) -> String {
        const UNKNOWN: &str = "unknown";
        let mut lines = vec![format!(
            "Microscope {} at {} (live images on {}), round trip {:.2} ms",
            self.microscope.as_deref().unwrap_or("(unnamed)"),
            self.addr,
            self.live_addr.as_deref().unwrap_or(UNKNOWN),
            self.round_trip.as_secs_f64() * 1e3
        )];
        lines.push(format!(
            "State:     {} ({})",
            state_name(self.state),
            self.state.wire()
        ));
        lines.push(match self.position {
            Some(p) => format!(
                "Stage:     x {:.4} mm, y {:.4} mm, z {:.4} mm, r {:.2} deg",
                p.x_mm, p.y_mm, p.z_mm, p.r_deg
            ),
            None => format!("Stage:     {UNKNOWN}"),
        });
        lines.push(format!(
            "Limits:    {}",
            self.soft_limits.as_deref().unwrap_or(UNKNOWN)
        ));
        let size = self
            .size
            .map(|s| format!("{} x {} pixels", s.width, s.height))
            .unwrap_or_else(|| UNKNOWN.into());
        let pixel = self
            .pixel_um
            .map(|u| format!("{u:.4} µm per pixel"))
            .unwrap_or_else(|| format!("pixel size {UNKNOWN}"));
        let exposure = self
            .exposure_us
            .map(|us| format!("exposure {us} µs"))
            .unwrap_or_else(|| format!("exposure {UNKNOWN}"));
        lines.push(format!("Camera:    {size}, {pixel}, {exposure}"));
        let lasers: Vec<String> = self
            .lasers
            .iter()
            .enumerate()
            .map(|(i, l)| match l {
                Some(p) => format!("{} {p:.2} %", i + 1),
                None => format!("{} {UNKNOWN}", i + 1),
            })
            .collect();
        lines.push(format!("Lasers:    {}", lasers.join(", ")));
        lines.push(match &self.led {
            Some((c, on)) => format!(
                "LED:       {}, {} (as stored in the microscope's settings)",
                c.map(|c| c.to_string()).unwrap_or_else(|| UNKNOWN.into()),
                match on {
                    Some(true) => "on",
                    Some(false) => "off",
                    None => "on or off unknown",
                }
            ),
            None => format!("LED:       {UNKNOWN}"),
        });
        lines.push(match &self.filter {
            Some((p, Some(d))) => format!("Filter:    position {p} ({d})"),
            Some((p, None)) => format!("Filter:    position {p}"),
            None => format!("Filter:    {UNKNOWN}"),
        });
        lines.join("\n")
    }
}

/// A part of the status: its value, or `None` after a warning naming it. A
/// lost connection ends the command.
fn part<T>(out: &Out, what: &str, r: Result<T>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_disconnected() => Err(e),
        Err(e) => {
            out.warn(&format!("{what} unknown: {e}"));
            Ok(None)
        }
    }
}

fn wait<T: 'static>(op: Result<Op<T>>) -> Result<T> {
    op?.wait()
}

/// Asks for everything at once (one timeout for all) and gathers it. The
/// state must answer; other parts may be missing (a warning each).
pub fn status(client: &Client, t: Duration, out: &Out) -> Result<StatusReport> {
    let t0 = Instant::now();
    let state = client.system().timeout(t).submit_state();
    let settings = client.settings().timeout(t).submit_load();
    let position = client.stage().timeout(t).submit_positions();
    let camera = client.camera().timeout(t);
    let size = camera.submit_image_size();
    let pixel = camera.submit_pixel_fov_mm();
    let exposure = camera.submit_exposure_us();
    let lasers = client.lasers().timeout(t);
    let levels: Vec<_> = (1..=4).map(|n| lasers.submit_level_percent(n)).collect();
    let filter = client.filter_wheel().timeout(t).submit_position();

    let state = wait(state)?;
    let round_trip = t0.elapsed();
    let settings = part(out, "the microscope's settings", wait(settings))?;
    let position = part(out, "the stage position", wait(position))?;
    let size = part(out, "the image size", wait(size))?;
    let pixel = part(out, "the pixel size", wait(pixel))?;
    let exposure_us = part(out, "the exposure", wait(exposure))?;
    let mut laser_levels = [None; 4];
    for (i, op) in levels.into_iter().enumerate() {
        laser_levels[i] = part(out, &format!("the power of laser {}", i + 1), wait(op))?;
    }
    let filter = part(out, "the filter wheel position", wait(filter))?;
    let led = settings.as_ref().map(|s| {
        let colour = s
            .get_f64(
                "LED settings",
                "LED selection (0 red, 1 green, 2 blue, 3 white)",
            )
            .and_then(|v| LedColour::from_wire(v as i32));
        let on = s.get_f64("LED settings", "Preview on").map(|v| v != 0.0);
        (colour, on)
    });
    let filter = filter.map(|p| {
        let d = settings
            .as_ref()
            .and_then(|s| s.filter_description(p))
            .map(str::to_string);
        (p, d)
    });
    let soft_limits = settings
        .as_ref()
        .map(|s| flamingo_client::devices::SoftLimits::from_settings(s).to_string());
    Ok(StatusReport {
        state,
        position,
        soft_limits,
        size,
        pixel_um: pixel.map(|mm| mm * 1000.0),
        exposure_us,
        lasers: laser_levels,
        led,
        filter,
        microscope: settings
            .as_ref()
            .and_then(|s| s.microscope_name())
            .map(str::to_string),
        addr: client.addr().to_string(),
        live_addr: client.live_addr().ok().map(|a| a.to_string()),
        round_trip,
    })
}
