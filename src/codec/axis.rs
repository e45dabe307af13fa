//! Stage axis numbering as carried in `int32Data0`.

use std::fmt;
use std::str::FromStr;

/// A stage axis. On the wire `int32Data0` carries 1 = X, 2 = Y, 3 = Z, 4 = R.
/// X, Y and Z are in millimetres, R (rotation) in degrees.
///
/// ```
/// use flamingo_client::codec::Axis;
/// assert_eq!(Axis::Y.wire(), 2);
/// assert_eq!(Axis::from_wire(4), Some(Axis::R));
/// assert_eq!("z".parse::<Axis>().unwrap(), Axis::Z);
/// assert_eq!(Axis::R.unit(), "deg");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Axis {
    /// X, millimetres.
    X,
    /// Y, millimetres.
    Y,
    /// Z, millimetres.
    Z,
    /// Rotation, degrees.
    R,
}

impl Axis {
    /// All four axes, in wire order.
    pub const ALL: [Axis; 4] = [Axis::X, Axis::Y, Axis::Z, Axis::R];

    /// The number sent in `int32Data0`.
    pub const fn wire(self) -> i32 {
        match self {
            Axis::X => 1,
            Axis::Y => 2,
            Axis::Z => 3,
            Axis::R => 4,
        }
    }

    /// The axis for a wire number, if valid.
    pub const fn from_wire(v: i32) -> Option<Axis> {
        match v {
            1 => Some(Axis::X),
            2 => Some(Axis::Y),
            3 => Some(Axis::Z),
            4 => Some(Axis::R),
            _ => None,
        }
    }

    /// Lower-case name: "x", "y", "z" or "r".
    pub const fn name(self) -> &'static str {
        match self {
            Axis::X => "x",
            Axis::Y => "y",
            Axis::Z => "z",
            Axis::R => "r",
        }
    }

    /// The unit of positions on this axis: "mm" or "deg".
    pub const fn unit(self) -> &'static str {
        match self {
            Axis::R => "deg",
            _ => "mm",
        }
    }
}

impl fmt::Display for Axis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a string is not an axis name (from [`Axis`]'s `FromStr`).
///
/// ```
/// use flamingo_client::codec::Axis;
///
/// let e = "w".parse::<Axis>().unwrap_err();
/// assert_eq!(e.input(), "w");
/// assert_eq!(e.to_string(), "axis \"w\" is not one of x, y, z, r");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseAxisError {
    input: String,
}

impl ParseAxisError {
    /// The text that was not an axis name, as given.
    pub fn input(&self) -> &str {
        &self.input
    }
}

impl fmt::Display for ParseAxisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "axis {:?} is not one of x, y, z, r", self.input)
    }
}

impl std::error::Error for ParseAxisError {}

impl FromStr for Axis {
    type Err = ParseAxisError;
    /// Accepts "x", "y", "z" or "r", in any case, surrounding spaces ignored.
    fn from_str(s: &str) -> Result<Axis, ParseAxisError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "x" => Ok(Axis::X),
            "y" => Ok(Axis::Y),
            "z" => Ok(Axis::Z),
            "r" => Ok(Axis::R),
            _ => Err(ParseAxisError {
                input: s.to_string(),
            }),
        }
    }
}
