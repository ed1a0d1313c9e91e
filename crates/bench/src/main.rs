//! `metastore-bench`: a load generator for any etcd v3 API endpoints (MetaStore
//! or etcd), with the workloads of etcd's `benchmark` tool. See `args.rs` for
//! the flags and `workloads/` for what each subcommand sends.

mod args;
mod conn;
mod cpu;
mod keys;
mod progress;
mod report;
mod runner;
mod stats;
mod workloads;

use std::process::ExitCode;

use clap::Parser;

/// The load generator's CPU is paid in every measurement it makes (it shares
/// the machine with the server): glibc malloc/free was ~14% of it under put
/// load, as it was for the server (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let opts = match cli.validate() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("metastore-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("metastore-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(workloads::execute(opts)) {
        Ok(report) => {
            if cli.json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_text());
            }
            if report.ok == 0 && report.errors.total() > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("metastore-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
