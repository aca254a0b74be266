//! Latency recording: an HDR histogram per request kind (microsecond resolution, three
//! significant digits, up to an hour), and the figures reports show.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies above this are recorded as this (a request that slow is a failure anyway).
const MAX_MICROS: u64 = 3_600_000_000;

#[derive(Debug, Clone)]
pub struct Latencies {
    hist: Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies {
            hist: Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds"),
        }
    }
}

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// One bar of a latency distribution: requests with latency in `(lower_ms, upper_ms]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket {
    pub lower_ms: f64,
    pub upper_ms: f64,
    pub count: u64,
}

impl Latencies {
    pub fn record(&mut self, latency: Duration) {
        let micros = (latency.as_micros() as u64).clamp(1, MAX_MICROS);
        self.hist.saturating_record(micros);
    }

    /// The latency at quantile `q` (0..=1), in milliseconds; 0 when empty.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.hist.is_empty() {
            return 0.0;
        }
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn summary(&self) -> LatencySummary {
        if self.hist.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: self.hist.len(),
            mean_ms: self.hist.mean() / 1000.0,
            p50_ms: self.quantile_ms(0.50),
            p90_ms: self.quantile_ms(0.90),
            p99_ms: self.quantile_ms(0.99),
            max_ms: self.hist.max() as f64 / 1000.0,
        }
    }

    /// The distribution over `buckets` logarithmic bars spanning min to max (for charts).
    pub fn distribution(&self, buckets: usize) -> Vec<Bucket> {
        if self.hist.is_empty() || buckets == 0 {
            return Vec::new();
        }
        let lo = (self.hist.min().max(1) as f64).ln();
        let hi = (self.hist.max().max(1) as f64).ln();
        let step = ((hi - lo) / buckets as f64).max(1e-9);
        let mut bars: Vec<Bucket> = (0..buckets)
            .map(|i| Bucket {
                lower_ms: (lo + step * i as f64).exp() / 1000.0,
                upper_ms: (lo + step * (i + 1) as f64).exp() / 1000.0,
                count: 0,
            })
            .collect();
        for v in self.hist.iter_recorded() {
            let value = v.value_iterated_to().max(1) as f64;
            let i = (((value.ln() - lo) / step) as usize).min(buckets - 1);
            bars[i].count += v.count_since_last_iteration();
        }
        bars
    }
}

/// The median of `values` (mean of the middle two for an even count); 0 when empty.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Within the histogram's three significant digits.
    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= b.abs() * 0.001 + 1e-9
    }

    #[test]
    fn percentiles_of_one_to_a_thousand() {
        let mut l = Latencies::default();
        for i in 1..=1000 {
            l.record(ms(i));
        }
        let s = l.summary();
        assert_eq!(s.count, 1000);
        assert!(close(s.p50_ms, 500.0), "{s:?}");
        assert!(close(s.p90_ms, 900.0), "{s:?}");
        assert!(close(s.p99_ms, 990.0), "{s:?}");
        assert!(close(s.max_ms, 1000.0), "{s:?}");
        assert!(close(s.mean_ms, 500.5), "{s:?}");
    }

    #[test]
    fn one_slow_outlier_shows_in_max_and_not_in_p99() {
        let mut l = Latencies::default();
        for _ in 0..999 {
            l.record(Duration::from_micros(1500));
        }
        l.record(ms(2000));
        let s = l.summary();
        assert!(close(s.p50_ms, 1.5) && close(s.p99_ms, 1.5), "{s:?}");
        assert!(close(s.max_ms, 2000.0), "{s:?}");
    }

    #[test]
    fn empty_is_all_zero() {
        assert_eq!(Latencies::default().summary(), LatencySummary::default());
        assert!(Latencies::default().distribution(10).is_empty());
    }

    #[test]
    fn distribution_holds_every_request_in_ordered_bars() {
        let mut l = Latencies::default();
        for i in 1..=500 {
            l.record(Duration::from_micros(i * 37));
        }
        let bars = l.distribution(12);
        assert_eq!(bars.len(), 12);
        assert_eq!(bars.iter().map(|b| b.count).sum::<u64>(), 500);
        assert!(bars.windows(2).all(|w| close(w[0].upper_ms, w[1].lower_ms)));
        assert!(bars[0].lower_ms <= 0.037 && bars[11].upper_ms >= 18.4);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }
}
