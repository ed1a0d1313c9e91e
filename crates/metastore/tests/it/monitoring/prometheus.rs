//! A Prometheus server (Debian's `prometheus`) for a test: scrapes the
//! given jobs every second on loopback, evaluates the given rules every
//! second, answers queries through its HTTP API. Killed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::metrics::http_get;

const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
const READY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Prometheus {
    child: Child,
    addr: String,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// `jobs`: job name and its targets (`host:port`); `rules`: the text of
    /// a rule file, if any.
    pub fn start(jobs: &[(&str, Vec<String>)], rules: Option<&str>) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n",
        );
        for (job, targets) in jobs {
            let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
            config.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: [{}]\n",
                list.join(", ")
            ));
        }
        if let Some(rules) = rules {
            std::fs::write(dir.path().join("rules.yaml"), rules).expect("write rules");
            config.push_str("rule_files: [rules.yaml]\n");
        }
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write config");
        let addr = format!("127.0.0.1:{}", testkit::free_port());
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
        let child = Command::new("/usr/bin/prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start prometheus (scripts/setup.sh installs it)");
        let p = Prometheus { child, addr, dir };
        let end = Instant::now() + READY_TIMEOUT;
        while !matches!(http_get(&p.addr, "/-/ready", HTTP_TIMEOUT), Ok((200, _))) {
            assert!(Instant::now() < end, "prometheus not ready:\n{}", p.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    #[allow(dead_code)]
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    fn api(&self, path: &str) -> Result<Value, String> {
        let (code, body) = http_get(&self.addr, path, HTTP_TIMEOUT).map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if code != 200 || v["status"] != "success" {
            return Err(format!("{path}: HTTP {code}: {body}"));
        }
        Ok(v["data"].clone())
    }

    /// An instant query's result series (Err: Prometheus refused it).
    pub fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let data = self.api(&format!("/api/v1/query?query={}", encode(expr)))?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// The alerts firing now: their label sets.
    pub fn firing(&self) -> Vec<Value> {
        let Ok(data) = self.api("/api/v1/alerts") else {
            return Vec::new();
        };
        let alerts = data["alerts"].as_array().cloned().unwrap_or_default();
        alerts.into_iter().filter(|a| a["state"] == "firing").map(|a| a["labels"].clone()).collect()
    }

    /// Waits until an alert named `name` whose labels pass `matches` fires.
    pub fn wait_firing(
        &self,
        name: &str,
        timeout: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> Result<Value, String> {
        let end = Instant::now() + timeout;
        loop {
            let firing = self.firing();
            if let Some(a) = firing.iter().find(|l| l["alertname"] == name && matches(l)) {
                return Ok(a.clone());
            }
            if Instant::now() >= end {
                return Err(format!("{name} not firing after {timeout:?}; firing: {firing:?}"));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits until every target of every job was scraped `n` times at
    /// least (by `up`'s samples).
    pub fn wait_scrapes(&self, n: usize, timeout: Duration) {
        let end = Instant::now() + timeout;
        let want = format!("count_over_time(up[{}s])", 60);
        loop {
            let ok = self.query(&want).is_ok_and(|r| {
                !r.is_empty()
                    && r.iter().all(|s| s["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()) >= Some(n as f64))
            });
            if ok {
                return;
            }
            assert!(Instant::now() < end, "not scraped {n} times in {timeout:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encoding for a query string value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The metric names an expression selects (`name{...}`).
pub fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    for (i, _) in expr.match_indices('{') {
        let start = bytes[..i].iter().rposition(|c| !(c.is_ascii_alphanumeric() || *c == b'_' || *c == b':'));
        let name = &expr[start.map_or(0, |s| s + 1)..i];
        if !name.is_empty() && !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    names
}

#[test]
fn metric_names_of_an_expression() {
    let e = r#"histogram_quantile(0.99, rate(etcd_disk_wal_fsync_duration_seconds_bucket{job=~".*etcd.*"}[5m])) > up{a="b"}"#;
    assert_eq!(metric_names(e), vec!["etcd_disk_wal_fsync_duration_seconds_bucket", "up"]);
    assert_eq!(encode("a b{c=\"d\"}"), "a%20b%7Bc%3D%22d%22%7D");
}
