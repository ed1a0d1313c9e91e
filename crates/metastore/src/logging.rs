//! The log's destinations (`--log-outputs`): stderr, stdout and files,
//! every line to each of them.

use std::fs::File;
use std::io::{self, Write};
use std::sync::Mutex;

use tracing_subscriber::fmt::MakeWriter;

use crate::flags::LogOutput;

enum Sink {
    Stderr,
    Stdout,
    File(Mutex<File>),
}

pub struct LogSinks(Vec<Sink>);

impl LogSinks {
    /// Opens the files (appending, created when missing).
    pub fn open(outputs: &[LogOutput]) -> Result<LogSinks, String> {
        let mut sinks = Vec::new();
        for o in outputs {
            sinks.push(match o {
                LogOutput::Stderr => Sink::Stderr,
                LogOutput::Stdout => Sink::Stdout,
                LogOutput::File(path) => {
                    let f = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .map_err(|e| format!("--log-outputs: cannot open {}: {e}", path.display()))?;
                    Sink::File(Mutex::new(f))
                }
            });
        }
        Ok(LogSinks(sinks))
    }

    /// Colours only for a lone terminal on stderr.
    pub fn ansi(&self) -> bool {
        use std::io::IsTerminal;
        matches!(self.0.as_slice(), [Sink::Stderr]) && io::stderr().is_terminal()
    }
}

pub struct SinkWriter<'a>(&'a [Sink]);

impl Write for SinkWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for sink in self.0 {
            match sink {
                Sink::Stderr => io::stderr().write_all(buf)?,
                Sink::Stdout => io::stdout().write_all(buf)?,
                Sink::File(f) => f.lock().map_err(|_| io::Error::other("log file lock poisoned"))?.write_all(buf)?,
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        for sink in self.0 {
            match sink {
                Sink::Stderr => io::stderr().flush()?,
                Sink::Stdout => io::stdout().flush()?,
                Sink::File(f) => f.lock().map_err(|_| io::Error::other("log file lock poisoned"))?.flush()?,
            }
        }
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogSinks {
    type Writer = SinkWriter<'a>;

    fn make_writer(&'a self) -> SinkWriter<'a> {
        SinkWriter(&self.0)
    }
}
