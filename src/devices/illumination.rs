//! The LED and the filter wheel.

use std::fmt;
use std::time::Duration;

use super::{finite, msg0, run, Base, Op};
use crate::codec::CommandCode as C;
use crate::{Error, Result};

/// The lowest LED level the instrument accepts (0 %).
pub const LED_LEVEL_MIN: u32 = 32_000;
/// The highest LED level the instrument accepts (100 %).
pub const LED_LEVEL_MAX: u32 = 65_534;

/// An LED colour (`int32Data0` 0 to 3 on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LedColour {
    /// Red (0).
    Red,
    /// Green (1).
    Green,
    /// Blue (2).
    Blue,
    /// White (3).
    White,
}

impl LedColour {
    /// The number sent on the wire.
    pub const fn wire(self) -> i32 {
        match self {
            LedColour::Red => 0,
            LedColour::Green => 1,
            LedColour::Blue => 2,
            LedColour::White => 3,
        }
    }

    /// The colour for a wire number, if valid.
    pub const fn from_wire(v: i32) -> Option<LedColour> {
        match v {
            0 => Some(LedColour::Red),
            1 => Some(LedColour::Green),
            2 => Some(LedColour::Blue),
            3 => Some(LedColour::White),
            _ => None,
        }
    }
}

impl fmt::Display for LedColour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LedColour::Red => "red",
            LedColour::Green => "green",
            LedColour::Blue => "blue",
            LedColour::White => "white",
        })
    }
}

/// The transmitted-light LED. Made by [`Client::led`](crate::Client::led).
///
/// Its level is a DAC value from [`LED_LEVEL_MIN`] (0 %) to
/// [`LED_LEVEL_MAX`] (100 %); [`set_percent`](Led::set_percent) converts.
///
/// ```no_run
/// # fn main() -> flamingo_client::Result<()> {
/// use flamingo_client::{Client, ClientConfig};
/// use flamingo_client::devices::LedColour;
///
/// let client = Client::connect("127.0.0.1:53717", ClientConfig::default())?;
/// let led = client.led();
/// led.set_percent(LedColour::Green, 40.0)?;
/// led.preview_enable()?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Led {
    base: Base,
}

impl Led {
    pub(crate) fn new(base: Base) -> Led {
        Led { base }
    }

    /// Sets the deadline of each operation.
    #[must_use]
    pub fn timeout(mut self, d: Duration) -> Led {
        self.base.timeout = d;
        self
    }

    /// Selects `colour` at DAC `level` ([`LED_LEVEL_MIN`]..=[`LED_LEVEL_MAX`]).
    pub fn set(&self, colour: LedColour, level: u32) -> Result<()> {
        run(|| self.submit_set(colour, level))
    }

    /// Non-blocking form of [`set`](Led::set).
    pub fn submit_set(&self, colour: LedColour, level: u32) -> Result<Op<()>> {
        if !(LED_LEVEL_MIN..=LED_LEVEL_MAX).contains(&level) {
            return Err(Error::invalid(format!(
                "LED level {level} is out of range; it must be {LED_LEVEL_MIN} (0 %) to {LED_LEVEL_MAX} (100 %)"
            )));
        }
        self.base.command(
            format!("the acknowledgement of LED {colour} at level {level}"),
            msg0(C::LED_SET, colour.wire()).with_int32_data1(level as i32),
        )
    }

    /// Selects `colour` at `percent` (0 to 100) of the LED's range.
    pub fn set_percent(&self, colour: LedColour, percent: f64) -> Result<()> {
        run(|| self.submit_set_percent(colour, percent))
    }

    /// Non-blocking form of [`set_percent`](Led::set_percent).
    pub fn submit_set_percent(&self, colour: LedColour, percent: f64) -> Result<Op<()>> {
        self.submit_set(colour, led_level_from_percent(percent)?)
    }

    /// Turns the LED preview on.
    pub fn preview_enable(&self) -> Result<()> {
        run(|| self.submit_preview(true))
    }

