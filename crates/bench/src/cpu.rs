//! This process's CPU time, so a report shows how much of the machine the
//! load generator itself used (on a small machine it competes with the
//! server it measures).

/// Linux's USER_HZ: /proc reports CPU times in these ticks on every
/// mainstream architecture.
const TICKS_PER_SEC: f64 = 100.0;

/// User + system CPU seconds used by this process so far (None off Linux).
pub fn process_cpu_seconds() -> Option<f64> {
    parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// utime + stime (fields 14 and 15) of a /proc/<pid>/stat line, in seconds.
fn parse_stat(stat: &str) -> Option<f64> {
    // The command name (field 2) may hold spaces; fields after it follow its ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SEC)
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_utime_and_stime() {
        let line = "1234 (metastore bench) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1 1 1";
        assert_eq!(super::parse_stat(line), Some(3.0));
        assert_eq!(super::parse_stat("garbage"), None);
        assert!(super::process_cpu_seconds().is_some());
    }
}
