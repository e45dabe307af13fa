//! `--repeat N`: the whole run N times in a row, each in a fresh process
//! (as if started by hand), then the median of every figure. The targets in
//! BENCHMARKS.md are stated as medians of five quick runs; this is the
//! command that reproduces them.

use std::process::{Command, Stdio};

use crate::report::median;

/// The figures printed with their range (the JSON line has every key).
const HEADLINE: [&str; 16] = [
    "rtt_ratio_busy",
    "rtt_p99_ratio_busy",
    "tput_ratio",
    "tput_ratio_threaded",
    "tput_cpu_us_per_req",
    "raw_tput_cpu_us_per_req",
    "raw_threaded_cpu_us_per_req",
    "tput_cpu_ratio",
    "tput_pipelined_ratio",
    "tput_pipelined_cpu_us_per_req",
    "event_p99_us",
    "event_drops",
    "flood_drops",
    "flood_per_s",
    "live_ratio",
    "idle_cpu_ms",
];

/// Runs this benchmark `n` times with `args` (plus `--json`), prints each
/// run's JSON line, then the medians: a table of the headline figures with
/// their range, and one JSON line of every numeric key's median.
pub fn run(n: usize, args: &[String]) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("path of this executable: {e}"))?;
    let mut runs: Vec<Vec<(String, String)>> = Vec::new();
    for i in 1..=n {
        eprintln!("run {i} of {n}");
        let out = Command::new(&exe)
            .args(args)
            .arg("--json")
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("run {i}: {e}"))?;
        if !out.status.success() {
            return Err(format!("run {i} failed ({})", out.status));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().last().unwrap_or_default();
        println!("{line}");
        runs.push(parse_flat(line).ok_or_else(|| format!("run {i}: no JSON line"))?);
    }
    let value = |run: &Vec<(String, String)>, key: &str| {
        run.iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.parse::<f64>().ok())
    };
    println!("\nmedian of {n} runs (range):");
    for key in HEADLINE {
        let vals: Vec<f64> = runs.iter().filter_map(|r| value(r, key)).collect();
        if vals.is_empty() {
            continue;
        }
        let (lo, hi) = vals
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        println!(
            "  {key:28} {:>10.3}  ({lo:.3} to {hi:.3})",
            median(vals.clone())
        );
    }
    let mut json = String::from("{\"runs\":");
    json.push_str(&n.to_string());
    if let Some(first) = runs.first() {
        for (key, _) in first {
            let vals: Vec<f64> = runs.iter().filter_map(|r| value(r, key)).collect();
            if vals.len() == runs.len() {
                let m = median(vals);
                json.push_str(&format!(",\"{key}\":{}", (m * 1000.0).round() / 1000.0));
            }
        }
    }
    json.push('}');
    println!("\n{json}");
    Ok(())
}

/// The keys and raw values of a flat JSON object (numbers, strings,
/// booleans, null; no nesting), as the benchmark prints it.
fn parse_flat(line: &str) -> Option<Vec<(String, String)>> {
    let body = line.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut out = Vec::new();
    for field in body.split(',') {
        let (k, v) = field.split_once(':')?;
        out.push((k.trim().trim_matches('"').to_string(), v.trim().to_string()));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::parse_flat;

    #[test]
    fn reads_the_json_line() {
        let v = parse_flat(r#"{"cores":2,"placement":"os","tput_ratio":0.61,"x":null}"#).unwrap();
        assert_eq!(v[0], ("cores".into(), "2".into()));
        assert_eq!(v[2], ("tput_ratio".into(), "0.61".into()));
        assert_eq!(v.len(), 4);
    }
}
