//! What a bench run found, and its renderings: a text table, JSON (for CI and regression
//! tracking) and a self-contained HTML page with SVG charts. Pure: figures in, text out.

use std::fmt::Write;

use serde::Serialize;

use crate::table::text as text_table;

use super::latency::{Bucket, LatencySummary};
use super::scrape::CacheFigures;
use super::workload::RequestKind;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub stele_version: String,
    pub target: TargetReport,
    pub settings: Settings,
    pub totals: Totals,
    pub requests: Vec<RequestReport>,
    /// From the QueryStats of the Series responses of the measured phase.
    pub over_fetch: OverFetch,
    /// Index cache per item kind over the measured phase (stele targets with /metrics).
    pub cache: Vec<CacheFigures>,
    /// Only when the bench started the store itself.
    pub process: Option<ProcessReport>,
    pub comparison: Option<Comparison>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    /// gRPC address benchmarked.
    pub address: String,
    /// True when `stele bench` started the store (then `process` is filled).
    pub started_by_bench: bool,
    /// Where the blocks came from (profile directory or bucket description).
    pub data: String,
    pub data_min_time_ms: i64,
    pub data_max_time_ms: i64,
    pub index_cache_size_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub workload: String,
    pub concurrency: usize,
    /// Measured phase length: a duration or a number of requests.
    pub duration_s: Option<f64>,
    pub request_count: Option<u64>,
    pub warmup_rounds: u32,
    /// Idle time before each probe timed after a start (`--probe-pause`).
    pub probe_pause_ms: f64,
    /// `--bucket=s3`: the latency added per request, and the bandwidth measured at start.
    pub bucket_latency_ms: Option<f64>,
    pub bucket_bandwidth_mib_s: Option<f64>,
}

/// The whole measured phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    pub requests: u64,
    pub errors: u64,
    pub elapsed_s: f64,
    pub series: u64,
    pub samples: u64,
    pub chunk_bytes: u64,
    pub requests_per_s: f64,
    pub series_per_s: f64,
    pub samples_per_s: f64,
    pub chunk_bytes_per_s: f64,
}

impl Totals {
    /// Sums the rows and divides by the phase's wall time.
    pub fn from_rows(rows: &[RequestReport], elapsed_s: f64) -> Totals {
        let sum = |f: fn(&RequestReport) -> u64| rows.iter().map(f).sum::<u64>();
        let rate = |n: u64| {
            if elapsed_s > 0.0 {
                n as f64 / elapsed_s
            } else {
                0.0
            }
        };
        let (requests, series, samples, chunk_bytes) = (
            sum(|r| r.requests),
            sum(|r| r.series),
            sum(|r| r.samples),
            sum(|r| r.chunk_bytes),
        );
        Totals {
            requests,
            errors: sum(|r| r.errors),
            elapsed_s,
            series,
            samples,
            chunk_bytes,
            requests_per_s: rate(requests),
            series_per_s: rate(series),
            samples_per_s: rate(samples),
            chunk_bytes_per_s: rate(chunk_bytes),
        }
    }
}

/// One workload entry over the measured phase.
#[derive(Debug, Clone, Serialize)]
pub struct RequestReport {
    pub name: String,
    pub kind: RequestKind,
    pub selector: String,
    pub range: String,
    pub skip_chunks: bool,
    /// Requests sent, failed ones included.
    pub requests: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Series (Series) or names/values (label requests) returned, summed.
    pub series: u64,
    pub samples: u64,
    pub chunk_bytes: u64,
    /// Latency of the successful requests.
    pub latency: LatencySummary,
    pub distribution: Vec<Bucket>,
}

/// Bytes fetched from the bucket against bytes the queries needed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OverFetch {
    pub postings: SectionBytes,
    pub series: SectionBytes,
    pub chunks: SectionBytes,
    pub total: SectionBytes,
    /// Cross-check from the store's /metrics (index + chunk files), when scraped.
    pub bucket_fetched_bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SectionBytes {
    /// Bytes of the items the queries used (cached ones included).
    pub touched: u64,
    pub fetched: u64,
    /// fetched / touched; `None` when nothing was touched.
    pub ratio: Option<f64>,
}

