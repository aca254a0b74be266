//! `stele bench` end to end on tiny data: it starts the store itself, drives the default mix,
//! restarts the store, compares with a real Prometheus, and its JSON report holds every
//! figure, consistent with itself; Prometheus, the oracle, returns the same series and samples.

mod common;

use common::*;
use serde_json::Value;

fn bench_json(args: &[&str]) -> Value {
    let out = run(stele().arg("bench").args(args));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("bench output is not JSON ({e}):\n{out}"))
}

/// The `small` profile's three blocks, generated into `tmp`.
fn small_blocks(tmp: &tempfile::TempDir) -> std::path::PathBuf {
    let blocks = tmp.path().join("blocks");
    run(stele()
        .args(["gen", "--no-progress", "--profile", "small", "--output"])
        .arg(&blocks));
    blocks
}

fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not an unsigned number: {v}"))
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The `[min, max]` (ms) a workload `range` ("all" or a duration ending at the data's end)
/// covers, worked out here rather than by the bench's own code.
fn compared_span(range: &str, data_min: i64, data_max: i64) -> (i64, i64) {
    if range == "all" {
        return (data_min, data_max);
    }
    let last = stele::model::time::parse_duration(range)
        .unwrap_or_else(|e| panic!("range {range:?}: {e}"));
    ((data_max - last.as_millis() as i64).max(data_min), data_max)
}

/// Series and samples of a decoded answer.
fn counts(answer: &SeriesMap) -> (u64, u64) {
    let samples = answer.values().map(|s| s.len() as u64).sum();
    (answer.len() as u64, samples)
}

/// Every comparison row's counts are what Prometheus' HTTP API (over the bench's own
/// Prometheus data directory) and a StoreAPI Series call to a fresh `stele store` (over the
/// same blocks) return for the row's selector and range, counted here, not by the bench.
fn assert_comparison_counts_are_independently_true(
    report: &Value,
    blocks: &std::path::Path,
    prometheus_data: &std::path::Path,
) {
    use common::storeapi::{call_series, decode, runtime, series_request};

    let target = &report["target"];
    let data_min = target["data_min_time_ms"].as_i64().unwrap();
    let data_max = target["data_max_time_ms"].as_i64().unwrap();
    // The bench's Prometheus is gone: another one over its data directory, not compacting
    // (as the bench runs it), and a store over the blocks, started side by side.
    let (prom, store) = std::thread::scope(|s| {
        let prom = s.spawn(|| {
            PrometheusServer::start_with_config(
                prometheus_data,
                "global:\n  scrape_interval: 1h\n",
                &[
                    "--storage.tsdb.min-block-duration=2h",
                    "--storage.tsdb.max-block-duration=2h",
                ],
            )
        });
        let store =
            common::store::StoreProcess::start(&common::store::filesystem_yaml(blocks), &[]);
        (prom.join().unwrap(), store)
    });
    let rt = runtime();
    let mut client = store.client(&rt);
    for row in report["comparison"]["rows"].as_array().unwrap() {
        let selector = row["selector"].as_str().unwrap();
        let (min, max) = compared_span(row["range"].as_str().unwrap(), data_min, data_max);
        let (prom_series, prom_samples) = counts(&prometheus_samples(&prom, selector, min, max));
        let answer = call_series(&rt, &mut client, series_request(selector, min, max))
            .unwrap_or_else(|e| panic!("{selector}: {e}"));
        let (stele_series, stele_samples) = counts(&decode(&answer.series, min, max));
        assert!(
            prom_samples > 0,
            "{selector} in [{min}, {max}] holds no samples"
        );
        let name = &row["name"];
        assert_eq!(
            (stele_series, stele_samples),
            (prom_series, prom_samples),
            "{name}: {selector} in [{min}, {max}], (series, samples) of stele against Prometheus"
        );
        assert_eq!(
            (u(&row["prometheus_series"]), u(&row["prometheus_samples"])),
            (prom_series, prom_samples),
            "{name}: the bench's Prometheus (series, samples) against Prometheus' HTTP API"
        );
        assert_eq!(
            (u(&row["stele_series"]), u(&row["stele_samples"])),
            (stele_series, stele_samples),
            "{name}: the bench's stele (series, samples) against a StoreAPI Series call"
        );
    }
}

#[test]
fn bench_small_with_restart_and_prometheus_comparison() {
    prometheus();
    let tmp = tempfile::tempdir().unwrap();
    let blocks = small_blocks(&tmp);
    let work = tmp.path().join("work");
    let html = tmp.path().join("report.html");
    let report = bench_json(&[
        "--blocks-dir",
        blocks.to_str().unwrap(),
        "--work-dir",
        work.to_str().unwrap(),
        "--report",
        html.to_str().unwrap(),
        "--requests",
        "60",
        "--concurrency",
        "4",
        "--index-cache-size",
        "1MB",
        "--probe-runs",
        "3",
        "--probe-pause",
        "30ms",
        "--start-runs",
        "2",
        "--compare-prometheus",
        "--compare-rounds",
        "2",
        "--rss-interval",
        "20ms",
        "--output",
        "json",
        "--no-progress",
    ]);

    // Totals are the sums of the rows; every successful request has a latency.
    let totals = &report["totals"];
    let rows = report["requests"].as_array().unwrap();
    assert_eq!(u(&totals["requests"]), 60);
    assert_eq!(u(&totals["errors"]), 0, "{report:#}");
    let sum = |k: &str| rows.iter().map(|r| u(&r[k])).sum::<u64>();
    for k in ["requests", "errors", "series", "samples", "chunk_bytes"] {
        assert_eq!(sum(k), u(&totals[k]), "totals.{k}");
    }
    let elapsed = f(&totals["elapsed_s"]);
    assert!(elapsed > 0.0);
    assert!((f(&totals["requests_per_s"]) - 60.0 / elapsed).abs() < 1e-6);
    for r in rows {
        let l = &r["latency"];
        assert_eq!(u(&l["count"]), u(&r["requests"]) - u(&r["errors"]), "{r:#}");
        if u(&l["count"]) > 0 {
            let (p50, p90, p99, max) = (
                f(&l["p50_ms"]),
                f(&l["p90_ms"]),
                f(&l["p99_ms"]),
                f(&l["max_ms"]),
            );
            assert!(0.0 < p50 && p50 <= p90 && p90 <= p99 && p99 <= max, "{l:#}");
            let bars: u64 = r["distribution"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| u(&b["count"]))
                .sum();
            assert_eq!(bars, u(&l["count"]), "{}", r["name"]);
        }
        assert!(u(&r["series"]) > 0, "{} returned nothing", r["name"]);
    }
    // The default mix ran: every kind, series with chunks and without.
    let kinds: Vec<&str> = rows.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    for k in ["series", "label_names", "label_values"] {
        assert!(kinds.contains(&k), "{kinds:?}");
    }
    assert!(u(&totals["samples"]) > 0 && u(&totals["chunk_bytes"]) > 0);

    // Over-fetch from QueryStats, cross-checked by /metrics.
    let o = &report["over_fetch"];
    // Postings lists are touched only on an expanded-postings miss: after the warm-up, every
    // matcher set of the mix is answered from that cache, so postings may be 0.
    for section in ["series", "chunks", "total"] {
        assert!(u(&o[section]["touched"]) > 0, "{section}: {o:#}");
    }
    assert!(o["bucket_fetched_bytes"].is_u64());
    let cache = report["cache"].as_array().unwrap();
    for kind in ["expanded_postings", "series"] {
        let c = cache
            .iter()
            .find(|c| c["item_type"] == kind)
            .unwrap_or_else(|| panic!("{kind}: {cache:?}"));
        assert!(
            u(&c["requests"]) > 0 && u(&c["hits"]) <= u(&c["requests"]),
            "{c:#}"
        );
    }

    // The store process: both starts, both first queries (each after the pause), memory.
    assert_eq!(f(&report["settings"]["probe_pause_ms"]), 30.0);
    let p = &report["process"];
    assert_eq!(u(&p["blocks"]), 3);
    for k in [
        "start_to_ready_cold_ms",
        "start_to_ready_warm_ms",
        "first_query_cold_ms",
        "probe_warm_ms",
        "first_query_warm_restart_ms",
    ] {
        assert!(f(&p[k]) > 0.0, "process.{k}: {p:#}");
    }
    // Two starts of each kind, and each figure is the median (of two: the mean) of its runs;
    // the ratios compare each start's first probe with the probes right after it.
    for (figure, runs) in [
        ("start_to_ready_cold_ms", "start_to_ready_cold_runs_ms"),
        ("start_to_ready_warm_ms", "start_to_ready_warm_runs_ms"),
        ("first_query_cold_ms", "first_query_cold_runs_ms"),
        (
            "first_query_warm_restart_ms",
            "first_query_warm_restart_runs_ms",
        ),
        ("cold_over_warm", "cold_over_warm_runs"),
        ("warm_restart_over_warm", "warm_restart_over_warm_runs"),
    ] {
        let runs: Vec<f64> = p[runs].as_array().unwrap().iter().map(f).collect();
        assert_eq!(runs.len(), 2, "process.{figure}: {p:#}");
        assert!(
            (f(&p[figure]) - (runs[0] + runs[1]) / 2.0).abs() < 1e-9,
            "{p:#}"
        );
    }
    assert!(u(&p["peak_rss_bytes"]) >= u(&p["peak_rss_measured_bytes"]));
    assert!(u(&p["peak_rss_measured_bytes"]) > 0);
    assert!(!p["rss"].as_array().unwrap().is_empty());

    // Prometheus, the oracle, serves the same series and samples for every compared selector,
    // and the counts of both sides are checked apart from the bench's code.
    let c = &report["comparison"];
    assert_eq!(u(&c["rounds"]), 2);
    let compared = c["rows"].as_array().unwrap();
    let with_chunks = rows
        .iter()
        .filter(|r| r["kind"] == "series" && r["skip_chunks"] == false)
        .count();
    assert_eq!(compared.len(), with_chunks);
    for row in compared {
        assert!(u(&row["stele_series"]) > 0, "{row:#}");
        assert_eq!(row["stele_series"], row["prometheus_series"], "{row:#}");
        assert_eq!(row["stele_samples"], row["prometheus_samples"], "{row:#}");
        assert!(f(&row["stele_median_ms"]) > 0.0 && f(&row["prometheus_median_ms"]) > 0.0);
    }
    assert_comparison_counts_are_independently_true(&report, &blocks, &work.join("prometheus"));

    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("<svg") && page.contains("stele vs Prometheus"),
        "HTML report"
    );
    // The blocks Prometheus was given are links to ours, and it did not change them.
    assert!(work.join("prometheus").is_dir());
    run(stele().args(["block", "verify"]).arg(&blocks));
}

