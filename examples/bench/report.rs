//! The run's results: a markdown table (what BENCHMARKS.md shows) and one
//! flat JSON object (`--json`, written with the CLI's JSON writer), plus the
//! statistics and formatting helpers every figure uses and the progress
//! lines / watchdog on stderr.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::cli_json::JsonObject;

#[derive(Default)]
pub struct Report {
    json: JsonObject,
    /// Table rows: figure, flamingo-client, raw baseline, ratio, target, verdict.
    rows: Vec<[String; 6]>,
}

/// Rounds for a readable JSON line: 3 decimals below 100, 1 above.
fn round(v: f64) -> f64 {
    let scale = if v.abs() >= 100.0 { 10.0 } else { 1000.0 };
    (v * scale).round() / scale
}

impl Report {
    fn with(&mut self, f: impl FnOnce(JsonObject) -> JsonObject) {
        self.json = f(std::mem::take(&mut self.json));
    }
    pub fn num(&mut self, key: &str, v: f64) {
        self.with(|j| j.num(key, round(v)));
    }
    pub fn opt(&mut self, key: &str, v: Option<f64>) {
        self.with(|j| j.opt_num(key, v.map(round)));
    }
    pub fn int(&mut self, key: &str, v: u64) {
        self.with(|j| j.int(key, v));
    }
    pub fn str(&mut self, key: &str, v: &str) {
        self.with(|j| j.str(key, v));
    }
    pub fn bool(&mut self, key: &str, v: bool) {
        self.with(|j| j.bool(key, v));
    }

    /// A row with a target: `ok` decides the verdict column.
    pub fn row(
        &mut self,
        fig: &str,
        ours: String,
        raw: String,
        ratio: String,
        target: &str,
        ok: Option<bool>,
    ) {
        let verdict = match ok {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "",
        };
        self.rows
            .push([fig.into(), ours, raw, ratio, target.into(), verdict.into()]);
    }
    /// A row with the library's figure only.
    pub fn info(&mut self, fig: &str, ours: String) {
        self.row(fig, ours, String::new(), String::new(), "", None);
    }

    /// The markdown table (numbers right-aligned, padded for a terminal).
    pub fn table(&self) -> String {
        let head = [
            "figure",
            "flamingo-client",
            "raw baseline",
            "ratio",
            "target",
            "",
        ];
        let mut w = head.map(|h| h.chars().count());
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let left = |i: usize| i == 0 || i >= 4;
        let line = |cells: &[String]| {
            let mut s = String::from("|");
            for (i, c) in cells.iter().enumerate() {
                let pad = " ".repeat(w[i] - c.chars().count());
                if left(i) {
                    let _ = write!(s, " {c}{pad} |");
                } else {
                    let _ = write!(s, " {pad}{c} |");
                }
            }
            s
        };
        let mut out = line(&head.map(String::from));
        out.push_str("\n|");
        for (i, n) in w.iter().enumerate() {
            if left(i) {
                let _ = write!(out, " {} |", "-".repeat(*n));
            } else {
                let _ = write!(out, " {}: |", "-".repeat(n - 1));
            }
        }
        for r in &self.rows {
            out.push('\n');
            out.push_str(&line(r));
        }
        out
    }

    pub fn json(&self) -> String {
        self.json.to_string()
    }
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| !x.is_nan());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Nearest-rank percentile of sorted nanosecond samples, in µs.
pub fn pct_us(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1] as f64 / 1000.0
}

pub fn us(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.1} µs")
    } else {
        "n/a".into()
    }
}

pub fn rate(v: f64, unit: &str) -> String {
    if !v.is_finite() {
        "n/a".into()
    } else if v >= 1e6 {
        format!("{:.2} M{unit}", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k{unit}", v / 1e3)
    } else {
        format!("{v:.1} {unit}")
    }
}

pub fn times(v: f64) -> String {
    format!("{v:.2}x")
}

pub fn percent(v: f64) -> String {
    format!("{:.0} %", 100.0 * v)
}

/// Limit for any one figure: a hang (which would be a bug) ends the run with
/// a message instead of blocking forever.
const PHASE_LIMIT: Duration = Duration::from_secs(120);

static WATCHDOG: OnceLock<crossbeam_channel::Sender<Option<String>>> = OnceLock::new();

/// Starts a phase: prints it on stderr and arms the watchdog.
pub fn progress(what: &str) -> Instant {
    eprint!("  {what} ...");
    let _ = std::io::stderr().flush();
    let tx = WATCHDOG.get_or_init(|| {
        let (tx, rx) = crossbeam_channel::unbounded::<Option<String>>();
        std::thread::Builder::new()
            .name("bench-watchdog".into())
            .spawn(move || {
                let mut phase: Option<String> = None;
                loop {
                    let got = match &phase {
                        Some(_) => rx.recv_timeout(PHASE_LIMIT).map_err(|e| e.is_timeout()),
                        None => rx.recv().map_err(|_| false),
                    };
                    match got {
                        Ok(p) => phase = p,
                        Err(true) => {
                            // The server child sees its stdin close and exits.
                            eprintln!(
                                "\nbench: {:?} did not finish within {PHASE_LIMIT:?}; giving up",
                                phase.unwrap_or_default()
                            );
                            std::process::exit(3);
                        }
                        Err(false) => return,
                    }
                }
            })
            .expect("spawn the watchdog");
        tx
    });
    let _ = tx.send(Some(what.to_string()));
    Instant::now()
}

/// Ends a phase: prints its time and disarms the watchdog.
pub fn done(t: Instant) {
    eprintln!(" {:.1} s", t.elapsed().as_secs_f64());
    if let Some(tx) = WATCHDOG.get() {
        let _ = tx.send(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(pct_us(&v, 50.0), 50.0);
        assert_eq!(pct_us(&v, 99.0), 99.0);
        assert_eq!(pct_us(&v, 100.0), 100.0);
        assert_eq!(pct_us(&[7000], 99.9), 7.0);
        assert!(pct_us(&[], 50.0).is_nan());
    }

    #[test]
    fn median_skips_nan() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(vec![f64::NAN, 5.0]), 5.0);
        assert!(median(vec![]).is_nan());
    }

    #[test]
    fn json_keeps_order_and_rounds() {
        let mut r = Report::default();
        r.num("rtt_ratio", 1.234_56);
        r.num("raw_tput_rps", 155_123.456);
        r.opt("idle_cpu_ms", None);
        r.int("flood_drops", 0);
        r.bool("pinned", false);
        r.num("event_p99_us", f64::NAN);
        assert_eq!(
            r.json(),
            r#"{"rtt_ratio":1.235,"raw_tput_rps":155123.5,"idle_cpu_ms":null,"flood_drops":0,"pinned":false,"event_p99_us":null}"#
        );
    }

    #[test]
    fn table_is_markdown_with_aligned_columns() {
        let mut r = Report::default();
        r.row(
            "a",
            "1 µs".into(),
            "2 µs".into(),
            times(0.5),
            "<= 1x",
            Some(true),
        );
        r.info("longer figure", "x".into());
        let t = r.table();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[1].starts_with("| ---"));
        assert!(lines[2].contains("| met"));
        let widths: Vec<usize> = lines.iter().map(|l| l.chars().count()).collect();
        assert!(widths.iter().all(|w| *w == widths[0]), "{t}");
    }
}
