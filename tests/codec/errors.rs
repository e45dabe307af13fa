//! The codec has its own error types; the crate's `Error` converts from each
//! of them into the variant a caller acts on.

use std::io;

use flamingo_client::codec::{Axis, DecodeError, FrameError, LiveHeader, LiveHeaderError, Message};
use flamingo_client::Error;

/// A failed socket read is a broken link, not a peer that broke the
/// protocol: it surfaces as `Error::Disconnected`.
#[test]
fn frame_io_errors_are_disconnected() {
    let e: Error = FrameError::Io(io::ErrorKind::ConnectionReset.into()).into();
    assert!(e.is_disconnected(), "{e:?}");
    let e: Error = FrameError::Partial {
        got: 5,
        expected: 128,
        source: io::ErrorKind::ConnectionAborted.into(),
    }
    .into();
    assert!(e.is_disconnected(), "{e:?}");
    let e: Error = FrameError::Closed.into();
    assert!(e.is_disconnected(), "{e:?}");
}

#[test]
fn frame_too_large_keeps_sizes() {
    let e: Error = FrameError::TooLarge {
        size: 100,
        limit: 10,
    }
    .into();
    assert!(
        matches!(
            e,
            Error::TooLarge {
                size: 100,
                limit: 10,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn live_header_errors() {
    let h = LiveHeader {
        image_size: 8,
        width: 2,
        height: 2,
        ..Default::default()
    };
    let e: Error = h.validate(4).unwrap_err().into();
    assert!(
        matches!(
            e,
            Error::TooLarge {
                size: 8,
                limit: 4,
                ..
            }
        ),
        "{e:?}"
    );
    let bad = LiveHeader { image_size: 7, ..h };
    let err = bad.validate(100).unwrap_err();
    assert!(matches!(err, LiveHeaderError::Inconsistent { .. }));
    let e: Error = err.into();
    assert!(matches!(e, Error::Protocol { .. }), "{e:?}");
}

#[test]
fn decode_and_text_errors() {
    let mut b = Message::default().to_bytes();
    b[0] ^= 0xFF;
    let err = Message::decode(&b).unwrap_err();
    assert!(matches!(err, DecodeError::BadStartMarker(_)));
    let e: Error = err.into();
    assert!(matches!(e, Error::Protocol { .. }), "{e:?}");

    let err = Message::default().with_text("a\0b").unwrap_err();
    let e: Error = err.into();
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
}

#[test]
fn axis_parse_error_is_invalid_argument() {
    let err = "q".parse::<Axis>().unwrap_err();
    assert_eq!(err.input(), "q");
    let e: Error = err.into();
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
    assert!(e.to_string().contains("\"q\""), "{e}");
    // `?` in a function returning the crate's Result.
    fn parse(s: &str) -> flamingo_client::Result<Axis> {
        Ok(s.parse::<Axis>()?)
    }
    assert_eq!(parse(" Z ").unwrap(), Axis::Z);
    assert!(parse("").is_err());
}
