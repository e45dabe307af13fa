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

/// Peak resident memory of this process in KiB (VmHWM).
#[cfg(target_os = "linux")]
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
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
pub fn peak_rss_kib() -> Option<u64> {
    None
}
#[cfg(not(target_os = "linux"))]
pub fn context_switches() -> Option<u64> {
    None
}
