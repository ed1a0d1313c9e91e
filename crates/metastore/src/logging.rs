//! The log's destinations (`--log-outputs`): stderr, stdout and files,
//! every line to each of them; and etcd's JSON line format
//! (`--log-format json`, the default).

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields};
use tracing_subscriber::fmt::{FmtContext, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

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

/// etcd's log lines (`--log-format json`, zap's JSON encoder as etcd
/// configures it): one object per line, `level`, `ts`, `caller` and `msg`
/// first, then the event's fields with their types kept (numbers and
/// booleans as such, the rest as strings).
pub struct ZapJson;

impl<S, N> FormatEvent<S, N> for ZapJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut w: format::Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = JsonFields::default();
        event.record(&mut fields);
        let level = match *meta.level() {
            Level::ERROR => "error",
            Level::WARN => "warn",
            Level::INFO => "info",
            Level::DEBUG | Level::TRACE => "debug",
        };
        let caller = match (meta.file(), meta.line()) {
            (Some(file), Some(line)) => format!("{}:{line}", short_caller(file)),
            _ => meta.target().to_string(),
        };
        write!(w, "{{\"level\":\"{level}\",\"ts\":\"{}\",\"caller\":{}", zap_time(SystemTime::now()), quote(&caller))?;
        write!(w, ",\"msg\":{}", quote(&fields.message))?;
        for (key, value) in &fields.rest {
            write!(w, ",{}:{value}", quote(key))?;
        }
        writeln!(w, "}}")
    }
}

fn quote(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// zap's short caller: the file's directory and name
/// (`crates/server/src/node/runner.rs` -> `node/runner.rs`).
fn short_caller(file: &str) -> &str {
    match file.rmatch_indices('/').nth(1) {
        Some((i, _)) => &file[i + 1..],
        None => file,
    }
}

/// etcd's time format, `2006-01-02T15:04:05.000000Z0700`, in UTC.
fn zap_time(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z", rem / 3600, rem % 3600 / 60, rem % 60, d.subsec_micros())
}

/// The proleptic Gregorian date of a day count from 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// An event's message and its other fields, each as JSON text.
#[derive(Default)]
struct JsonFields {
    message: String,
    rest: Vec<(String, String)>,
}

impl JsonFields {
    fn put(&mut self, field: &Field, json: String) {
        self.rest.push((field.name().to_string(), json));
    }
}

impl Visit for JsonFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.put(field, quote(value));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.put(field, quote(&text));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.to_string());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.to_string());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.to_string());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, serde_json::Value::from(value).to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zap_time_is_etcds_format() {
        let t = UNIX_EPOCH + std::time::Duration::from_micros(1_796_630_400_123_456);
        assert_eq!(zap_time(t), "2026-12-07T08:00:00.123456Z");
        assert_eq!(zap_time(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn caller_is_short() {
        assert_eq!(short_caller("crates/server/src/node/runner.rs"), "node/runner.rs");
        assert_eq!(short_caller("src/main.rs"), "src/main.rs");
        assert_eq!(short_caller("main.rs"), "main.rs");
    }

    #[test]
    fn events_become_one_json_object_per_line() {
        let buf = std::sync::Arc::new(Mutex::new(Vec::new()));
        let writer = {
            let buf = buf.clone();
            move || TestWriter(buf.clone())
        };
        let subscriber = tracing_subscriber::fmt().with_writer(writer).event_format(ZapJson).finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(index = 7u64, ok = true, peer = %"8e9e05c52164694d", ratio = 0.5, "applied \"x\"");
            tracing::warn!("plain");
        });
        let text = String::from_utf8(buf.lock().expect("lock").clone()).expect("utf8");
        let lines: Vec<serde_json::Value> =
            text.lines().map(|l| serde_json::from_str(l).expect("a JSON object per line")).collect();
        assert_eq!(lines.len(), 2, "{text}");
        let first = &lines[0];
        assert_eq!(first["level"], "info");
        assert_eq!(first["msg"], "applied \"x\"");
        assert_eq!(first["index"], 7);
        assert_eq!(first["ok"], true);
        assert_eq!(first["peer"], "8e9e05c52164694d");
        assert_eq!(first["ratio"], 0.5);
        assert!(first["caller"].as_str().is_some_and(|c| c.starts_with("src/logging.rs:")), "{first}");
        assert!(first["ts"].as_str().is_some_and(|t| t.len() == 27 && t.ends_with('Z')), "{first}");
        assert!(text.lines().next().is_some_and(|l| l.starts_with(r#"{"level":"info","ts":""#)));
        assert_eq!(lines[1]["level"], "warn");
    }

    struct TestWriter(std::sync::Arc<Mutex<Vec<u8>>>);

    impl Write for TestWriter {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().map_err(|_| io::Error::other("poisoned"))?.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
}
