//! The camera: image size, pixel size, exposure, region of interest.

use std::time::Duration;

use super::{msg0, run, Base, Op};
use crate::codec::CommandCode as C;
use crate::{Error, Reply, Result};

/// The camera's image size in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ImageSize {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// The camera. Made by [`Client::camera`](crate::Client::camera).
///
/// ```no_run
/// # fn main() -> flamingo_client::Result<()> {
/// use flamingo_client::{Client, ClientConfig};
///
/// let client = Client::connect("127.0.0.1:53717", ClientConfig::default())?;
/// let camera = client.camera();
/// let size = camera.image_size()?;
/// let mm = camera.pixel_fov_mm()?;
/// println!("{} x {} px, {:.2} µm per pixel", size.width, size.height, mm * 1000.0);
/// camera.set_exposure_us(20_000)?;
/// assert_eq!(camera.exposure_us()?, 20_000);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Camera {
    pub(crate) base: Base,
}

impl Camera {
    pub(crate) fn new(base: Base) -> Camera {
        Camera { base }
    }

    /// Sets the deadline of each operation.
    #[must_use]
    pub fn timeout(mut self, d: Duration) -> Camera {
        self.base.timeout = d;
        self
    }

    /// The image size. The instrument may report 0 x 0 while it is not
    /// streaming; the size is then in each live frame's header.
    pub fn image_size(&self) -> Result<ImageSize> {
        run(self.submit_image_size())
    }

    /// Non-blocking form of [`image_size`](Camera::image_size).
    pub fn submit_image_size(&self) -> Result<Op<ImageSize>> {
        self.base.query(
            "the camera image size",
            msg0(C::CAMERA_IMAGE_SIZE_GET, 0),
            |r| {
                let (w, h) = (r.message.int32_data0, r.message.int32_data1);
                match (u32::try_from(w), u32::try_from(h)) {
                    (Ok(width), Ok(height)) => Ok(ImageSize { width, height }),
                    _ => Err(Error::protocol(format!(
                        "the camera reported a negative image size ({w} x {h})"
                    ))),
                }
            },
        )
    }

    /// The pixel field of view: millimetres of sample per pixel.
    pub fn pixel_fov_mm(&self) -> Result<f64> {
        run(self.submit_pixel_fov_mm())
    }

    /// Non-blocking form of [`pixel_fov_mm`](Camera::pixel_fov_mm).
    pub fn submit_pixel_fov_mm(&self) -> Result<Op<f64>> {
        self.base.query(
            "the pixel field of view",
            msg0(C::CAMERA_PIXEL_FIELD_OF_VIEW_GET, 0),
            |r| {
                let v = r.message.double_data;
                if v.is_finite() && v >= 0.0 {
                    Ok(v)
                } else {
                    Err(Error::protocol(format!(
                        "the camera reported a pixel field of view of {v} mm"
                    )))
                }
            },
        )
    }

    /// The exposure time in microseconds.
    pub fn exposure_us(&self) -> Result<u32> {
        run(self.submit_exposure_us())
    }

    /// Non-blocking form of [`exposure_us`](Camera::exposure_us).
    pub fn submit_exposure_us(&self) -> Result<Op<u32>> {
        self.base.query(
            "the camera exposure",
            msg0(C::CAMERA_EXPOSURE_GET, 0),
            |r| non_negative("exposure", &r),
        )
    }

    /// Sets the exposure time in microseconds (1 ..= 2^31 - 1).
    pub fn set_exposure_us(&self, us: u32) -> Result<()> {
        run(self.submit_set_exposure_us(us))
    }

    /// Non-blocking form of [`set_exposure_us`](Camera::set_exposure_us).
    pub fn submit_set_exposure_us(&self, us: u32) -> Result<Op<()>> {
        let v = positive_i32("the exposure in µs", us)?;
        self.base.command(
            format!("the acknowledgement of an exposure of {us} µs"),
            msg0(C::CAMERA_EXPOSURE_SET, v),
        )
    }

    /// The left edge of the region of interest (1-based pixel column).
    pub fn roi_left(&self) -> Result<u32> {
        run(self
            .base
            .query("the ROI left edge", msg0(C::CAMERA_ROI_LEFT_GET, 0), |r| {
                non_negative("ROI left edge", &r)
            }))
    }

    /// Sets the left edge of the region of interest (1-based; the sensor
    /// keeps the region symmetric, so this also sets the right edge). Stop
    /// live view first.
    pub fn set_roi_left(&self, left: u32) -> Result<()> {
        let v = positive_i32("the ROI left edge", left)?;
        run(self.base.command(
            format!("the acknowledgement of ROI left edge {left}"),
            msg0(C::CAMERA_ROI_LEFT_SET, v),
        ))
    }

    /// The top edge of the region of interest (1-based pixel row).
    pub fn roi_top(&self) -> Result<u32> {
        run(self
            .base
            .query("the ROI top edge", msg0(C::CAMERA_ROI_TOP_GET, 0), |r| {
                non_negative("ROI top edge", &r)
            }))
    }

    /// Sets the top edge of the region of interest (1-based). **Sent without
    /// waiting for an answer**: its code (0x3011) is the one the instrument
    /// uses for the unsolicited stack-complete message, so an acknowledgement
    /// could not be told from one. Returns once the message is written; read
    /// it back with [`roi_top`](Camera::roi_top) to confirm.
    pub fn set_roi_top(&self, top: u32) -> Result<()> {
        let v = positive_i32("the ROI top edge", top)?;
        self.base
            .send_flagged(msg0(C::CAMERA_ROI_TOP_SET, v))
            .map(|_| ())
    }
}

fn non_negative(what: &str, r: &Reply) -> Result<u32> {
    let v = r.message.int32_data0;
    u32::try_from(v).map_err(|_| Error::protocol(format!("the camera reported a {what} of {v}")))
}

fn positive_i32(what: &str, v: u32) -> Result<i32> {
    match i32::try_from(v) {
        Ok(i) if i > 0 => Ok(i),
        _ => Err(Error::invalid(format!(
            "{what} must be between 1 and {}, not {v}",
            i32::MAX
        ))),
    }
}
