//! The `metastore` binary: etcd-style flags in, a running member out.

mod flags;
mod logging;
mod snapshot_cmd;

use clap::Parser;
use tokio::net::TcpListener;

use flags::{Flags, EXIT_USAGE};

/// glibc malloc/free took 16-19% of server CPU under put load (see
/// docs/benchmarks.md); mimalloc's thread-local pools cut that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "snapshot") {
        std::process::exit(snapshot_cmd::run(&args[2..]));
    }
    let flags = Flags::parse();
    if flags.version {
        println!("metastore Version: {}", env!("CARGO_PKG_VERSION"));
        println!("etcd API Version: {}", api::ETCD_VERSION);
        return;
    }
    let resolved = match flags.resolve() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("metastore: {e}");
            std::process::exit(e.1);
        }
    };
    let sinks = match logging::LogSinks::open(&resolved.log_outputs) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("metastore: {e}");
            std::process::exit(EXIT_USAGE);
        }
    };
    let ansi = sinks.ansi();
    let log = tracing_subscriber::fmt().with_max_level(resolved.log_level).with_writer(sinks);
    match resolved.log_format {
        flags::LogFormat::Json => log.event_format(logging::ZapJson).init(),
        flags::LogFormat::Console => log.with_ansi(ansi).init(),
    }
    fail_stop_on_panic();
    if let Err(e) = failpoint::init_from_env() {
        eprintln!("metastore: METASTORE_FAILPOINTS: {e}");
        std::process::exit(EXIT_USAGE);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("metastore: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err((e, code)) = runtime.block_on(serve(resolved)) {
        eprintln!("metastore: {e}");
        std::process::exit(code);
    }
}

/// Any panic, on any thread, ends the process at once (SIGABRT). A member
/// whose raft thread, apply or any task broke an invariant must not go on
/// serving stale reads, holding leases or answering as leader with nothing
/// behind it; as etcd (a Go program) does, it dies and is restarted from
/// what is on disk. The default hook prints the panic and its location
/// first; the log gets a line too.
fn fail_stop_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!(panic = %info, "panic: stopping this member");
        default(info);
        std::process::abort();
    }));
}

/// Serves until a signal; an error comes with the exit code (2 for a
/// snapshot to restore that is unusable, as `metastore snapshot restore`).
async fn serve(r: flags::Resolved) -> Result<(), (String, i32)> {
    serve_inner(r).await.map_err(|e| match e {
        Served::Bind(msg) => (msg, 1),
        Served::Server(e) => {
            let code = if e.is_usage_error() { EXIT_USAGE } else { 1 };
            (e.to_string(), code)
        }
    })
}

enum Served {
    Bind(String),
    Server(server::ServerError),
}

async fn serve_inner(r: flags::Resolved) -> Result<(), Served> {
    // Peers first, as etcd does: a client port that accepts connections then
    // means every listener is bound, so a taken peer port never shows as a
    // server that answered a connect and then vanished.
    let mut peer = Vec::new();
    for (addr, https) in &r.peer_addrs {
        peer.push((
            TcpListener::bind(addr).await.map_err(|e| Served::Bind(format!("listen on {addr} for peers: {e}")))?,
            *https,
        ));
    }
    let mut client = Vec::new();
    for (addr, https) in &r.client_addrs {
        client.push((
            TcpListener::bind(addr).await.map_err(|e| Served::Bind(format!("listen on {addr} for clients: {e}")))?,
            *https,
        ));
    }
    for (l, _) in &client {
        if let Ok(a) = l.local_addr() {
            tracing::info!(address = %a, "serving client requests");
        }
    }
    let mut metrics = Vec::new();
    for (addr, https) in &r.metrics_addrs {
        metrics.push((
            TcpListener::bind(addr).await.map_err(|e| Served::Bind(format!("listen on {addr} for metrics: {e}")))?,
            *https,
        ));
    }
    server::run(r.config, server::Listeners { client, peer, metrics }, shutdown_signal()).await.map_err(Served::Server)
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM");
                std::future::pending::<()>().await
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
    tracing::info!("signal received");
}
