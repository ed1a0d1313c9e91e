//! `process_*` (Prometheus's process collector, which every dashboard
//! reads) and etcd's `os_fd_*`, from `/proc/self` at scrape time.

use std::fs;

/// One reading of this process.
#[derive(Debug, Default, PartialEq)]
pub struct Process {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub start_time_seconds: f64,
    pub open_fds: u64,
    /// None: unlimited.
    pub max_fds: Option<u64>,
    pub max_virtual_bytes: Option<u64>,
}

/// Reads `/proc/self`; a part that cannot be read stays zero.
pub fn read() -> Process {
    // SAFETY: sysconf only reads configuration values.
    let (ticks, page) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE)) };
    let mut p = fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| parse_stat(&s, ticks.max(1) as f64, page.max(1) as u64))
        .unwrap_or_default();
    if let Some(boot) = fs::read_to_string("/proc/stat").ok().and_then(|s| boot_time(&s)) {
        p.start_time_seconds += boot as f64;
    }
    p.open_fds = fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(0);
    if let Ok(limits) = fs::read_to_string("/proc/self/limits") {
        p.max_fds = limit(&limits, "Max open files");
        p.max_virtual_bytes = limit(&limits, "Max address space");
    }
    p
}

/// Fields of `/proc/self/stat` (proc(5)): after the command in parentheses,
/// utime and stime are fields 14 and 15, starttime 22 (ticks since boot),
/// vsize 23 (bytes), rss 24 (pages).
fn parse_stat(stat: &str, ticks: f64, page: u64) -> Option<Process> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // Field 3 (state) is the first after the command.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some(Process {
        cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
        start_time_seconds: field(22)? as f64 / ticks,
        virtual_bytes: field(23)?,
        resident_bytes: field(24)? * page,
        ..Process::default()
    })
}

fn boot_time(stat: &str) -> Option<u64> {
    stat.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok())
}

/// The soft limit of a `/proc/self/limits` row; None when unlimited.
fn limit(limits: &str, name: &str) -> Option<u64> {
    let row = limits.lines().find(|l| l.starts_with(name))?;
    row[name.len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields() {
        let stat = "1234 (meta store) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 5000 \
                    104857600 2560 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
        let p = parse_stat(stat, 100.0, 4096).expect("parsed");
        assert_eq!(p.cpu_seconds, 3.0);
        assert_eq!(p.start_time_seconds, 50.0);
        assert_eq!(p.virtual_bytes, 104857600);
        assert_eq!(p.resident_bytes, 2560 * 4096);
        assert_eq!(boot_time("cpu 1 2\nbtime 1700000000\n"), Some(1700000000));
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max address space         unlimited            unlimited            bytes\n\
                      Max open files            1024                 1048576              files\n";
        assert_eq!(limit(limits, "Max open files"), Some(1024));
        assert_eq!(limit(limits, "Max address space"), None);
    }

    #[test]
    fn reads_this_process() {
        let p = read();
        assert!(p.resident_bytes > 0 && p.open_fds > 0 && p.start_time_seconds > 1e9, "{p:?}");
    }
}
