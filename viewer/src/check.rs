//! `--check-screenshot OUT.png`: checks what the self-test saved, the way a
//! person would look at it: is there a live image (not a uniform area), did
//! the progress bar reach the end, and did the run report success.

use std::path::Path;
use std::process::ExitCode;

use crate::app::PROGRESS_FILL;
use crate::selftest::sidecar;

/// Decoded RGBA8 image.
struct Image {
    w: usize,
    h: usize,
    rgba: Vec<u8>,
}

impl Image {
    fn px(&self, x: usize, y: usize) -> [u8; 4] {
        let i = (y * self.w + x) * 4;
        [
            self.rgba[i],
            self.rgba[i + 1],
            self.rgba[i + 2],
            self.rgba[i + 3],
        ]
    }
}

fn load(path: &Path) -> Result<Image, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut dec = png::Decoder::new(std::io::BufReader::new(f));
    dec.set_transformations(png::Transformations::EXPAND);
    let mut r = dec.read_info().map_err(|e| e.to_string())?;
    let size = r
        .output_buffer_size()
        .ok_or("the PNG is too large to decode")?;
    let mut buf = vec![0; size];
    let info = r.next_frame(&mut buf).map_err(|e| e.to_string())?;
    let (w, h) = (info.width as usize, info.height as usize);
    let rgba = match info.color_type {
        png::ColorType::Rgba => buf[..w * h * 4].to_vec(),
        png::ColorType::Rgb => buf[..w * h * 3]
            .chunks_exact(3)
            .flat_map(|c| [c[0], c[1], c[2], 255])
            .collect(),
        other => return Err(format!("unexpected PNG colour type {other:?}")),
    };
    Ok(Image { w, h, rgba })
}

/// The numbers of a JSON array field `"key":[a,b,c,d]` (the report is our own).
fn field_rect(json: &str, key: &str) -> Option<[f64; 4]> {
    let at = json.find(&format!("\"{key}\":["))? + key.len() + 4;
    let end = at + json[at..].find(']')?;
    let v: Vec<f64> = json[at..end]
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    (v.len() == 4).then(|| [v[0], v[1], v[2], v[3]])
}

/// A number or string field, as text.
fn field(json: &str, key: &str) -> Option<String> {
    let at = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = &json[at..];
    if let Some(s) = rest.strip_prefix('"') {
        return s.find('"').map(|e| s[..e].to_string());
    }
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim().to_string())
}

fn num(json: &str, key: &str) -> f64 {
    field(json, key)
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The pixels of a rectangle `[x, y, w, h]`, clipped to the image, inset.
fn region(img: &Image, r: [f64; 4], inset: usize) -> Vec<[u8; 4]> {
    let x0 = (r[0].max(0.0) as usize + inset).min(img.w);
    let y0 = (r[1].max(0.0) as usize + inset).min(img.h);
    let x1 = ((r[0] + r[2]).max(0.0) as usize)
        .saturating_sub(inset)
        .min(img.w);
    let y1 = ((r[1] + r[3]).max(0.0) as usize)
        .saturating_sub(inset)
        .min(img.h);
    let mut out = Vec::new();
    for y in y0..y1 {
        for x in x0..x1 {
            out.push(img.px(x, y));
        }
    }
    out
}

fn is_fill(p: [u8; 4]) -> bool {
    let f = PROGRESS_FILL.to_array();
    (0..3).all(|i| (i32::from(p[i]) - i32::from(f[i])).abs() <= 24)
}

/// The live image area shows an image, not a uniform area.
fn check_image(json: &str, img: &Image) -> Result<String, String> {
    let r = field_rect(json, "image_rect").ok_or("no image_rect in the report")?;
    let px = region(img, r, 2);
    if px.len() < 64 * 64 {
        return Err(format!("image area too small: {} pixels", px.len()));
    }
    let lum: Vec<f64> = px
        .iter()
        .map(|p| 0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2]))
        .collect();
    let mean = lum.iter().sum::<f64>() / lum.len() as f64;
    let sd = (lum.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / lum.len() as f64).sqrt();
    let mut seen = [false; 256];
    for v in &lum {
        seen[*v as usize] = true;
    }
    let levels = seen.iter().filter(|&&s| s).count();
    let d = format!(
        "{} px, mean {mean:.1}, sd {sd:.1}, {levels} grey levels",
        px.len()
    );
    if sd > 10.0 && levels >= 32 {
        Ok(d)
    } else {
        Err(d)
    }
}

/// The workflow progress bar is filled to its end, and the report agrees.
fn check_progress(json: &str, img: &Image) -> Result<String, String> {
    let r = field_rect(json, "progress_rect").ok_or("no progress_rect in the report")?;
    let px = region(img, r, 3);
    if px.is_empty() {
        return Err("progress bar not on screen".into());
    }
    let filled = px.iter().filter(|p| is_fill(**p)).count() as f64 / px.len() as f64;
    // The right end of the bar: its last 6 % columns.
    let end = [r[0] + r[2] * 0.94, r[1], r[2] * 0.06, r[3]];
    let epx = region(img, end, 3);
    let end_filled = epx.iter().filter(|p| is_fill(**p)).count() as f64 / epx.len().max(1) as f64;
    let d = format!(
        "{:.0} % of the bar and {:.0} % of its right end in the fill colour; report says {} / {}",
        filled * 100.0,
        end_filled * 100.0,
        num(json, "workflow_current"),
        num(json, "workflow_total")
    );
    let total = num(json, "workflow_total");
    if filled > 0.6 && end_filled > 0.6 && total > 0.0 && num(json, "workflow_current") == total {
        Ok(d)
    } else {
        Err(d)
    }
}