impl SectionBytes {
    pub fn new(touched: u64, fetched: u64) -> Self {
        SectionBytes {
            touched,
            fetched,
            ratio: (touched > 0).then(|| fetched as f64 / touched as f64),
        }
    }
}

impl OverFetch {
    pub fn new(postings: SectionBytes, series: SectionBytes, chunks: SectionBytes) -> Self {
        let total = SectionBytes::new(
            postings.touched + series.touched + chunks.touched,
            postings.fetched + series.fetched + chunks.fetched,
        );
        OverFetch {
            postings,
            series,
            chunks,
            total,
            bucket_fetched_bytes: None,
        }
    }
}

/// The store process: start-up, first queries, memory.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProcessReport {
    /// Blocks served.
    pub blocks: u64,
    /// Spawn to /-/ready with an empty data dir (index headers built from the bucket):
    /// the median of the runs below.
    pub start_to_ready_cold_ms: f64,
    pub start_to_ready_cold_runs_ms: Vec<f64>,
    /// Spawn to /-/ready on the data dir of the run before (headers and the index cache
    /// snapshot on disk): the median of the runs below.
    pub start_to_ready_warm_ms: Option<f64>,
    pub start_to_ready_warm_runs_ms: Vec<f64>,
    /// The request timed after each start (the workload's first series request).
    pub probe: String,
    /// The first probe after each cold start: the median, then every run.
    pub first_query_cold_ms: f64,
    pub first_query_cold_runs_ms: Vec<f64>,
    /// Median of sequential probe runs on the store after the measured phase.
    pub probe_warm_ms: f64,
    /// The first probe after each warm restart: the median, then every run.
    pub first_query_warm_restart_ms: Option<f64>,
    pub first_query_warm_restart_runs_ms: Vec<f64>,
    /// Each start's first probe over the median of the probe runs right after it on the
    /// same process (`--probe-runs`), each after the same pause (`--probe-pause`): the median
    /// over the starts, then every start's ratio.
    pub cold_over_warm: f64,
    pub cold_over_warm_runs: Vec<f64>,
    pub warm_restart_over_warm: Option<f64>,
    pub warm_restart_over_warm_runs: Vec<f64>,
    /// Over a remote bucket: round trips from spawn to the first probe (listing, meta.json,
    /// index headers), and those of the first probe after the last cold start.
    pub start_round_trips: Option<crate::bench::proxy::RoundTrips>,
    pub first_query_cold_round_trips: Option<crate::bench::proxy::RoundTrips>,
    /// The most resident memory the first run ever had: VmHWM, or a higher sampled VmRSS.
    pub peak_rss_bytes: u64,
    /// Highest sampled VmRSS during the measured phase.
    pub peak_rss_measured_bytes: u64,
    /// Highest sampled RssAnon (heap and other private memory) during the measured phase;
    /// the rest of the RSS is file pages (mapped index headers) the kernel can drop.
    pub peak_rss_anon_bytes: u64,
    /// Mean RSS of the last quarter of the measured phase over that of the first quarter.
    pub rss_growth: Option<f64>,
    pub rss: Vec<RssPoint>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RssPoint {
    /// Seconds since the measured phase started (negative during warm-up).
    pub t_s: f64,
    pub bytes: u64,
    /// RssAnon: the part of `bytes` that is not file-backed.
    pub anon_bytes: u64,
}

/// " (median of 3: 4.1, 5.0, 9.7 ms)" when a figure is the median of several runs.
fn of_runs(runs: &[f64], unit: &str) -> String {
    if runs.len() < 2 {
        return String::new();
    }
    let each: Vec<String> = runs.iter().map(|v| format!("{v:.1}")).collect();
    format!(" (median of {}: {}{unit})", runs.len(), each.join(", "))
}

