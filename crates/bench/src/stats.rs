//! Latency samples and error counts.
//!
//! Every latency is kept (8 bytes per operation: a million operations cost
//! 8 MB), sorted once at the end, and percentiles use the nearest-rank
//! method: p is the smallest sample with at least p% of the samples at or
//! below it. With samples 1..=100, p50 = 50, p99 = 99, p99.9 = 100.

use std::collections::BTreeMap;
use std::time::Duration;

/// Latency samples in nanoseconds.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    nanos: Vec<u64>,
}

impl Samples {
    pub fn with_capacity(n: usize) -> Samples {
        Samples { nanos: Vec::with_capacity(n) }
    }

    pub fn push(&mut self, d: Duration) {
        self.nanos.push(d.as_nanos().min(u64::MAX as u128) as u64);
    }

    pub fn push_nanos(&mut self, n: u64) {
        self.nanos.push(n);
    }

    pub fn merge(&mut self, other: Samples) {
        self.nanos.extend(other.nanos);
    }

    pub fn len(&self) -> usize {
        self.nanos.len()
    }

    /// Sorts the samples and summarises them.
    pub fn summary(mut self) -> Summary {
        self.nanos.sort_unstable();
        Summary::of_sorted(&self.nanos)
    }
}

/// The nearest-rank percentile `q` (0..=100) of ascending `sorted`, or None if empty.
pub fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    // rank = ceil(q/100 * n), at least 1; computed in integers of 1/1000 %
    // so that 99.9 of 1000 is exactly rank 999 (no float rounding surprise).
    let q_milli = (q.clamp(0.0, 100.0) * 1000.0).round() as u128;
    let rank = (q_milli * n as u128).div_ceil(100_000).max(1) as usize;
    Some(sorted[rank.min(n) - 1])
}

/// A latency distribution, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Summary {
    pub count: u64,
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Summary {
    pub fn of_sorted(sorted: &[u64]) -> Summary {
        if sorted.is_empty() {
            return Summary::default();
        }
        let p = |q| percentile(sorted, q).unwrap_or(0);
        let sum: u128 = sorted.iter().map(|&x| x as u128).sum();
        Summary {
            count: sorted.len() as u64,
            min: sorted[0],
            mean: sum as f64 / sorted.len() as f64,
            p50: p(50.0),
            p90: p(90.0),
            p99: p(99.0),
            p999: p(99.9),
            max: sorted[sorted.len() - 1],
        }
    }
}

/// Errors counted by message (gRPC code and message, or the client-side cause).
#[derive(Debug, Default, Clone)]
pub struct ErrorCounts {
    by_message: BTreeMap<String, u64>,
}

impl ErrorCounts {
    pub fn add(&mut self, message: impl Into<String>) {
        *self.by_message.entry(message.into()).or_insert(0) += 1;
    }

    pub fn add_n(&mut self, message: impl Into<String>, n: u64) {
        if n > 0 {
            *self.by_message.entry(message.into()).or_insert(0) += n;
        }
    }

    pub fn merge(&mut self, other: ErrorCounts) {
        for (m, n) in other.by_message {
            self.add_n(m, n);
        }
    }

    pub fn total(&self) -> u64 {
        self.by_message.values().sum()
    }

    /// (message, count), most frequent first.
    pub fn sorted(&self) -> Vec<(&str, u64)> {
        let mut v: Vec<(&str, u64)> = self.by_message.iter().map(|(m, &n)| (m.as_str(), n)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v
    }
}

/// How a tonic error is counted: its code and etcd's message.
pub fn status_message(s: &tonic::Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&v, 1.0), Some(1));
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 50.5), Some(51));
        assert_eq!(percentile(&v, 90.0), Some(90));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 99.9), Some(100));
        assert_eq!(percentile(&v, 100.0), Some(100));
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&v, 99.9), Some(999));
        assert_eq!(percentile(&v, 99.0), Some(990));
        let v: Vec<u64> = (1..=10_000).collect();
        assert_eq!(percentile(&v, 99.9), Some(9990));
    }

    #[test]
    fn percentiles_of_tiny_sets() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7], 0.0), Some(7));
        assert_eq!(percentile(&[7], 99.9), Some(7));
        assert_eq!(percentile(&[1, 2], 50.0), Some(1));
        assert_eq!(percentile(&[1, 2], 50.1), Some(2));
        // Out-of-range q is clamped.
        assert_eq!(percentile(&[1, 2, 3], 150.0), Some(3));
        assert_eq!(percentile(&[1, 2, 3], -5.0), Some(1));
    }

    #[test]
    fn summary_sorts_and_merges() {
        let mut a = Samples::default();
        for n in [30u64, 10, 20] {
            a.push_nanos(n);
        }
        let mut b = Samples::with_capacity(2);
        b.push(Duration::from_nanos(40));
        b.push(Duration::from_nanos(50));
        a.merge(b);
        assert_eq!(a.len(), 5);
        let s = a.summary();
        assert_eq!((s.count, s.min, s.max, s.p50, s.p90, s.p99, s.p999), (5, 10, 50, 30, 50, 50, 50));
        assert!((s.mean - 30.0).abs() < 1e-9);
        assert_eq!(Samples::default().summary(), Summary::default());
    }

    #[test]
    fn errors_by_message() {
        let mut e = ErrorCounts::default();
        e.add("b");
        e.add("a");
        e.add("b");
        let mut f = ErrorCounts::default();
        f.add_n("a", 3);
        f.add_n("zero", 0);
        e.merge(f);
        assert_eq!(e.total(), 6);
        assert_eq!(e.sorted(), vec![("a", 4), ("b", 2)]);
        let s = tonic::Status::unavailable("etcdserver: too many requests");
        assert_eq!(status_message(&s), "Unavailable: etcdserver: too many requests");
    }
}
