//! The live image stream on the instrument's second port (command port + 1).
//!
//! Each frame on that port is a 40-byte [`LiveHeader`](crate::codec::LiveHeader)
//! followed by `width x height` little-endian `u16` pixels, row-major. A
//! [`LiveStream`] owns the live socket and one reader thread that:
//!
//! - validates every header before reading the pixels (size must equal
//!   `width x height x 2` and stay within [`LiveConfig::max_image_bytes`]); a
//!   bad header is counted, logged and followed by a clean reconnect, never by
//!   an allocation of what the header claims;
//! - reads the pixels with large reads straight into a pooled buffer (no
//!   allocation per frame once the pool is warm);
//! - delivers frames latest-wins: at most [`LiveConfig::queue_depth`] frames
//!   wait for the consumer, older ones are dropped and counted, and the reader
//!   never waits for the consumer;
//! - reconnects when the instrument drops the link or sends garbage
//!   ([`LiveConfig::reconnect_on_error`]), pausing between attempts as
//!   [`LiveConfig::reconnect_policy`] says.
//!
//! Frames are images to show and save:
//!
//! - [`Frame::to_display_8bit`] and [`DisplayLut`]: 16-bit to 8-bit gray
//!   levels with the header's display scale, for painting;
//! - [`Frame::save_tiff_with`] and [`TiffStackWriter`]: 16-bit TIFF files,
//!   single frames or multi-page stacks, with the pixel size in microns
//!   ([`TiffMetadata`]) so Fiji/ImageJ shows real units.
//!
//! The live stream sends nothing: whoever owns it sends `LIVE_VIEW_START`,
//! `LIVE_VIEW_STOP` or `SNAPSHOT` on the command port.
//!
//! ```no_run
//! use flamingo_client::live::{LiveConfig, LiveStream};
//! use std::time::{Duration, Instant};
//!
//! let addr = "192.168.1.2:53718".parse().unwrap();
//! let live = LiveStream::connect(addr, LiveConfig::default(), Instant::now() + Duration::from_secs(2))?;
//! // ... send LIVE_VIEW_START on the command port ...
//! for _ in 0..100 {
//!     let frame = live.next_frame(Duration::from_secs(2))?;
//!     let mean = frame.pixels().iter().map(|&p| f64::from(p)).sum::<f64>() / frame.pixel_count() as f64;
//!     println!("frame {} ({} x {}): mean {mean:.1}", frame.frame_number(), frame.width(), frame.height());
//! }
//! println!("{:?}", live.stats());
//! live.close();
//! # Ok::<(), flamingo_client::Error>(())
//! ```

mod config;
mod connect;
mod display;
mod frame;
mod pool;
mod reader;
mod stream;
mod tiff;
mod turn;

pub use config::LiveConfig;
pub use display::DisplayLut;
pub use frame::Frame;
pub use stream::{LiveStats, LiveStream};
pub use tiff::{TiffMetadata, TiffStackWriter};
pub(crate) use turn::{Owed, Turn};