/// Mean of the last quarter over mean of the first quarter of the measured samples (t >= 0).
pub fn rss_growth(points: &[RssPoint]) -> Option<f64> {
    let measured: Vec<f64> = points
        .iter()
        .filter(|p| p.t_s >= 0.0)
        .map(|p| p.bytes as f64)
        .collect();
    let q = measured.len() / 4;
    if q == 0 {
        return None;
    }
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    let first = mean(&measured[..q]);
    (first > 0.0).then(|| mean(&measured[measured.len() - q..]) / first)
}

/// stele against Prometheus' remote read, interleaved.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub prometheus_url: String,
    pub rounds: u32,
    pub rows: Vec<CompareRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CompareRow {
    pub name: String,
    pub selector: String,
    pub range: String,
    pub stele_median_ms: f64,
    pub prometheus_median_ms: f64,
    /// stele / Prometheus; below 1 means stele was faster.
    pub ratio: f64,
    pub stele_series: u64,
    pub prometheus_series: u64,
    pub stele_samples: u64,
    pub prometheus_samples: u64,
    /// Over a remote bucket: what the bucket saw of the last stele run.
    pub bucket: Option<BucketCost>,
}

/// The bucket's part of a request: round trips on its critical path (as the proxy saw
/// them: a request sent while none was in flight starts one), bytes, and the two terms
/// of the model `round trips x latency + bytes / bandwidth`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct BucketCost {
    pub round_trips: crate::bench::proxy::RoundTrips,
    /// GETs the request sent.
    pub requests: u64,
    pub mib: f64,
    pub round_trips_ms: f64,
    pub transfer_ms: f64,
}