/// A TIFF page: width, height, µm per pixel.
pub type TiffPage = (u32, u32, Option<f64>);

/// What a TIFF file holds: per page (width, height, µm per pixel), and the
/// ImageJ description. Errors for a file that is not a little-endian TIFF
/// or whose directories point outside it.
pub fn read_tiff(bytes: &[u8]) -> Result<(Vec<TiffPage>, String), String> {
    let get = |o: usize, n: usize| {
        bytes
            .get(o..o + n)
            .ok_or("a directory points outside the file")
    };
    let u16_at = |o: usize| get(o, 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| get(o, 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    if bytes.get(..4) != Some(b"II*\0") {
        return Err("not a little-endian TIFF".into());
    }
    let mut pages = Vec::new();
    let mut description = String::new();
    let mut ifd = u32_at(4)? as usize;
    while ifd != 0 && pages.len() < 100_000 {
        let n = usize::from(u16_at(ifd)?);
        let (mut w, mut h, mut res) = (0, 0, None);
        for i in 0..n {
            let e = ifd + 2 + i * 12;
            let (tag, typ, count, value) =
                (u16_at(e)?, u16_at(e + 2)?, u32_at(e + 4)?, u32_at(e + 8)?);
            let v = if typ == 3 {
                u32::from(u16_at(e + 8)?)
            } else {
                value
            };
            match tag {
                256 => w = v,
                257 => h = v,
                282 => {
                    let o = value as usize;
                    let (num, den) = (u32_at(o)?, u32_at(o + 4)?);
                    if num > 0 {
                        res = Some(f64::from(den) / f64::from(num));
                    }
                }
                270 if description.is_empty() => {
                    description =
                        String::from_utf8_lossy(get(value as usize, count as usize)?).into_owned();
                }
                _ => {}
            }
        }
        pages.push((w, h, res));
        ifd = u32_at(ifd + 2 + n * 12)? as usize;
    }
    Ok((pages, description))
}

/// The snapshot the self-test saved (through the file dialog) is a TIFF
/// with the instrument's pixel size.
fn check_saved(json: &str) -> Result<String, String> {
    let path = field(json, "saved_file")
        .filter(|p| p != "null")
        .ok_or("no file saved")?;
    let um = num(json, "pixel_um");
    let bytes = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
    let (pages, description) = read_tiff(&bytes).map_err(|e| format!("{path}: {e}"))?;
    let d = format!(
        "{path}: {} page(s) of {} x {} px, {} µm per pixel (instrument {um}), ImageJ unit {}",
        pages.len(),
        pages.first().map_or(0, |p| p.0),
        pages.first().map_or(0, |p| p.1),
        pages
            .first()
            .and_then(|p| p.2)
            .map_or("none".into(), |r| format!("{r:.6}")),
        if description.contains("unit=micron") {
            "micron"
        } else {
            "missing"
        }
    );
    let ok = pages.len() == 1
        && pages[0].2.is_some_and(|r| (r - um).abs() < 1e-6)
        && description.contains("unit=micron");
    if ok {
        Ok(d)
    } else {
        Err(d)
    }
}

/// The clicked flows ran and the screenshots of the main states are there.
fn check_states(json: &str) -> Result<String, String> {
    let at = json
        .find("\"state_screenshots\":[")
        .ok_or("no state_screenshots in the report")?;
    let rest = &json[at + 21..];
    let list = &rest[..rest.find(']').unwrap_or(0)];
    let shots: Vec<&str> = list
        .split(',')
        .map(|s| s.trim().trim_matches('"'))
        .filter(|s| !s.is_empty())
        .collect();
    let mut bad = Vec::new();
    for s in &shots {
        match load(Path::new(s)) {
            Ok(img) if img.w >= 640 && img.h >= 400 => {}
            Ok(img) => bad.push(format!("{s}: {} x {}", img.w, img.h)),
            Err(e) => bad.push(e),
        }
    }
    let d = format!(
        "{} clicks, {} saved position(s), state screenshots: {}",
        num(json, "clicks"),
        num(json, "saved_positions"),
        shots.join(", ")
    );
    if shots.len() == 4
        && bad.is_empty()
        && num(json, "clicks") >= 10.0
        && num(json, "saved_positions") >= 1.0
    {
        Ok(d)
    } else {
        Err(format!("{d}; {}", bad.join("; ")))
    }
}

/// The run itself: success, live frames shown, the reconnect seen (with faults).
fn check_run(json: &str) -> Result<String, String> {
    let status = field(json, "viewer_self_test").unwrap_or_default();
    let shown = num(json, "live_frames_shown");
    let faults = field(json, "faults").unwrap_or_default() == "true";
    let reconnected = json.contains("\"reconnecting\"");
    let d = format!(
        "status {status}, {shown} live frames shown, workflow {}, faults {faults}, reconnect seen {reconnected}, library time per frame max {} µs (p99 {} µs), {} frames ≥ 1 ms, max net of waiting for a CPU {} µs",
        field(json, "workflow_status").unwrap_or_default(),
        num(json, "max"),
        num(json, "p99"),
        num(json, "frames_over_1ms"),
        num(json, "lib_us_net_of_preemption_max"),
    );
    if status == "ok"
        && shown >= 20.0
        && field(json, "workflow_status").as_deref() == Some("finished")
        && (!faults || reconnected)
    {
        Ok(d)
    } else {
        Err(d)
    }
}

/// Runs the checks; prints one line per check and a summary line.
pub fn run(png: &Path) -> ExitCode {
    let mut passed = 0;
    let mut failed = 0;
    let mut report = |name: &str, r: Result<String, String>| match r {
        Ok(detail) => {
            passed += 1;
            println!("ok   {name}: {detail}");
        }
        Err(detail) => {
            failed += 1;
            println!("FAIL {name}: {detail}");
        }
    };
    let json = std::fs::read_to_string(sidecar(png))
        .map_err(|e| format!("{}: {e}", sidecar(png).display()));
    let img = load(png);
    let (json, img) = match (json, img) {
        (Ok(j), Ok(i)) => (j, i),
        (j, i) => {
            let why = [j.err(), i.err()].into_iter().flatten().collect::<Vec<_>>();
            report("screenshot and report readable", Err(why.join("; ")));
            println!("viewer: {passed} passed, {failed} failed");
            return ExitCode::FAILURE;
        }
    };

    // 1. The live image area shows an image, not a uniform area.
    report("live image area is not uniform", check_image(&json, &img));

    // 2. The workflow progress bar reached the end.
    report(
        "workflow progress bar reached the end",
        check_progress(&json, &img),
    );

    // 3. The run itself: success, live frames shown, faults survived.
    report(
        "self-test run (live frames, workflow, faults)",
        check_run(&json),
    );

    // 4. The snapshot saved through the file dialog is a calibrated TIFF.
    report(
        "snapshot saved as a TIFF with the pixel size",
        check_saved(&json),
    );

    // 5. The clicked flows and the screenshots of the main states.
    report("clicked flows and state screenshots", check_states(&json));

    println!("viewer: {passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = r#"{"viewer_self_test":"ok","failure":null,"lib_us_per_frame":{"p50":8.0,"max":157.4},"workflow_current":476,"workflow_total":476,"workflow_status":"finished","image_rect":[653,218,404,404],"progress_rect":[438,121.5,834,22]}"#;

    #[test]
    fn reads_the_report_fields() {
        assert_eq!(
            field_rect(REPORT, "image_rect"),
            Some([653.0, 218.0, 404.0, 404.0])
        );
        assert_eq!(
            field_rect(REPORT, "progress_rect"),
            Some([438.0, 121.5, 834.0, 22.0])
        );
        assert_eq!(field_rect(REPORT, "nothing"), None);
        assert_eq!(field(REPORT, "viewer_self_test").as_deref(), Some("ok"));
        assert_eq!(field(REPORT, "failure").as_deref(), Some("null"));
        assert_eq!(num(REPORT, "max"), 157.4);
        assert_eq!(num(REPORT, "workflow_total"), 476.0);
    }

    fn image(w: usize, h: usize, px: impl Fn(usize, usize) -> [u8; 4]) -> Image {
        let mut rgba = Vec::with_capacity(w * h * 4);
        for y in 0..h {
            for x in 0..w {
                rgba.extend_from_slice(&px(x, y));
            }
        }
        Image { w, h, rgba }
    }

    #[test]
    fn a_uniform_image_area_fails_and_a_textured_one_passes() {
        let json = r#"{"image_rect":[10,10,100,100]}"#;
        let flat = image(200, 200, |_, _| [40, 40, 40, 255]);
        assert!(check_image(json, &flat).is_err());
        let textured = image(200, 200, |x, y| {
            let v = ((x * 7 + y * 3) % 256) as u8;
            [v, v, v, 255]
        });
        assert!(check_image(json, &textured).is_ok());
    }

    #[test]
    fn the_progress_bar_must_be_filled_to_its_end() {
        let json = r#"{"workflow_current":10,"workflow_total":10,"progress_rect":[0,0,400,20]}"#;
        let f = PROGRESS_FILL.to_array();
        let full = image(400, 20, |_, _| f);
        assert!(check_progress(json, &full).is_ok());
        // Filled to 80 %: the right end is not.
        let part = image(400, 20, |x, _| if x < 320 { f } else { [30, 30, 30, 255] });
        assert!(check_progress(json, &part).is_err());
        // A full bar but a report that disagrees.
        let behind = r#"{"workflow_current":9,"workflow_total":10,"progress_rect":[0,0,400,20]}"#;
        assert!(check_progress(behind, &full).is_err());
    }
}
