//! What this process used, from `/proc/self` (Linux only; no libc needed).

use anyhow::{Context, Result};
use std::collections::HashSet;

/// `sysconf(_SC_CLK_TCK)`, the unit of utime/stime in `/proc/<pid>/stat`. It is 100 on every
/// Linux architecture krab targets (`getconf CLK_TCK` prints 100); the kernel reports in USER_HZ
/// whatever its internal HZ.
const CLK_TCK: f64 = 100.0;

/// User + system CPU seconds this process (all its threads) has used so far, at 10 ms resolution.
pub(crate) fn cpu_seconds() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    // The command name, field 2, is in parentheses and may hold spaces: count from the last `)`.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).context("malformed /proc/self/stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state); utime and stime are fields 14 and 15.
    let tick = |i: usize| -> Result<f64> {
        Ok(fields.get(i).context("short /proc/self/stat")?.parse::<u64>().context("utime/stime")? as f64)
    };
    Ok((tick(14 - 3)? + tick(15 - 3)?) / CLK_TCK)
}

/// A `Key:   value kB` line of `/proc/self/status`.
fn status_field(key: &str) -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
        .with_context(|| format!("no {key} in /proc/self/status"))?;
    let value = line.split_whitespace().next().with_context(|| format!("empty {key}"))?;
    value.parse().with_context(|| format!("{key}: {value}"))
}

/// Peak resident set size (`VmHWM`), in MiB.
pub(crate) fn peak_rss_mb() -> Result<f64> {
    Ok(status_field("VmHWM")? as f64 / 1024.0)
}

/// Resident set size right now (`VmRSS`), in MiB.
pub(crate) fn rss_mb() -> Result<f64> {
    Ok(status_field("VmRSS")? as f64 / 1024.0)
}

/// Threads of this process right now.
pub(crate) fn threads() -> Result<u64> {
    status_field("Threads")
}

/// Established TCP connections this process holds to remote port `port`: its socket inodes
/// (from `/proc/self/fd`) matched against `/proc/self/net/tcp{,6}`.
pub(crate) fn connections_to_port(port: u16) -> Result<usize> {
    let mut inodes = HashSet::new();
    for entry in std::fs::read_dir("/proc/self/fd").context("reading /proc/self/fd")? {
        let Ok(target) = std::fs::read_link(entry?.path()) else { continue };
        let target = target.to_string_lossy();
        if let Some(inode) = target.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
            inodes.insert(inode.to_string());
        }
    }
    let mut count = 0;
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(remote), Some(state), Some(inode)) = (cols.get(2), cols.get(3), cols.get(9)) else { continue };
            let remote_port = remote.rsplit_once(':').and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            // State 01 is ESTABLISHED.
            if *state == "01" && remote_port == Some(port) && inodes.contains(*inode) {
                count += 1;
            }
        }
    }
    Ok(count)
}