impl Report {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serializes")
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

fn ratio(r: Option<f64>) -> String {
    r.map_or("-".into(), |r| format!("{r:.2}"))
}

fn si(v: f64) -> String {
    match v {
        v if v >= 1e9 => format!("{:.2}G", v / 1e9),
        v if v >= 1e6 => format!("{:.2}M", v / 1e6),
        v if v >= 1e3 => format!("{:.1}k", v / 1e3),
        v => format!("{v:.1}"),
    }
}

/// The human-readable summary printed at the end of a run.
pub fn render_text(r: &Report) -> String {
    let mut out = String::new();
    let t = &r.totals;
    let _ = writeln!(
        out,
        "stele bench {} against {} ({}), concurrency {}",
        r.stele_version, r.target.address, r.target.data, r.settings.concurrency
    );
    let _ = writeln!(
        out,
        "\n{} requests ({} errors) in {:.1}s: {:.1} req/s, {} series/s, {} samples/s, {}/s of chunks\n",
        t.requests,
        t.errors,
        t.elapsed_s,
        t.requests_per_s,
        si(t.series_per_s),
        si(t.samples_per_s),
        mib(t.chunk_bytes_per_s as u64)
    );
    let rows: Vec<Vec<String>> = r
        .requests
        .iter()
        .map(|q| {
            let ok = q.requests - q.errors;
            let per = |n: u64| n.checked_div(ok).unwrap_or(0);
            vec![
                q.name.clone(),
                q.kind.name().into(),
                q.requests.to_string(),
                q.errors.to_string(),
                per(q.series).to_string(),
                format!("{:.2}", q.latency.p50_ms),
                format!("{:.2}", q.latency.p90_ms),
                format!("{:.2}", q.latency.p99_ms),
                format!("{:.2}", q.latency.max_ms),
            ]
        })
        .collect();
    out.push_str(&text_table(
        &[
            "request",
            "kind",
            "count",
            "errors",
            "series/req",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
        ],
        &rows,
    ));
    for q in r.requests.iter().filter(|q| q.first_error.is_some()) {
        let _ = writeln!(
            out,
            "  {}: first error: {}",
            q.name,
            q.first_error.as_deref().unwrap_or_default()
        );
    }

    let o = &r.over_fetch;
    let _ = writeln!(out, "\nover-fetch (fetched / touched bytes):");
    let rows: Vec<Vec<String>> = [
        ("postings", &o.postings),
        ("series", &o.series),
        ("chunks", &o.chunks),
        ("total", &o.total),
    ]
    .iter()
    .map(|(n, s)| {
        vec![
            n.to_string(),
            mib(s.touched),
            mib(s.fetched),
            ratio(s.ratio),
        ]
    })
    .collect();
    out.push_str(&text_table(
        &["section", "touched", "fetched", "ratio"],
        &rows,
    ));
    if let Some(b) = o.bucket_fetched_bytes {
        let _ = writeln!(out, "bucket bytes fetched per /metrics: {}", mib(b));
    }

    if !r.cache.is_empty() {
        let _ = writeln!(out, "\nindex cache over the measured phase:");
        let rows: Vec<Vec<String>> = r
            .cache
            .iter()
            .map(|c| {
                vec![
                    c.item_type.clone(),
                    c.requests.to_string(),
                    c.hits.to_string(),
                    ratio(c.hit_ratio),
                    c.evictions.to_string(),
                    mib(c.bytes),
                    c.items.to_string(),
                ]
            })
            .collect();
        out.push_str(&text_table(
            &[
                "item",
                "requests",
                "hits",
                "hit ratio",
                "evicted",
                "held",
                "items",
            ],
            &rows,
        ));
    }

    if let Some(p) = &r.process {
        let _ = writeln!(out, "\nstore process ({} blocks):", p.blocks);
        let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1} ms"));
        let pauses = match r.settings.probe_pause_ms {
            p if p > 0.0 => format!(", each after {p:.0} ms idle"),
            _ => String::new(),
        };
        let rows = vec![
            vec![
                "start to ready, empty data dir".into(),
                ms(Some(p.start_to_ready_cold_ms)),
            ],
            vec![
                "start to ready, warm restart".into(),
                ms(p.start_to_ready_warm_ms),
            ],
            vec![
                format!(
                    "first {} after cold start{}",
                    p.probe,
                    of_runs(&p.first_query_cold_runs_ms, " ms")
                ),
                ms(Some(p.first_query_cold_ms)),
            ],
            vec![
                format!("{} warm (median)", p.probe),
                ms(Some(p.probe_warm_ms)),
            ],
            vec![
                format!(
                    "first {} after warm restart{}",
                    p.probe,
                    of_runs(&p.first_query_warm_restart_runs_ms, " ms")
                ),
                ms(p.first_query_warm_restart_ms),
            ],
            vec![
                format!(
                    "cold first / warm, same process{pauses}{}",
                    of_runs(&p.cold_over_warm_runs, "")
                ),
                ratio(Some(p.cold_over_warm)),
            ],
            vec![
                format!(
                    "warm-restart first / warm, same process{pauses}{}",
                    of_runs(&p.warm_restart_over_warm_runs, "")
                ),
                ratio(p.warm_restart_over_warm),
            ],
            vec![
                "bucket round trips, start to first probe".into(),
                round_trips(p.start_round_trips),
            ],
            vec![
                format!(
                    "bucket round trips of the first {} after a cold start",
                    p.probe
                ),
                round_trips(p.first_query_cold_round_trips),
            ],
            vec!["peak RSS (VmHWM)".into(), mib(p.peak_rss_bytes)],
            vec![
                "peak RSS, measured phase".into(),
                mib(p.peak_rss_measured_bytes),
            ],
            vec![
                "  of which anonymous (heap)".into(),
                mib(p.peak_rss_anon_bytes),
            ],
            vec!["RSS last/first quarter".into(), ratio(p.rss_growth)],
        ];
        out.push_str(&text_table(&["figure", "value"], &rows));
    }

