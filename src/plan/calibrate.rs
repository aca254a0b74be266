//! A `stele bench --output json` report as the model's query profile. Pure: JSON text in.
//!
//! The report's measured costs replace the model's estimates: per request kind, the series
//! matched, chunk bytes returned and mean latency; the chunk over-fetch ratio; the clients'
//! concurrency. Its process figures (peak RSS, cache held) are what the model is validated
//! against (docs/PLANNING.md).

use serde::Deserialize;
use serde::Serialize;

use super::model::{QueryClass, QueryProfile};
use super::PlanError;
use crate::model::time::parse_duration;

/// What a bench report measured, besides the profile.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BenchFigures {
    pub concurrency: f64,
    pub requests_per_s: f64,
    pub peak_rss_bytes: Option<u64>,
    pub cache_bytes: u64,
    pub index_cache_size_bytes: Option<u64>,
    pub blocks: Option<u64>,
}

// The subset of the bench report read here; unknown fields are ignored so newer reports
// still load.
#[derive(Deserialize)]
struct Report {
    settings: Settings,
    totals: Totals,
    requests: Vec<Request>,
    over_fetch: OverFetch,
    #[serde(default)]
    cache: Vec<Cache>,
    process: Option<Process>,
    target: Target,
}

#[derive(Deserialize)]
struct Settings {
    concurrency: f64,
}

#[derive(Deserialize)]
struct Totals {
    requests_per_s: f64,
}

#[derive(Deserialize)]
struct Request {
    name: String,
    #[serde(default)]
    selector: String,
    kind: String,
    range: String,
    skip_chunks: bool,
    requests: u64,
    errors: u64,
    series: u64,
    samples: u64,
    chunk_bytes: u64,
    latency: Latency,
}

#[derive(Deserialize)]
struct Latency {
    mean_ms: f64,
}

#[derive(Deserialize)]
struct OverFetch {
    chunks: Section,
}

#[derive(Deserialize)]
struct Section {
    ratio: Option<f64>,
}

#[derive(Deserialize)]
struct Cache {
    bytes: u64,
}

#[derive(Deserialize)]
struct Process {
    blocks: u64,
    peak_rss_bytes: u64,
}

#[derive(Deserialize)]
struct Target {
    index_cache_size_bytes: Option<u64>,
}

