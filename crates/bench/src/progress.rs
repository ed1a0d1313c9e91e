//! A one-line progress display on stderr, only when stderr is a terminal, so
//! logs and pipes (and `--json` consumers) never see it.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the line is redrawn.
const REDRAW: Duration = Duration::from_millis(250);

/// Counters the workers bump and the display reads.
#[derive(Debug, Default)]
pub struct Counters {
    pub ok: AtomicU64,
    pub errors: AtomicU64,
    finished: AtomicBool,
}

impl Counters {
    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}

/// The display task; `finish` stops it and clears the line.
pub struct Progress {
    counters: Arc<Counters>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts the display if stderr is a terminal. The bar follows `total`
    /// (operations) if known, else `duration`.
    pub fn start(label: String, total: Option<u64>, duration: Option<Duration>, counters: Arc<Counters>) -> Progress {
        let task = std::io::stderr().is_terminal().then(|| {
            let c = counters.clone();
            tokio::spawn(async move {
                let start = Instant::now();
                let mut tick = tokio::time::interval(REDRAW);
                while !c.finished.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let secs = start.elapsed().as_secs_f64().max(1e-9);
                    let ok = c.ok();
                    let of = total.map(|t| format!("/{t}")).unwrap_or_default();
                    let bar = match (total, duration) {
                        (Some(t), _) => bar(ok + c.errors(), t),
                        (None, Some(d)) => bar(start.elapsed().as_millis() as u64, d.as_millis() as u64),
                        (None, None) => String::new(),
                    };
                    let mut e = std::io::stderr().lock();
                    let _ = write!(
                        e,
                        "\r\x1b[2K{label} {bar}{ok}{of} ok, {} err, {:.0} ops/s, {:.1} s",
                        c.errors(),
                        ok as f64 / secs,
                        secs
                    );
                    let _ = e.flush();
                }
            })
        });
        Progress { counters, task }
    }

    pub async fn finish(mut self) {
        self.counters.finished.store(true, Ordering::Relaxed);
        if let Some(t) = self.task.take() {
            let _ = t.await;
            let mut e = std::io::stderr().lock();
            let _ = write!(e, "\r\x1b[2K");
            let _ = e.flush();
        }
    }
}

/// `[#####     ] ` for `done` of `total`.
fn bar(done: u64, total: u64) -> String {
    const WIDTH: u64 = 20;
    let filled = (done.min(total) * WIDTH).checked_div(total).unwrap_or(WIDTH) as usize;
    format!("[{}{}] ", "#".repeat(filled), " ".repeat(WIDTH as usize - filled))
}

#[cfg(test)]
mod tests {
    #[test]
    fn bar_fills_in_proportion() {
        assert_eq!(super::bar(0, 10), format!("[{}] ", " ".repeat(20)));
        assert_eq!(super::bar(5, 10), format!("[{}{}] ", "#".repeat(10), " ".repeat(10)));
        assert_eq!(super::bar(99, 10), format!("[{}] ", "#".repeat(20)));
    }
}