    if let Some(c) = &r.comparison {
        let _ = writeln!(
            out,
            "\nstele vs Prometheus remote read ({}), medians of {} interleaved rounds:",
            c.prometheus_url, c.rounds
        );
        let remote = c.rows.iter().any(|r| r.bucket.is_some());
        let rows: Vec<Vec<String>> = c
            .rows
            .iter()
            .map(|row| {
                let mut cells = vec![
                    row.name.clone(),
                    format!("{:.2}", row.stele_median_ms),
                    format!("{:.2}", row.prometheus_median_ms),
                    format!("{:.2}", row.ratio),
                    format!("{}/{}", row.stele_series, row.prometheus_series),
                    format!("{}/{}", row.stele_samples, row.prometheus_samples),
                ];
                if let Some(b) = row.bucket.filter(|_| remote) {
                    cells.push(round_trips(Some(b.round_trips)));
                    cells.push(b.requests.to_string());
                    cells.push(format!("{:.1}", b.mib));
                    cells.push(format!(
                        "{:.0} + {:.0} = {:.0}",
                        b.round_trips_ms,
                        b.transfer_ms,
                        b.round_trips_ms + b.transfer_ms
                    ));
                }
                cells
            })
            .collect();
        let mut head = vec![
            "request",
            "stele ms",
            "prometheus ms",
            "ratio",
            "series s/p",
            "samples s/p",
        ];
        if remote {
            head.extend([
                "bucket round trips",
                "GETs",
                "MiB",
                "RT x latency + MiB / bw, ms",
            ]);
        }
        out.push_str(&text_table(&head, &rows));
        if let (true, Some(lat), Some(bw)) = (
            remote,
            r.settings.bucket_latency_ms,
            r.settings.bucket_bandwidth_mib_s,
        ) {
            let _ = writeln!(
                out,
                "bucket: {lat:.0} ms per request, {bw:.0} MiB/s; round trips as the proxy saw them (index/chunks) in the last stele round"
            );
        }
    }
    out
}

