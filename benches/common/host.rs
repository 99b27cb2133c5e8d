//! What the benches report about the machine they ran on.

/// The one-minute load average (`/proc/loadavg`), printed next to each figure: the
/// machine is shared, so absolute timings mean little without it.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string()
}
