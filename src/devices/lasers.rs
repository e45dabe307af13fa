//! The lasers: levels (carried as text), preview, all off.

use std::time::Duration;

use super::op::{Confirmed, ReplyStep};
use super::{finite, msg0, run, Base, Op};
use crate::codec::{CommandCode as C, Message};
use crate::{Error, Reply, Result};

/// Laser indices the instrument knows.
const LASERS: std::ops::RangeInclusive<u8> = 1..=4;

/// The lasers, numbered 1 to 4. Made by [`Client::lasers`](crate::Client::lasers).
///
/// Levels are percentages (0 to 100). The instrument carries them as text
/// in the message buffer (`"11.49"`); this facade formats and parses that
/// text.
///
/// ```no_run
/// # fn main() -> flamingo_client::Result<()> {
/// use flamingo_client::{Client, ClientConfig};
///
/// let client = Client::connect("127.0.0.1:53717", ClientConfig::default())?;
/// let lasers = client.lasers();
/// let now = lasers.set_level_percent(2, 11.5)?; // the level read back
/// assert_eq!(now, 11.5);
/// lasers.preview_enable(2)?;
/// lasers.all_off()?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Lasers {
    base: Base,
}

impl Lasers {
    pub(crate) fn new(base: Base) -> Lasers {
        Lasers { base }
    }

    /// Sets the deadline of each operation.
    #[must_use]
    pub fn timeout(mut self, d: Duration) -> Lasers {
        self.base.timeout = d;
        self
    }

    /// The level of `laser` (1 to 4) in percent.
    ///
    /// Errors besides the usual: `Refused` if the instrument answers with an
    /// error text (such as `getLevel error`) and a non-zero status,
    /// `Protocol` if it answers with text that is not a number.
    pub fn level_percent(&self, laser: u8) -> Result<f64> {
        run(|| self.submit_level_percent(laser))
    }

    /// Non-blocking form of [`level_percent`](Lasers::level_percent).
    pub fn submit_level_percent(&self, laser: u8) -> Result<Op<f64>> {
        let n = check_laser(laser)?;
        self.base.query(
            format!("the level of laser {laser}"),
            msg0(C::LASER_LEVEL_GET, n),
            move |r| parse_level_reply(laser, &r),
        )
    }

    /// Sets the level of `laser` (1 to 4) to `percent` (0 to 100, sent with
    /// two decimals) and returns the level the instrument reports afterwards.
    ///
    /// The instrument usually does not acknowledge `LASER_LEVEL_SET`, so the
    /// set is sent without waiting and confirmed by reading the level back
    /// (`LASER_LEVEL_GET`, answered after the set). If the instrument does
    /// acknowledge it with a busy or refusing status, that is the error
    /// (`Busy`, `Refused`). A level read back that differs from the one asked
    /// for means the instrument did not apply it: compare if it matters.
    pub fn set_level_percent(&self, laser: u8, percent: f64) -> Result<f64> {
        run(|| self.submit_set_level_percent(laser, percent))
    }

    /// Non-blocking form of [`set_level_percent`](Lasers::set_level_percent).
    pub fn submit_set_level_percent(&self, laser: u8, percent: f64) -> Result<Op<f64>> {
        let n = check_laser(laser)?;
        let p = finite(&format!("the level of laser {laser}"), percent)?;
        if !(0.0..=100.0).contains(&p) {
            return Err(Error::invalid(format!(
                "the level of laser {laser} must be between 0 and 100 %, not {p}"
            )));
        }
        let set = msg0(C::LASER_LEVEL_SET, n)
            .with_text(&format_level(p))
            .map_err(|e| Error::invalid(format!("laser level text: {e}")))?;
        let deadline = self.base.deadline();
        let client = &self.base.client;
        let sub = client.subscribe_to(&[C::LASER_LEVEL_SET]);
        let after = self.base.queue_flagged(set, deadline)?;
        let get = self.base.submit_at(msg0(C::LASER_LEVEL_GET, n), deadline)?;
        let read_back = ReplyStep::new(get, move |r| parse_level_reply(laser, &r));
        Ok(Op::new(
            format!("laser {laser} to be set to {p:.2} % and read back"),
            deadline,
            self.base.timeout,
            Confirmed::new(client.clone(), sub, after, Some(n), read_back),
        ))
    }