#[test]
fn bench_a_running_store_by_address() {
    let tmp = tempfile::tempdir().unwrap();
    let blocks = small_blocks(&tmp);
    let (grpc, http) = (free_port(), free_port());
    let data = tmp.path().join("store-data");
    let mut store = stele()
        .arg("store")
        .arg(format!(
            "--objstore.config=type: FILESYSTEM\nconfig:\n  directory: {}\n",
            blocks.display()
        ))
        .arg(format!("--data-dir={}", data.display()))
        .arg(format!("--grpc-address=127.0.0.1:{grpc}"))
        .arg(format!("--http-address=127.0.0.1:{http}"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !http_get(&format!("http://127.0.0.1:{http}/-/ready")).is_ok_and(|(s, _)| s == 200) {
        assert!(std::time::Instant::now() < deadline, "store not ready");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let report = bench_json(&[
        "--grpc-address",
        &format!("127.0.0.1:{grpc}"),
        "--http-address",
        &format!("127.0.0.1:{http}"),
        "--work-dir",
        tmp.path().join("work").to_str().unwrap(),
        "--requests",
        "20",
        "--concurrency",
        "2",
        "--output",
        "json",
        "--no-progress",
    ]);
    let _ = store.kill();
    let _ = store.wait();
    assert_eq!(u(&report["totals"]["requests"]), 20);
    assert_eq!(u(&report["totals"]["errors"]), 0, "{report:#}");
    assert_eq!(report["target"]["started_by_bench"], false);
    assert!(report["process"].is_null());
    assert!(
        !report["cache"].as_array().unwrap().is_empty(),
        "cache figures come from --http-address"
    );
}

#[test]
fn bad_workload_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path().join("w.toml");
    std::fs::write(
        &w,
        "[[request]]\nname = 'x'\nkind = 'series'\nselector = 'up{'\n",
    )
    .unwrap();
    let out = stele()
        .args(["bench", "--grpc-address", "127.0.0.1:1", "--workload"])
        .arg(&w)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("request \"x\"") && err.contains("w.toml"),
        "{err}"
    );
}
