//! The `flamingo` tool's commands for the rest of the operator's day:
//! lasers, LED, filter wheel, exposure, homing and returning to idle.
//!
//! Include it with `#[path = "support/cli_devices.rs"] mod cli_devices;`
//! in `flamingo.rs` (it uses the tool's `Out`, `Report` and helpers).

use std::time::{Duration, Instant};

use flamingo_client::codec::CommandCode as C;
use flamingo_client::devices::{LedColour, SystemState};
use flamingo_client::{Axis, Client, Error, Result};

use crate::cli_args::{LasersAction, LedAction};
use crate::cli_json::JsonObject;
use crate::{cli_interrupt, halt_now, Done, Report, MOTION_TIMEOUT, POLL};

// ---------------------------------------------------------------- lasers

/// `lasers level`: the power of each laser asked for.
pub struct LevelsReport(pub Vec<(u8, f64)>);

impl Report for LevelsReport {
    fn json(&self) -> JsonObject {
        match self.0.as_slice() {
            [(n, p)] => JsonObject::new().int("laser", *n).num("percent", *p),
            all => all.iter().fold(JsonObject::new(), |o, (n, p)| {
                o.num(&format!("laser{n}"), *p)
            }),
        }
    }
    fn human(&self) -> String {
        self.0
            .iter()
            .map(|(n, p)| format!("Laser {n}: {p:.2} %"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `lasers off [LINE]`, `lasers on LINE`, `lasers set LINE PERCENT`,
/// `lasers level [LINE]`.
pub fn lasers(client: &Client, t: Duration, action: LasersAction) -> Result<Box<dyn Report>> {
    let lasers = client.lasers().timeout(t);
    Ok(match action {
        LasersAction::Off { line: None } => {
            lasers.all_off()?;
            Box::new(Done {
                json: JsonObject::new().str("lasers", "off"),
                human: "Every laser is off".into(),
            })
        }
        LasersAction::Off { line: Some(n) } => {
            lasers.preview_disable(n)?;
            Box::new(Done {
                json: JsonObject::new().int("laser", n).bool("on", false),
                human: format!("Laser {n} is off"),
            })
        }
        LasersAction::On { line } => {
            lasers.preview_enable(line)?;
            Box::new(Done {
                json: JsonObject::new().int("laser", line).bool("on", true),
                human: format!(
                    "Laser {line} is on (live-view illumination; `flamingo lasers off` switches every laser off)"
                ),
            })
        }
        LasersAction::Set { line, percent } => {
            let now = lasers.set_level_percent(line, percent)?;
            let note = if (now - percent).abs() > 0.005 {
                format!(" (asked for {percent:.2} %: the microscope did not apply it)")
            } else {
                String::new()
            };
            Box::new(Done {
                json: JsonObject::new().int("laser", line).num("percent", now),
                human: format!("Laser {line} power: {now:.2} %{note}"),
            })
        }
        LasersAction::Level { line } => {
            let lines: Vec<u8> = match line {
                Some(n) => vec![n],
                None => (1..=4).collect(),
            };
            // Asked together: one timeout for all.
            let ops = lines
                .iter()
                .map(|&n| lasers.submit_level_percent(n))
                .collect::<Result<Vec<_>>>()?;
            let mut levels = Vec::with_capacity(ops.len());
            for (n, op) in lines.into_iter().zip(ops) {
                levels.push((n, op.wait()?));
            }
            Box::new(LevelsReport(levels))
        }
    })
}

// ---------------------------------------------------------------- LED

/// `led COLOUR PERCENT`: sets the colour and power and switches the LED on;
/// `led off` switches it off.
pub fn led(client: &Client, t: Duration, action: LedAction) -> Result<Done> {
    let led = client.led().timeout(t);
    let (colour, power) = match action {
        LedAction::Off => {
            led.preview_disable()?;
            return Ok(Done {
                json: JsonObject::new().str("led", "off"),
                human: "The LED is off".into(),
            });
        }
        LedAction::Red(p) => (LedColour::Red, p.percent),
        LedAction::Green(p) => (LedColour::Green, p.percent),
        LedAction::Blue(p) => (LedColour::Blue, p.percent),
        LedAction::White(p) => (LedColour::White, p.percent),
    };
    led.set_percent(colour, power)?;
    led.preview_enable()?;
    Ok(Done {
        json: JsonObject::new()
            .str("led", &colour.to_string())
            .num("percent", power),
        human: format!("The LED is on: {colour} at {power} %"),
    })
}

// ---------------------------------------------------------------- filter

/// `filter [POSITION]`.
pub fn filter(client: &Client, t: Duration, position: Option<u8>) -> Result<Done> {
    let wheel = client.filter_wheel().timeout(t);
    // The filter's name, from the settings, asked alongside.
    let settings = client.settings().timeout(t).submit_load();
    if let Some(p) = position {
        wheel.set_position(p)?;
    }
    let now = wheel.position()?;
    let description = settings
        .and_then(|op| op.wait())
        .ok()
        .and_then(|s| s.filter_description(now).map(str::to_string));
    if let Some(p) = position.filter(|&p| p != now) {
        return Err(Error::protocol(format!(
            "the filter wheel reports position {now} after being turned to {p}"
        )));
    }
    let named = description
        .as_deref()
        .map(|d| format!(" ({d})"))
        .unwrap_or_default();
    let json = JsonObject::new().int("filter", now);
    let json = match &description {
        Some(d) => json.str("description", d),
        None => json.null("description"),
    };
    Ok(Done {
        json,
        human: match position {
            Some(_) => format!("Filter wheel turned to position {now}{named}"),
            None => format!("Filter wheel at position {now}{named}"),
        },
    })
}

// ---------------------------------------------------------------- exposure

/// `exposure [TIME]`: sets (when given) and reads the exposure back.
pub fn exposure(client: &Client, t: Duration, us: Option<u32>) -> Result<Done> {
    let camera = client.camera().timeout(t);
    if let Some(us) = us {
        camera.set_exposure_us(us)?;
    }
    let now = camera.exposure_us()?;
    if let Some(us) = us.filter(|&us| us != now) {
        return Err(Error::protocol(format!(
            "the camera reports an exposure of {now} µs after being set to {us} µs"
        )));
    }
    Ok(Done {
        json: JsonObject::new().int("exposure_us", now),
        human: format!(
            "Camera exposure{}: {} ({now} µs)",
            if us.is_some() { " set" } else { "" },
            human_us(now)
        ),
    })
}

/// 9002 -> "9.002 ms".
fn human_us(us: u32) -> String {
    match us {
        0..=999 => format!("{us} µs"),
        1_000..=999_999 => format!("{} ms", f64::from(us) / 1e3),
        _ => format!("{} s", f64::from(us) / 1e6),
    }
}

// ---------------------------------------------------------------- home

/// `home`.
pub struct HomeReport {
    /// The axis homed alone, or every axis.
    pub axis: Option<Axis>,
    /// Where each homed axis stopped.
    pub stops: Vec<(Axis, f64)>,
    /// From the command to the last stop.
    pub elapsed: Duration,
}

impl Report for HomeReport {
    fn json(&self) -> JsonObject {
        let o = JsonObject::new().str("homed", self.axis.map_or("all", |a| a.name()));
        let o = match self.axis {
            Some(_) => o.num("position", self.stops.first().map_or(f64::NAN, |s| s.1)),
            None => self.stops.iter().fold(o, |o, (a, p)| o.num(a.name(), *p)),
        };
        o.int("elapsed_ms", self.elapsed.as_millis() as u64)
    }
    fn human(&self) -> String {
        let at: Vec<String> = self
            .stops
            .iter()
            .map(|(a, p)| format!("{a} {p:.4} {}", a.unit()))
            .collect();
        match self.axis {
            Some(a) => format!(
                "Homed {a}: stopped at {} after {} ms",
                at.join(", "),
                self.elapsed.as_millis()
            ),
            None => format!(
                "Homed every axis after {} ms: {}",
                self.elapsed.as_millis(),
                at.join(", ")
            ),
        }
    }
}

/// Homes one axis (a move to its home position from the settings, within
/// the soft limits) or, with `yes`, every axis (`STAGE_HOME`); waits until
/// the stage has stopped. Ctrl-C halts the stage.
pub fn home(client: &Client, t: Duration, axis: Option<Axis>, yes: bool) -> Result<HomeReport> {
    if axis.is_none() && !yes {
        return Err(Error::invalid(crate::cli_args::HOME_NEEDS_YES));
    }
    let t0 = Instant::now();
    let stage = client.stage().timeout(t).motion_timeout(MOTION_TIMEOUT);
    let _guard = cli_interrupt::Guard::new();
    let mut op = match axis {
        Some(a) => {
            let settings = client.settings().timeout(t).load()?;
            let target = settings.home(a).ok_or_else(|| {
                Error::invalid(format!(
                    "the microscope's settings give no home position for {a}; nothing was sent"
                ))
            })?;
            let stage = stage.soft_limits(flamingo_client::devices::SoftLimits::from_settings(
                &settings,
            ));
            stage
                .submit_move_all_and_wait(&[(a, target)])
                .map_err(crate::nothing_sent)?
        }
        None => stage.submit_home_and_wait()?,
    };
    let stops = loop {
        if let Some(r) = op.wait_timeout(POLL) {
            break r?;
        }
        if cli_interrupt::interrupted() {
            return Err(cli_interrupt::error(&halt_now(client, "homing")));
        }
    };
    Ok(HomeReport {
        axis,
        stops: stops.iter().map(|s| (s.axis, s.position)).collect(),
        elapsed: t0.elapsed(),
    })
}

// ---------------------------------------------------------------- idle

/// `idle`: asks for idle, then reads the state back; a microscope still
/// busy or in error is a failure (exit code 6) saying so.
pub fn idle(client: &Client, t: Duration) -> Result<Done> {
    let system = client.system().timeout(t);
    system.set_idle()?;
    let state = system.state()?;
    match state {
        SystemState::Idle => Ok(Done {
            json: JsonObject::new()
                .str("state", "idle")
                .int("code", state.wire()),
            human: "The system is idle".into(),
        }),
        SystemState::Busy => Err(Error::Busy {
            code: C::SYSTEM_STATE_IDLE,
            status: state.wire() as u32,
        }),
        _ => Err(Error::Refused {
            code: C::SYSTEM_STATE_IDLE,
            status: state.wire() as u32,
        }),
    }
}