/// The profile and figures of a bench report.
pub fn from_bench_report(
    json: &str,
    name: &str,
) -> Result<(QueryProfile, BenchFigures), PlanError> {
    let bad = |m: String| PlanError::Input(format!("bench report {name}: {m}"));
    let r: Report = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
    let mut classes = Vec::new();
    for q in &r.requests {
        let ok = q.requests.saturating_sub(q.errors);
        if ok == 0 {
            continue;
        }
        let range_ms = match q.range.as_str() {
            "all" => None,
            d => Some(
                parse_duration(d)
                    .map_err(|e| bad(format!("request {}: range: {e}", q.name)))?
                    .as_millis() as i64,
            ),
        };
        let labels_only = q.kind != "series";
        classes.push(QueryClass {
            name: q.name.clone(),
            selector: q.selector.clone(),
            weight: q.requests as f64,
            series_share: 0.0,
            series: Some(if labels_only {
                0.0
            } else {
                q.series as f64 / ok as f64
            }),
            range_ms,
            skip_chunks: labels_only || q.skip_chunks,
            measured_chunk_bytes: Some(q.chunk_bytes as f64 / ok as f64),
            measured_samples: Some(q.samples as f64 / ok as f64),
            measured_latency_s: Some(q.latency.mean_ms / 1000.0),
        });
    }
    if classes.is_empty() {
        return Err(bad("no successful requests to learn from".into()));
    }
    let profile = QueryProfile {
        source: format!("measured by stele bench ({name})"),
        classes,
        chunk_over_fetch: r.over_fetch.chunks.ratio.unwrap_or(1.0),
    };
    let figures = BenchFigures {
        concurrency: r.settings.concurrency,
        requests_per_s: r.totals.requests_per_s,
        peak_rss_bytes: r.process.as_ref().map(|p| p.peak_rss_bytes),
        cache_bytes: r.cache.iter().map(|c| c.bytes).sum(),
        index_cache_size_bytes: r.target.index_cache_size_bytes,
        blocks: r.process.as_ref().map(|p| p.blocks),
    };
    Ok((profile, figures))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = r#"{
      "stele_version": "0.1.0",
      "target": {"address": "x", "started_by_bench": true, "data": "d", "data_min_time_ms": 0,
                 "data_max_time_ms": 1, "index_cache_size_bytes": 262144000},
      "settings": {"workload": "w", "concurrency": 4, "duration_s": null, "request_count": 60,
                   "warmup_rounds": 1},
      "totals": {"requests": 60, "errors": 0, "elapsed_s": 2.0, "series": 0, "samples": 0,
                 "chunk_bytes": 0, "requests_per_s": 30.0, "series_per_s": 0,
                 "samples_per_s": 0, "chunk_bytes_per_s": 0},
      "requests": [
        {"name": "a", "kind": "series", "selector": "up", "range": "30m", "skip_chunks": false,
         "requests": 10, "errors": 2, "first_error": null, "series": 800, "samples": 8000,
         "chunk_bytes": 16000, "latency": {"count": 8, "mean_ms": 4.0, "p50_ms": 3.0,
         "p90_ms": 5.0, "p99_ms": 6.0, "max_ms": 7.0}, "distribution": []},
        {"name": "l", "kind": "label_names", "selector": "", "range": "all", "skip_chunks": false,
         "requests": 5, "errors": 0, "first_error": null, "series": 100, "samples": 0,
         "chunk_bytes": 0, "latency": {"count": 5, "mean_ms": 1.0, "p50_ms": 1.0,
         "p90_ms": 1.0, "p99_ms": 1.0, "max_ms": 1.0}, "distribution": []},
        {"name": "dead", "kind": "series", "selector": "x", "range": "all", "skip_chunks": false,
         "requests": 3, "errors": 3, "first_error": "boom", "series": 0, "samples": 0,
         "chunk_bytes": 0, "latency": {"count": 0, "mean_ms": 0.0, "p50_ms": 0.0,
         "p90_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}, "distribution": []}
      ],
      "over_fetch": {"postings": {"touched": 1, "fetched": 1, "ratio": 1.0},
                     "series": {"touched": 1, "fetched": 1, "ratio": 1.0},
                     "chunks": {"touched": 10, "fetched": 19, "ratio": 1.9},
                     "total": {"touched": 1, "fetched": 1, "ratio": 1.0},
                     "bucket_fetched_bytes": null},
      "cache": [{"item_type": "Postings", "requests": 1, "hits": 1, "hit_ratio": 1.0,
                 "evictions": 0, "bytes": 1000, "items": 1},
                {"item_type": "Series", "requests": 1, "hits": 1, "hit_ratio": 1.0,
                 "evictions": 0, "bytes": 500, "items": 1}],
      "process": {"blocks": 3, "start_to_ready_cold_ms": 1.0, "probe": "a",
                  "first_query_cold_ms": 1.0, "probe_warm_ms": 1.0, "cold_over_warm": 1.0,
                  "peak_rss_bytes": 50000000, "peak_rss_measured_bytes": 1, "rss": []},
      "comparison": null
    }"#;

    #[test]
    fn measured_costs_become_the_profile() {
        let (p, f) = from_bench_report(REPORT, "r.json").unwrap();
        assert_eq!(p.classes.len(), 2, "requests that all failed teach nothing");
        let a = &p.classes[0];
        assert_eq!(a.series, Some(100.0), "800 series over 8 good requests");
        assert_eq!(a.measured_chunk_bytes, Some(2000.0));
        assert_eq!(a.measured_samples, Some(1000.0));
        assert_eq!(a.range_ms, Some(1_800_000));
        assert_eq!(a.measured_latency_s, Some(0.004));
        assert_eq!(a.weight, 10.0);
        let l = &p.classes[1];
        assert!(l.skip_chunks && l.series == Some(0.0) && l.range_ms.is_none());
        assert_eq!(p.chunk_over_fetch, 1.9);
        assert_eq!(f.concurrency, 4.0);
        assert_eq!(f.peak_rss_bytes, Some(50_000_000));
        assert_eq!(f.cache_bytes, 1500);
        assert_eq!(f.blocks, Some(3));
    }

    #[test]
    fn broken_reports_are_input_errors() {
        for bad in ["", "{}", "[1]", &REPORT.replace("\"30m\"", "\"soon\"")] {
            let e = from_bench_report(bad, "r.json").unwrap_err();
            assert!(matches!(e, PlanError::Input(_)), "{e}");
        }
    }
}