/// `3 (index 2, chunks 1)`, or `-`.
fn round_trips(rt: Option<crate::bench::proxy::RoundTrips>) -> String {
    match rt {
        Some(rt) => format!(
            "{} (index {}, chunks {}, other {})",
            rt.all, rt.index, rt.chunks, rt.other
        ),
        None => "-".into(),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const CHART_W: f64 = 560.0;
const CHART_H: f64 = 160.0;
const PAD: f64 = 36.0;

/// A bar chart of a latency distribution (logarithmic latency axis).
pub fn latency_svg(name: &str, bars: &[Bucket]) -> String {
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" aria-label="latency of {n}">"#,
        w = CHART_W + PAD,
        h = CHART_H + PAD,
        n = escape(name)
    );
    let max = bars.iter().map(|b| b.count).max().unwrap_or(0).max(1) as f64;
    let width = CHART_W / bars.len().max(1) as f64;
    for (i, b) in bars.iter().enumerate() {
        let h = b.count as f64 / max * (CHART_H - 10.0);
        let _ = write!(
            svg,
            r##"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="#4a7fb5"><title>{lo:.3}–{hi:.3} ms: {c}</title></rect>"##,
            x = PAD + i as f64 * width,
            y = CHART_H - h,
            w = (width - 1.0).max(1.0),
            lo = b.lower_ms,
            hi = b.upper_ms,
            c = b.count
        );
    }
    if let (Some(first), Some(last)) = (bars.first(), bars.last()) {
        let _ = write!(
            svg,
            r#"<text x="{PAD}" y="{y}" font-size="11">{lo:.2} ms</text><text x="{x}" y="{y}" font-size="11" text-anchor="end">{hi:.2} ms</text><text x="2" y="12" font-size="11">{max}</text>"#,
            y = CHART_H + 14.0,
            x = PAD + CHART_W,
            lo = first.lower_ms,
            hi = last.upper_ms,
            max = max as u64
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A line chart of the store's RSS over the run.
pub fn rss_svg(points: &[RssPoint]) -> String {
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" aria-label="RSS over time">"#,
        w = CHART_W + PAD * 2.0,
        h = CHART_H + PAD
    );
    if points.len() >= 2 {
        let (t0, t1) = (points[0].t_s, points[points.len() - 1].t_s);
        let max = points.iter().map(|p| p.bytes).max().unwrap_or(1).max(1) as f64;
        let span = (t1 - t0).max(1e-9);
        let path: Vec<String> = points
            .iter()
            .map(|p| {
                format!(
                    "{:.1},{:.1}",
                    PAD * 2.0 + (p.t_s - t0) / span * CHART_W,
                    CHART_H - p.bytes as f64 / max * (CHART_H - 10.0)
                )
            })
            .collect();
        let _ = write!(
            svg,
            r##"<polyline fill="none" stroke="#b5574a" stroke-width="1.5" points="{}"/><text x="2" y="12" font-size="11">{}</text><text x="{}" y="{}" font-size="11">{t0:.0} s</text><text x="{}" y="{}" font-size="11" text-anchor="end">{t1:.0} s</text>"##,
            path.join(" "),
            mib(max as u64),
            PAD * 2.0,
            CHART_H + 14.0,
            PAD * 2.0 + CHART_W,
            CHART_H + 14.0
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A self-contained HTML page: the text report and the charts, no external resources.
pub fn render_html(r: &Report) -> String {
    let mut html = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>stele bench</title>\
         <style>body{font-family:sans-serif;margin:2em;max-width:72em}pre{background:#f6f6f6;padding:1em;overflow-x:auto}\
         .chart{display:inline-block;margin:0 1.5em 1.5em 0;vertical-align:top}h3{font-size:1em;margin:.3em 0}</style></head><body>\n",
    );
    let _ = writeln!(
        html,
        "<h1>stele bench</h1>\n<pre>{}</pre>",
        escape(&render_text(r))
    );
    html.push_str("<h2>Latency distributions</h2>\n");
    for q in &r.requests {
        let _ = writeln!(
            html,
            "<div class=\"chart\"><h3>{} — p50 {:.2} ms, p99 {:.2} ms</h3><code>{}</code><br>{}</div>",
            escape(&q.name),
            q.latency.p50_ms,
            q.latency.p99_ms,
            escape(&q.selector),
            latency_svg(&q.name, &q.distribution)
        );
    }
    if let Some(p) = r.process.as_ref().filter(|p| !p.rss.is_empty()) {
        let _ = writeln!(
            html,
            "<h2>Store RSS (warm-up and measured phase)</h2>\n<div class=\"chart\">{}</div>",
            rss_svg(&p.rss)
        );
    }
    let _ = writeln!(
        html,
        "<h2>Raw figures</h2>\n<details><summary>JSON</summary><pre>{}</pre></details>\n</body></html>",
        escape(&r.to_json())
    );
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::latency::Latencies;

    fn row(name: &str, requests: u64, errors: u64, series: u64) -> RequestReport {
        let mut l = Latencies::default();
        for i in 0..(requests - errors) {
            l.record(std::time::Duration::from_millis(1 + i));
        }
        RequestReport {
            name: name.into(),
            kind: RequestKind::Series,
            selector: format!("{name}{{a=\"<b>\"}}"),
            range: "all".into(),
            skip_chunks: false,
            requests,
            errors,
            first_error: (errors > 0).then(|| "boom".into()),
            series,
            samples: series * 120,
            chunk_bytes: series * 100,
            latency: l.summary(),
            distribution: l.distribution(8),
        }
    }

    pub(crate) fn sample_report() -> Report {
        let rows = vec![row("a", 10, 0, 100), row("b", 4, 1, 30)];
        Report {
            stele_version: "test".into(),
            target: TargetReport {
                address: "http://127.0.0.1:1".into(),
                started_by_bench: true,
                data: "profile small".into(),
                data_min_time_ms: 0,
                data_max_time_ms: 1,
                index_cache_size_bytes: Some(1 << 20),
            },
            settings: Settings {
                workload: "w.toml".into(),
                concurrency: 2,
                duration_s: None,
                request_count: Some(14),
                warmup_rounds: 1,
                probe_pause_ms: 100.0,
                bucket_latency_ms: None,
                bucket_bandwidth_mib_s: None,
            },
            totals: Totals::from_rows(&rows, 2.0),
            requests: rows,
            over_fetch: OverFetch::new(
                SectionBytes::new(100, 120),
                SectionBytes::new(0, 0),
                SectionBytes::new(1000, 1100),
            ),
            cache: Vec::new(),
            process: Some(ProcessReport {
                rss: vec![
                    RssPoint {
                        t_s: -1.0,
                        bytes: 10,
                        anon_bytes: 5,
                    },
                    RssPoint {
                        t_s: 0.0,
                        bytes: 20,
                        anon_bytes: 15,
                    },
                ],
                ..Default::default()
            }),
            comparison: None,
        }
    }

    #[test]
    fn totals_are_the_sums_of_the_rows_over_the_elapsed_time() {
        let r = sample_report();
        let t = &r.totals;
        assert_eq!((t.requests, t.errors, t.series), (14, 1, 130));
        assert_eq!(t.samples, 130 * 120);
        assert_eq!(t.requests_per_s, 7.0);
        assert_eq!(t.series_per_s, 65.0);
        assert_eq!(t.chunk_bytes_per_s, 6500.0);
        assert_eq!(Totals::from_rows(&[], 0.0).requests_per_s, 0.0);
    }

    #[test]
    fn over_fetch_totals_and_ratios() {
        let o = sample_report().over_fetch;
        assert_eq!(o.total, SectionBytes::new(1100, 1220));
        assert_eq!(o.series.ratio, None);
        assert!((o.postings.ratio.unwrap() - 1.2).abs() < 1e-12);
    }

    #[test]
    fn json_has_every_section() {
        let json: serde_json::Value = serde_json::from_str(&sample_report().to_json()).unwrap();
        for key in [
            "target",
            "settings",
            "totals",
            "requests",
            "over_fetch",
            "cache",
            "process",
            "comparison",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        let a = &json["requests"][0];
        for key in ["p50_ms", "p90_ms", "p99_ms", "max_ms", "count"] {
            assert!(a["latency"][key].is_number(), "latency.{key}");
        }
        assert_eq!(a["kind"], "series");
        assert_eq!(json["totals"]["requests"], 14);
    }

    #[test]
    fn text_names_every_request_and_figure() {
        let text = render_text(&sample_report());
        for needle in [
            "req/s",
            "p99 ms",
            "over-fetch",
            "start to ready",
            "peak RSS",
            "first error: boom",
        ] {
            assert!(text.contains(needle), "{needle}:\n{text}");
        }
        assert!(text.lines().any(|l| l.starts_with("a ")), "{text}");
    }

    #[test]
    fn html_is_self_contained_and_escaped() {
        let html = render_html(&sample_report());
        assert!(html.contains("<svg") && html.contains("polyline"));
        assert_eq!(html.matches("aria-label=\"latency of").count(), 2);
        assert!(!html.contains("a=\"<b>\""), "selector not escaped");
        assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
    }

    #[test]
    fn rss_growth_compares_quarters_of_the_measured_phase() {
        let points: Vec<RssPoint> = (-4..8)
            .map(|i| RssPoint {
                t_s: f64::from(i),
                bytes: if i < 4 { 100 } else { 150 },
                anon_bytes: 90,
            })
            .collect();
        assert_eq!(rss_growth(&points), Some(1.5));
        assert_eq!(rss_growth(&points[..5]), None);
    }
}
