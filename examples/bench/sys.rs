//! Process figures for the idle-cost benchmark: CPU time, threads, resident
//! memory. Linux reads /proc; elsewhere every figure is `None` ("n/a").

/// CPU time consumed by the process's live threads so far, in nanoseconds
/// (sum of the first field of /proc/self/task/*/schedstat, which the kernel
/// keeps in ns, unlike the clock ticks of /proc/self/stat).
#[cfg(target_os = "linux")]
pub fn cpu_ns() -> Option<u64> {
    let mut total = 0u64;
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let path = entry.ok()?.path().join("schedstat");
        // A thread may exit between listing and reading: skip it.
        if let Ok(s) = std::fs::read_to_string(path) {
            total += s.split_whitespace().next()?.parse::<u64>().ok()?;
        }
    }
    Some(total)
}

/// Number of threads of this process.
#[cfg(target_os = "linux")]
pub fn threads() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/task").ok()?.count())
}

/// Resident memory of this process in KiB (VmRSS).
#[cfg(target_os = "linux")]
pub fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Voluntary + involuntary context switches of every live thread of the
/// process (a wake-up counter: an idle client should cause almost none).
#[cfg(target_os = "linux")]
pub fn context_switches() -> Option<u64> {
    let mut total = 0u64;
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let path = entry.ok()?.path().join("status");
        if let Ok(s) = std::fs::read_to_string(path) {
            for l in s.lines() {
                if l.starts_with("voluntary_ctxt_switches:")
                    || l.starts_with("nonvoluntary_ctxt_switches:")
                {
                    total += l.split_whitespace().nth(1)?.parse::<u64>().ok()?;
                }
            }
        }
    }
    Some(total)
}

/// The 1-minute load average: how busy the machine was besides us (on a
/// shared machine it explains most of the spread in the p99 figures).
#[cfg(target_os = "linux")]
pub fn load_average() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

#[cfg(not(target_os = "linux"))]
pub fn load_average() -> Option<f64> {
    None
}

#[cfg(not(target_os = "linux"))]
pub fn cpu_ns() -> Option<u64> {
    None
}
#[cfg(not(target_os = "linux"))]
pub fn threads() -> Option<usize> {
    None
}
#[cfg(not(target_os = "linux"))]
pub fn rss_kib() -> Option<u64> {
    None
}
#[cfg(not(target_os = "linux"))]
pub fn context_switches() -> Option<u64> {
    None
}

/// Restricts thread `tid` (of this process; `None`: the calling thread) to
/// the given CPUs (`None`: all of them) with the `taskset` tool, so a
/// benchmark can fix where its threads run. Returns false if that is not
/// possible (no taskset, not Linux).
#[cfg(target_os = "linux")]
pub fn pin(tid: Option<u32>, cpus: Option<&[usize]>) -> bool {
    let tid = match tid {
        Some(t) => t,
        None => match current_tid() {
            Some(t) => t,
            None => return false,
        },
    };
    let list = match cpus {
        Some(c) => c
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(","),
        None => format!(
            "0-{}",
            std::thread::available_parallelism().map_or(1, |n| n.get()) - 1
        ),
    };
    std::process::Command::new("taskset")
        .args(["-p", "-c", &list, &tid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The calling thread's id.
#[cfg(target_os = "linux")]
pub fn current_tid() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

#[cfg(not(target_os = "linux"))]
pub fn pin(_tid: Option<u32>, _cpus: Option<&[usize]>) -> bool {
    false
}

/// Nanoseconds since the UNIX epoch on the system's real-time clock.
///
/// The benchmark's two processes stamp and read times on one clock: a
/// `std::time::Instant` cannot cross a process boundary, the real-time clock
/// can (it is the same counter for every process, read through the vDSO).
pub fn epoch_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

static CLOCK_BASE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Sets the origin of [`clock_ns`] (the parent's start, passed to the server
/// child), so stamps stay small enough for an `f64` to hold them exactly.
pub fn set_clock_base(epoch_ns: u64) {
    CLOCK_BASE.store(epoch_ns, std::sync::atomic::Ordering::Relaxed);
}

/// The shared clock: nanoseconds since the base both processes agreed on.
pub fn clock_ns() -> u64 {
    epoch_ns().saturating_sub(CLOCK_BASE.load(std::sync::atomic::Ordering::Relaxed))
}

/// Maps `Instant`s of this process onto [`clock_ns`], from one reading of
/// both clocks taken close together (re-taken for every run, so the two
/// clocks cannot drift apart by more than nanoseconds within it).
#[derive(Clone, Copy)]
pub struct Calibration {
    at: std::time::Instant,
    ns: u64,
}

impl Calibration {
    pub fn now() -> Calibration {
        let a = clock_ns();
        let at = std::time::Instant::now();
        let b = clock_ns();
        Calibration {
            at,
            ns: a + (b - a) / 2,
        }
    }

    /// `t` on the shared clock.
    pub fn clock_of(&self, t: std::time::Instant) -> u64 {
        match t.checked_duration_since(self.at) {
            Some(d) => self.ns + d.as_nanos() as u64,
            None => self
                .ns
                .saturating_sub(self.at.duration_since(t).as_nanos() as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn calibration_maps_instants_both_ways() {
        let cal = Calibration::now();
        let later = cal.at + Duration::from_micros(250);
        assert_eq!(cal.clock_of(later), cal.ns + 250_000);
        if let Some(earlier) = cal.at.checked_sub(Duration::from_micros(10)) {
            assert_eq!(cal.clock_of(earlier), cal.ns.saturating_sub(10_000));
        }
        // The shared clock and the mapped Instant agree within a millisecond.
        let now = Instant::now();
        let diff = cal.clock_of(now).abs_diff(clock_ns());
        assert!(diff < 1_000_000, "{diff} ns apart");
    }
}