    /// Turns the LED preview off.
    pub fn preview_disable(&self) -> Result<()> {
        run(|| self.submit_preview(false))
    }

    /// Non-blocking form of [`preview_enable`](Led::preview_enable) (`on`)
    /// and [`preview_disable`](Led::preview_disable).
    pub fn submit_preview(&self, on: bool) -> Result<Op<()>> {
        let code = if on {
            C::LED_PREVIEW_ENABLE
        } else {
            C::LED_PREVIEW_DISABLE
        };
        self.base
            .command(format!("the acknowledgement of {code}"), msg0(code, 0))
    }
}

/// Converts a percentage (0 to 100) to the LED's DAC level.
///
/// ```
/// use flamingo_client::devices::{led_level_from_percent, LED_LEVEL_MAX, LED_LEVEL_MIN};
/// assert_eq!(led_level_from_percent(0.0).unwrap(), LED_LEVEL_MIN);
/// assert_eq!(led_level_from_percent(100.0).unwrap(), LED_LEVEL_MAX);
/// assert!(led_level_from_percent(101.0).is_err());
/// ```
pub fn led_level_from_percent(percent: f64) -> Result<u32> {
    let p = finite("the LED level in percent", percent)?;
    if !(0.0..=100.0).contains(&p) {
        return Err(Error::invalid(format!(
            "the LED level must be between 0 and 100 %, not {p}"
        )));
    }
    let span = f64::from(LED_LEVEL_MAX - LED_LEVEL_MIN);
    Ok(LED_LEVEL_MIN + (p / 100.0 * span).round() as u32)
}

/// Filter wheel positions the instrument knows.
const FILTERS: std::ops::RangeInclusive<u8> = 1..=8;

/// The filter wheel, positions 1 to 8. Made by
/// [`Client::filter_wheel`](crate::Client::filter_wheel). The filters at
/// each position are described in the scope settings
/// ("Filter wheel description N").
///
/// ```no_run
/// # fn main() -> flamingo_client::Result<()> {
/// use flamingo_client::{Client, ClientConfig};
///
/// let client = Client::connect("127.0.0.1:53717", ClientConfig::default())?;
/// let wheel = client.filter_wheel();
/// wheel.set_position(3)?;
/// assert_eq!(wheel.position()?, 3);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct FilterWheel {
    base: Base,
}

impl FilterWheel {
    pub(crate) fn new(base: Base) -> FilterWheel {
        FilterWheel { base }
    }

    /// Sets the deadline of each operation.
    #[must_use]
    pub fn timeout(mut self, d: Duration) -> FilterWheel {
        self.base.timeout = d;
        self
    }

    /// The current position (1 to 8).
    pub fn position(&self) -> Result<u8> {
        run(|| self.submit_position())
    }

    /// Non-blocking form of [`position`](FilterWheel::position).
    pub fn submit_position(&self) -> Result<Op<u8>> {
        self.base.query(
            "the filter wheel position",
            msg0(C::FILTER_POSITION_GET, 0),
            |r| {
                let v = r.message.int32_data0;
                u8::try_from(v)
                    .ok()
                    .filter(|p| FILTERS.contains(p))
                    .ok_or_else(|| {
                        Error::protocol(format!(
                            "the filter wheel reported position {v}, outside 1 to 8"
                        ))
                    })
            },
        )
    }

    /// Moves the wheel to `position` (1 to 8).
    pub fn set_position(&self, position: u8) -> Result<()> {
        run(|| self.submit_set_position(position))
    }

    /// Non-blocking form of [`set_position`](FilterWheel::set_position).
    pub fn submit_set_position(&self, position: u8) -> Result<Op<()>> {
        if !FILTERS.contains(&position) {
            return Err(Error::invalid(format!(
                "filter wheel position {position} does not exist; positions are 1 to 8"
            )));
        }
        self.base.command(
            format!("the acknowledgement of filter wheel position {position}"),
            msg0(C::FILTER_POSITION_SET, position.into()),
        )
    }
}
