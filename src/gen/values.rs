//! Sample values and timestamps for generated series.
//!
//! Everything is a pure function of the seed, the series and the absolute scrape index, except
//! the running value carried from one block to the next, so blocks are deterministic and
//! continuous across their boundaries (counters keep counting, resets happen at fixed scrapes).

use super::topology::Kind;

/// SplitMix64 finaliser folded over the parts: a fast, well-mixed, stable hash.
pub fn hash(parts: &[u64]) -> u64 {
    let mut h = 0x9e37_79b9_7f4a_7c15u64;
    for &p in parts {
        h ^= p;
        h = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 31;
    }
    h
}

/// A number in [0, 1) from a hash.
#[inline]
pub fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Hash of a string, for stable series keys.
pub fn hash_str(h: u64, s: &str) -> u64 {
    let mut acc = h;
    for chunk in s.as_bytes().chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        acc = hash(&[acc, u64::from_le_bytes(word)]);
    }
    hash(&[acc, s.len() as u64])
}

/// Scrape timing of one target.
pub struct Scrapes {
    pub interval_ms: i64,
    pub phase_ms: i64,
    pub jitter_probability: f64,
    pub target: u64,
}

impl Scrapes {
    pub fn new(interval_ms: i64, jitter_probability: f64, target: u64) -> Self {
        Scrapes {
            interval_ms,
            phase_ms: (target % interval_ms as u64) as i64,
            jitter_probability,
            target,
        }
    }

    /// The scrape indices whose timestamps fall in `[min_time, max_time)`, with timestamps.
    pub fn in_range(&self, min_time: i64, max_time: i64, out: &mut Vec<(u64, i64)>) {
        out.clear();
        let first = (min_time - self.phase_ms).div_euclid(self.interval_ms);
        let mut k = first.max(0);
        loop {
            let t = self.timestamp(k as u64);
            if t >= max_time {
                break;
            }
            if t >= min_time {
                out.push((k as u64, t));
            }
            k += 1;
        }
    }

    /// Late scrapes (a few ms) happen now and then, as with a busy Prometheus.
    fn timestamp(&self, k: u64) -> i64 {
        let base = k as i64 * self.interval_ms + self.phase_ms;
        if self.jitter_probability > 0.0 {
            let h = hash(&[self.target, k, 0x1177e4]);
            if unit(h) < self.jitter_probability {
                return base + 1 + (h % 25) as i64;
            }
        }
        base
    }
}

/// Parameters shared by all series of a run.
pub struct ValueParams {
    pub interval_s: f64,
    pub reset_probability: f64,
}

/// The value a series has before its first sample.
pub fn initial_state(kind: Kind, group: u64, new_series: bool) -> f64 {
    match kind {
        Kind::Gauge { mean, .. } => mean,
        Kind::Constant(v) => v,
        // Series present at the start have been counting for a while; new pods start at zero.
        Kind::Counter {
            rate_per_s,
            integer,
        } if !new_series => {
            let v = rate_per_s * 86_400.0 * unit(hash(&[group, 0x57a27]));
            if integer {
                v.round()
            } else {
                (v * 100.0).round() / 100.0
            }
        }
        _ => 0.0,
    }
}

/// Appends the samples at `scrapes` to `out`, advancing `state`.
pub fn fill_samples(
    kind: Kind,
    group: u64,
    params: &ValueParams,
    state: &mut f64,
    scrapes: &[(u64, i64)],
    out: &mut Vec<(i64, f64)>,
) {
    out.clear();
    for &(k, t) in scrapes {
        let h = hash(&[group, k]);
        let reset = params.reset_probability > 0.0
            && unit(hash(&[group, k, 0xdead])) < params.reset_probability;
        let v = match kind {
            Kind::Constant(v) => v,
            Kind::Gauge {
                mean,
                spread,
                integer,
            } => {
                let mut v = *state + spread * (unit(h) - 0.5) + (mean - *state) * 0.05;
                if integer {
                    v = v.round();
                }
                *state = v;
                v
            }
            Kind::Counter {
                rate_per_s,
                integer,
            } => {
                let inc = rate_per_s * params.interval_s * (0.5 + unit(h));
                let base = if reset { 0.0 } else { *state };
                let v = if integer {
                    (base + inc).round()
                } else {
                    ((base + inc) * 100.0).round() / 100.0
                };
                *state = v;
                v
            }
            Kind::Bucket {
                rate_per_s,
                fraction,
            } => {
                // `state` is the group's request count; every bucket replays the same count.
                let inc = (rate_per_s * params.interval_s * (0.5 + unit(h))).round();
                *state = if reset { inc } else { *state + inc };
                (*state * fraction).floor()
            }
            Kind::Sum { rate_per_s, mean } => {
                let inc = (rate_per_s * params.interval_s * (0.5 + unit(h))).round();
                let latency = mean * (0.8 + 0.4 * unit(hash(&[group, k, 0x5u64])));
                *state = if reset {
                    inc * latency
                } else {
                    *state + inc * latency
                };
                *state
            }
        };
        out.push((t, v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrapes_are_regular_and_within_range() {
        let s = Scrapes::new(15_000, 0.1, 12345);
        let mut out = Vec::new();
        s.in_range(7_200_000, 14_400_000, &mut out);
        assert_eq!(out.len(), 480);
        assert!(out.windows(2).all(|w| w[0].1 < w[1].1));
        assert!(out
            .iter()
            .all(|&(_, t)| (7_200_000..14_400_000).contains(&t)));
    }

    #[test]
    fn counters_are_monotonic_between_resets_and_buckets_consistent() {
        let params = ValueParams {
            interval_s: 15.0,
            reset_probability: 0.01,
        };
        let scrapes: Vec<(u64, i64)> = (0..2000).map(|k| (k, k as i64 * 15_000)).collect();
        let (mut low, mut high) = (0.0, 0.0);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        fill_samples(
            Kind::Bucket {
                rate_per_s: 3.0,
                fraction: 0.4,
            },
            9,
            &params,
            &mut low,
            &scrapes,
            &mut a,
        );
        fill_samples(
            Kind::Bucket {
                rate_per_s: 3.0,
                fraction: 1.0,
            },
            9,
            &params,
            &mut high,
            &scrapes,
            &mut b,
        );
        let mut resets = 0;
        for i in 0..a.len() {
            assert!(a[i].1 <= b[i].1, "buckets cumulative in le");
            if i > 0 && b[i].1 < b[i - 1].1 {
                resets += 1;
            }
        }
        assert!(resets > 0 && resets < 100, "{resets} resets");
    }
}
