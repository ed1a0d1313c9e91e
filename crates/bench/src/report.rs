//! The result of one run, as text for people or one JSON line for scripts.
//!
//! JSON shape (times in milliseconds):
//! `{"workload":"put","ok":100000,"errors_total":0,"errors":{},"elapsed_s":9.8,
//!   "ops_per_s":10204.1,"timed_out":false,"latency_ms":{"count":..,"min":..,"mean":..,
//!   "p50":..,"p90":..,"p99":..,"p99_9":..,"max":..},"extra_latency_ms":{...},
//!   "endpoints":[..],"conns":..,"clients":..,"params":{..},"info":{..}}`

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::stats::{ErrorCounts, Summary};

#[derive(Debug, Clone)]
pub struct Report {
    pub workload: String,
    pub endpoints: Vec<String>,
    pub conns: usize,
    pub clients: usize,
    /// Workload flags, echoed so a JSON line says what it measured.
    pub params: Value,
    /// Successful operations (for watch-latency: events received).
    pub ok: u64,
    pub errors: ErrorCounts,
    pub elapsed: Duration,
    /// The hard --timeout ended the run.
    pub timed_out: bool,
    /// Latency of each successful operation.
    pub latency: Summary,
    /// Other distributions a workload measures (name, summary).
    pub extra: Vec<(String, Summary)>,
    /// Other numbers a workload reports (name, value).
    pub info: Vec<(String, Value)>,
    /// CPU seconds this process used during the run (setup included).
    pub client_cpu_s: Option<f64>,
}

fn ms(nanos: u64) -> f64 {
    nanos as f64 / 1e6
}

fn summary_json(s: &Summary) -> Value {
    json!({
        "count": s.count,
        "min": ms(s.min),
        "mean": s.mean / 1e6,
        "p50": ms(s.p50),
        "p90": ms(s.p90),
        "p99": ms(s.p99),
        "p99_9": ms(s.p999),
        "max": ms(s.max),
    })
}

impl Report {
    pub fn ops_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ok as f64 / secs
        } else {
            0.0
        }
    }

    pub fn to_json(&self) -> String {
        let errors: Map<String, Value> =
            self.errors.sorted().into_iter().map(|(m, n)| (m.to_string(), json!(n))).collect();
        let extra: Map<String, Value> = self.extra.iter().map(|(n, s)| (n.clone(), summary_json(s))).collect();
        let info: Map<String, Value> = self.info.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
        json!({
            "workload": self.workload,
            "ok": self.ok,
            "errors_total": self.errors.total(),
            "errors": errors,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "ops_per_s": self.ops_per_sec(),
            "timed_out": self.timed_out,
            "latency_ms": summary_json(&self.latency),
            "extra_latency_ms": extra,
            "endpoints": self.endpoints,
            "conns": self.conns,
            "clients": self.clients,
            "params": self.params,
            "info": info,
            "client_cpu_s": self.client_cpu_s,
        })
        .to_string()
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}: {} ok, {} errors in {:.3} s = {:.1} ops/s ({} conns, {} clients, {})",
            self.workload,
            self.ok,
            self.errors.total(),
            self.elapsed.as_secs_f64(),
            self.ops_per_sec(),
            self.conns,
            self.clients,
            self.endpoints.join(",")
        );
        if self.timed_out {
            let _ = writeln!(out, "  STOPPED BY --timeout: the numbers cover only what finished");
        }
        let _ = writeln!(out, "  params: {}", self.params);
        let _ = writeln!(
            out,
            "  {:<24} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "latency (ms)", "count", "min", "mean", "p50", "p90", "p99", "p99.9", "max"
        );
        let mut rows = vec![(self.workload.as_str(), &self.latency)];
        rows.extend(self.extra.iter().map(|(n, s)| (n.as_str(), s)));
        for (name, s) in rows {
            let _ = writeln!(
                out,
                "  {:<24} {:>9} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
                name,
                s.count,
                ms(s.min),
                s.mean / 1e6,
                ms(s.p50),
                ms(s.p90),
                ms(s.p99),
                ms(s.p999),
                ms(s.max)
            );
        }
        if let Some(c) = self.client_cpu_s {
            let _ = writeln!(out, "  client CPU: {c:.2} s");
        }
        for (n, v) in &self.info {
            let _ = writeln!(out, "  {n}: {v}");
        }
        if self.errors.total() > 0 {
            let _ = writeln!(out, "  errors:");
            for (m, n) in self.errors.sorted() {
                let _ = writeln!(out, "  {n:>9}  {m}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_the_fields_scripts_read() {
        let mut errors = ErrorCounts::default();
        errors.add("Unavailable: x");
        let r = Report {
            workload: "put".into(),
            endpoints: vec!["http://127.0.0.1:1".into()],
            conns: 1,
            clients: 2,
            params: json!({"val_size": 256}),
            ok: 10,
            errors,
            elapsed: Duration::from_secs(2),
            timed_out: false,
            latency: Summary::of_sorted(&[1_000_000, 2_000_000]),
            extra: vec![("other".into(), Summary::default())],
            info: vec![("n".into(), json!(1))],
            client_cpu_s: Some(1.5),
        };
        let v: Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["ops_per_s"], json!(5.0));
        assert_eq!(v["errors_total"], json!(1));
        assert_eq!(v["errors"]["Unavailable: x"], json!(1));
        assert_eq!(v["latency_ms"]["p50"], json!(1.0));
        assert_eq!(v["latency_ms"]["p99_9"], json!(2.0));
        assert_eq!(v["extra_latency_ms"]["other"]["count"], json!(0));
        assert_eq!(v["info"]["n"], json!(1));
        assert_eq!(v["client_cpu_s"], json!(1.5));
        let t = r.to_text();
        assert!(t.contains("5.0 ops/s"), "{t}");
        assert!(t.contains("Unavailable: x"), "{t}");
    }
}
