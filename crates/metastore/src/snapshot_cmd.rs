//! `metastore snapshot status|restore`: etcdutl's offline snapshot
//! commands, for etcd's snapshot format (from etcd 3.4/3.5 or MetaStore).
//!
//! Exit codes: 0 done; 2 bad usage or a snapshot file that cannot be
//! restored (damaged, truncated, not etcd's: nothing is written); 1 any
//! other failure.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;

use crate::flags::{Flags, EXIT_USAGE};

const USAGE: &str = "usage: metastore snapshot status FILE [-w simple|table|json]\n       \
                     metastore snapshot restore FILE [--data-dir DIR] [--name NAME] [--initial-cluster ...] \
                     [--initial-cluster-token T] [--initial-advertise-peer-urls URLS] [--skip-hash-check] \
                     [--storage memory|rocksdb] (any server flag)";

#[derive(Parser)]
#[command(name = "metastore snapshot status", about = "Print a snapshot file's hash, revision, keys and size")]
struct StatusArgs {
    file: PathBuf,
    /// Output format: simple, table or json (etcdctl's --write-out).
    #[arg(short = 'w', long = "write-out", default_value = "simple")]
    write_out: String,
}

/// Runs `metastore snapshot ARGS...`; returns the exit code.
pub fn run(args: &[OsString]) -> i32 {
    match args.first().and_then(|a| a.to_str()) {
        Some("status") => status(&args[1..]),
        Some("restore") => restore(&args[1..]),
        _ => {
            eprintln!("{USAGE}");
            EXIT_USAGE
        }
    }
}

fn status(args: &[OsString]) -> i32 {
    let argv = std::iter::once(OsString::from("metastore snapshot status")).chain(args.iter().cloned());
    let parsed = match StatusArgs::try_parse_from(argv) {
        Ok(p) => p,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_USAGE } else { 0 };
        }
    };
    let s = match server::snapshot_status(&parsed.file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("Error: {e}");
            return EXIT_USAGE;
        }
    };
    let size = human_bytes(s.total_size);
    match parsed.write_out.as_str() {
        "simple" => println!("{:x}, {}, {}, {size}", s.hash, s.revision, s.total_key),
        "json" => println!("{}", serde_json::to_string(&s).expect("a status serializes")),
        "table" => {
            print!("{}", table(&[&format!("{:x}", s.hash), &s.revision.to_string(), &s.total_key.to_string(), &size]))
        }
        other => {
            eprintln!("Error: unsupported output format {other:?} (simple, table or json)");
            return EXIT_USAGE;
        }
    }
    0
}

fn restore(args: &[OsString]) -> i32 {
    let Some((file, rest)) = args.split_first().filter(|(f, _)| !f.to_string_lossy().starts_with('-')) else {
        eprintln!("{USAGE}");
        return EXIT_USAGE;
    };
    let argv = [OsString::from("metastore"), OsString::from("--restore-snapshot"), file.clone()]
        .into_iter()
        .chain(rest.iter().cloned());
    let flags = match Flags::try_parse_from(argv) {
        Ok(f) => f,
        Err(e) => {
            let _ = e.print();
            return EXIT_USAGE;
        }
    };
    let resolved = match flags.resolve() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("metastore: {e}");
            return e.1;
        }
    };
    let data_dir = resolved.config.data_dir.clone();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("metastore: cannot start the runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(server::restore_offline(resolved.config)) {
        Ok(()) => {
            println!("restored snapshot {} into {}", file.to_string_lossy(), data_dir.display());
            0
        }
        Err(e) => {
            eprintln!("Error: {e}");
            if e.is_usage_error() {
                EXIT_USAGE
            } else {
                1
            }
        }
    }
}

/// Bytes as go-humanize's `Bytes` writes them (etcdctl's sizes): SI units,
/// one decimal below 10.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if n < 10 {
        return format!("{n} B");
    }
    let e = ((n as f64).ln() / 1000f64.ln()).floor() as usize;
    let e = e.min(UNITS.len() - 1);
    let val = ((n as f64 / 1000f64.powi(e as i32)) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{val:.1} {}", UNITS[e])
    } else {
        format!("{val:.0} {}", UNITS[e])
    }
}

/// etcdctl's table of one status row.
fn table(row: &[&str; 4]) -> String {
    const HEAD: [&str; 4] = ["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"];
    let widths: Vec<usize> = HEAD.iter().zip(row).map(|(h, c)| h.len().max(c.len()) + 2).collect();
    let rule: String = widths.iter().map(|w| format!("+{}", "-".repeat(*w))).collect::<String>() + "+\n";
    let center = |s: &str, w: usize| {
        let left = (w - s.len()) / 2;
        format!("{}{s}{}", " ".repeat(left), " ".repeat(w - s.len() - left))
    };
    let head: String = HEAD.iter().zip(&widths).map(|(h, w)| format!("|{}", center(h, *w))).collect::<String>() + "|\n";
    let body: String =
        row.iter().zip(&widths).map(|(c, w)| format!("|{:>w$} ", c, w = w - 1)).collect::<String>() + "|\n";
    format!("{rule}{head}{rule}{body}{rule}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_etcdctl_prints_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(9), "9 B");
        assert_eq!(human_bytes(20480), "20 kB");
        assert_eq!(human_bytes(2_125_824), "2.1 MB");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_000_000), "1.0 MB");
    }
}