    /// Turns the preview of `laser` on (the instrument then selects its
    /// filter and enables the line).
    pub fn preview_enable(&self, laser: u8) -> Result<()> {
        run(|| self.submit_preview(laser, true))
    }

    /// Turns the preview of `laser` off.
    pub fn preview_disable(&self, laser: u8) -> Result<()> {
        run(|| self.submit_preview(laser, false))
    }

    /// Non-blocking form of [`preview_enable`](Lasers::preview_enable) (`on`)
    /// and [`preview_disable`](Lasers::preview_disable).
    pub fn submit_preview(&self, laser: u8, on: bool) -> Result<Op<()>> {
        let n = check_laser(laser)?;
        let code = if on {
            C::LASER_PREVIEW_ENABLE
        } else {
            C::LASER_PREVIEW_DISABLE
        };
        self.base.command(
            format!("the acknowledgement of {code} for laser {laser}"),
            msg0(code, n),
        )
    }

    /// Turns every laser off: `LASER_ALL_DISABLE` once per laser, as the
    /// vendor software does. The instrument may not acknowledge these, so
    /// they are sent without waiting and confirmed with a system-state query
    /// answered after them; an acknowledgement with a busy or refusing
    /// status is the error.
    pub fn all_off(&self) -> Result<()> {
        run(|| self.submit_all_off())
    }

    /// Non-blocking form of [`all_off`](Lasers::all_off).
    pub fn submit_all_off(&self) -> Result<Op<()>> {
        let deadline = self.base.deadline();
        let client = &self.base.client;
        let sub = client.subscribe_to(&[C::LASER_ALL_DISABLE]);
        let mut after = None;
        for n in LASERS {
            let seq = self.base.queue_flagged(
                Message::new(C::LASER_ALL_DISABLE).with_int32_data0(n.into()),
                deadline,
            )?;
            after.get_or_insert(seq);
        }
        let barrier = self
            .base
            .submit_at(msg0(C::SYSTEM_STATE_GET, 0), deadline)?;
        Ok(Op::new(
            "every laser to be turned off",
            deadline,
            self.base.timeout,
            Confirmed::new(
                client.clone(),
                sub,
                after.unwrap_or(0),
                None,
                ReplyStep::new(barrier, |_| Ok(())),
            ),
        ))
    }
}

pub(crate) fn check_laser(laser: u8) -> Result<i32> {
    if LASERS.contains(&laser) {
        Ok(laser.into())
    } else {
        Err(Error::invalid(format!(
            "laser {laser} does not exist; lasers are numbered 1 to 4"
        )))
    }
}

/// The instrument's text form of a level: two decimals (`"%.2f"`).
pub(crate) fn format_level(percent: f64) -> String {
    format!("{percent:.2}")
}

/// Parses a level as the instrument writes it (`"11.49"`, maybe padded).
pub(crate) fn parse_level(text: &str) -> Option<f64> {
    text.trim()
        .trim_end_matches('%')
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
}

fn parse_level_reply(laser: u8, r: &Reply) -> Result<f64> {
    let text = r.message.text();
    match parse_level(&text.value) {
        Some(v) => Ok(v),
        None if r.message.status != 0 => Err(Error::Refused {
            code: C::LASER_LEVEL_GET,
            status: r.message.status,
        }),
        None => Err(Error::protocol(format!(
            "laser {laser} reported its level as {:?}, which is not a number",
            text.value
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_text_round_trip() {
        assert_eq!(format_level(11.494), "11.49");
        assert_eq!(format_level(0.0), "0.00");
        assert_eq!(format_level(100.0), "100.00");
        assert_eq!(parse_level("11.49"), Some(11.49));
        assert_eq!(parse_level(" 5.0 %"), Some(5.0));
        assert_eq!(parse_level("getLevel error"), None);
        assert_eq!(parse_level("NaN"), None);
        assert_eq!(parse_level(""), None);
    }

    #[test]
    fn laser_index_range() {
        assert!(check_laser(0).is_err());
        assert_eq!(check_laser(4).unwrap(), 4);
        assert!(check_laser(5).is_err());
    }
}
