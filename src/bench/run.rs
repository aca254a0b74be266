//! The phases of a bench run: start (or reach) the store, time the first query, warm up,
//! measure, time a warm restart, compare with Prometheus.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use parking_lot::Mutex;

use super::client::{connect, remote_read_request, served_span, store_request, Outcome};
use super::latency::{median, Latencies};
use super::process::{link_blocks, spawn_prometheus, Managed, StoreProcess};
use super::report::{
    rss_growth, BucketCost, CompareRow, Comparison, OverFetch, ProcessReport, Report,
    RequestReport, RssPoint, SectionBytes, Settings, TargetReport, Totals,
};
use super::scrape::{bucket_fetched_bytes, cache_figures, Scrape};
use super::workload::{RequestKind, RequestSpec, Workload};
use super::BenchError;
use crate::prom::PrometheusClient;
use crate::storeapi::client::StoreApiClient;

/// What to benchmark.
#[derive(Debug, Clone)]
pub enum Target {
    /// Start `stele store` (this executable) over a bucket.
    Start {
        objstore_yaml: String,
        /// Shown in reports: where the blocks are.
        data: String,
        /// More `stele store` flags, e.g. `--index-cache-size=1GB`.
        store_args: Vec<String>,
        index_cache_size: Option<u64>,
        /// Keep the store's data dir from an earlier run (index headers on disk) instead
        /// of starting from an empty one.
        keep_data_dir: bool,
    },
    /// A StoreAPI server already running; its /metrics when `http` is given.
    Running { grpc: String, http: Option<String> },
}

/// How long the measured phase lasts.
#[derive(Debug, Clone, Copy)]
pub enum Length {
    Duration(Duration),
    Requests(u64),
}

/// `--compare-prometheus`: the same blocks served by a real Prometheus.
#[derive(Debug, Clone)]
pub struct Compare {
    /// Block directories (local) that Prometheus gets hard links of.
    pub blocks: Vec<PathBuf>,
    /// Interleaved rounds per selector (after one warm-up round of each).
    pub rounds: u32,
}

#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub target: Target,
    pub workload: Workload,
    /// Shown in reports.
    pub workload_name: String,
    pub concurrency: usize,
    pub length: Length,
    /// Rounds of the whole mix before measuring.
    pub warmup_rounds: u32,
    /// The request timed after each start; default the first series request of the mix.
    pub probe: Option<String>,
    /// Sequential probe runs whose median is the warm latency.
    pub probe_runs: u32,
    /// Idle time before each probe timed after a start (see [`first_then_warm`]).
    pub probe_pause: Duration,
    /// Cold starts and warm restarts timed each (the report gives the medians).
    pub start_runs: u32,
    pub compare: Option<Compare>,
    /// Scratch space: the store's data dir, logs, Prometheus' data dir.
    pub work_dir: PathBuf,
    /// How often the store's RSS is sampled.
    pub rss_interval: Duration,
    /// The stele binary started as the store (default: this one), to measure another build
    /// on the same harness.
    pub store_exe: Option<PathBuf>,
    /// The remote bucket on loopback the store reads (`--bucket=s3`), whose proxy counts the
    /// round trips.
    pub remote: Option<RemoteBucket>,
}

/// The S3 test server's proxy, and what the report models a request's bucket time with.
#[derive(Debug, Clone)]
pub struct RemoteBucket {
    pub proxy: Arc<super::proxy::LatencyProxy>,
    pub latency: Duration,
    /// Bytes per second the server gives many GETs at once, measured at start.
    pub bandwidth: f64,
}

impl RemoteBucket {
    /// Runs `f`, returning its output with the round trips and bytes the bucket saw meanwhile.
    async fn observe<T>(&self, f: impl std::future::Future<Output = T>) -> (T, RoundTripsSeen) {
        let (rt, bytes, requests) = (
            self.proxy.round_trips(),
            self.proxy.bytes().1,
            self.proxy.requests(),
        );
        let out = f.await;
        let seen = RoundTripsSeen {
            round_trips: self.proxy.round_trips() - rt,
            bytes: self.proxy.bytes().1 - bytes,
            requests: self.proxy.requests() - requests,
        };
        (out, seen)
    }

    /// What the bucket alone costs a request: its round trips on the critical path times
    /// the latency, plus its bytes over the bandwidth, in milliseconds.
    fn model_ms(&self, seen: &RoundTripsSeen) -> (f64, f64) {
        (
            seen.round_trips.all as f64 * ms(self.latency),
            seen.bytes as f64 / self.bandwidth.max(1.0) * 1e3,
        )
    }
}

/// What the bucket saw of one request.
#[derive(Debug, Clone, Copy, Default)]
struct RoundTripsSeen {
    round_trips: super::proxy::RoundTrips,
    bytes: u64,
    requests: u64,
}

const READY_TIMEOUT: Duration = Duration::from_secs(600);
const STOP_GRACE: Duration = Duration::from_secs(30);

/// Everything the measured phase sums up for one workload entry.
#[derive(Debug, Default)]
struct Tally {
    latencies: Latencies,
    requests: u64,
    errors: u64,
    first_error: Option<String>,
    series: u64,
    samples: u64,
    chunk_bytes: u64,
    postings: (u64, u64),
    series_bytes: (u64, u64),
    chunks: (u64, u64),
}

impl Tally {
    fn add(&mut self, result: Result<Outcome, String>) {
        self.requests += 1;
        match result {
            Ok(o) => {
                self.latencies.record(o.latency);
                self.series += o.series;
                self.samples += o.samples;
                self.chunk_bytes += o.chunk_bytes;
                if let Some(s) = o.stats {
                    let add = |acc: &mut (u64, u64), touched: i64, fetched: i64| {
                        acc.0 += touched.max(0) as u64;
                        acc.1 += fetched.max(0) as u64;
                    };
                    add(
                        &mut self.postings,
                        s.postings_touched_size_sum,
                        s.postings_fetched_size_sum,
                    );
                    add(
                        &mut self.series_bytes,
                        s.series_touched_size_sum,
                        s.series_fetched_size_sum,
                    );
                    add(
                        &mut self.chunks,
                        s.chunks_touched_size_sum,
                        s.chunks_fetched_size_sum,
                    );
                }
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }
}

/// A phase of concurrent requests: the mix in round order until the limit or the deadline.
struct Phase {
    next: AtomicU64,
    limit: Option<u64>,
    deadline: Option<Instant>,
}

impl Phase {
    fn claim(&self) -> Option<u64> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        match self.limit {
            Some(limit) if i >= limit => None,
            _ => Some(i),
        }
    }
}

struct Shared {
    workload: Workload,
    order: Vec<usize>,
    spans: Vec<(i64, i64)>,
}

async fn drive(
    clients: &[StoreApiClient],
    shared: &Arc<Shared>,
    phase: Phase,
    bar: &ProgressBar,
    count_on_bar: bool,
) -> Vec<Tally> {
    let tallies: Arc<Mutex<Vec<Tally>>> = Arc::new(Mutex::new(
        (0..shared.workload.requests.len())
            .map(|_| Tally::default())
            .collect(),
    ));
    let phase = Arc::new(phase);
    let mut tasks = Vec::new();
    for client in clients {
        let (mut client, shared, phase, tallies, bar) = (
            client.clone(),
            shared.clone(),
            phase.clone(),
            tallies.clone(),
            bar.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while let Some(i) = phase.claim() {
                let idx = shared.order[i as usize % shared.order.len()];
                let spec = &shared.workload.requests[idx];
                let (min, max) = shared.spans[idx];
                let result = store_request(&mut client, spec, min, max)
                    .await
                    .map_err(|s| format!("{:?}: {}", s.code(), s.message()));
                tallies.lock()[idx].add(result);
                if count_on_bar {
                    bar.inc(1);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let done = std::mem::take(&mut *tallies.lock());
    done
}

async fn scrape(http: &Option<String>) -> Option<Scrape> {
    let url = format!("{}/metrics", http.as_ref()?);
    let text = reqwest::get(&url).await.ok()?.text().await.ok()?;
    let s = Scrape::parse(&text);
    (!s.is_empty()).then_some(s)
}

/// One request's latency in ms, failing the run when it fails (the probe must work).
async fn timed(
    client: &mut StoreApiClient,
    spec: &RequestSpec,
    span: (i64, i64),
) -> Result<Outcome, BenchError> {
    store_request(client, spec, span.0, span.1)
        .await
        .map_err(|s| BenchError::Request(format!("{}: {:?}: {}", spec.name, s.code(), s.message())))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Samples the store's VmRSS and RssAnon until dropped; times are relative to `origin`.
struct RssSampler {
    points: Arc<Mutex<Vec<(Instant, u64, u64)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: u32, every: Duration) -> Self {
        let points = Arc::new(Mutex::new(Vec::new()));
        let sink = points.clone();
        let task = tokio::spawn(async move {
            let path = format!("/proc/{pid}/status");
            loop {
                if let Ok(status) = std::fs::read_to_string(&path) {
                    let field = |name| super::process::status_bytes(&status, name);
                    if let Some(rss) = field("VmRSS") {
                        sink.lock()
                            .push((Instant::now(), rss, field("RssAnon").unwrap_or(0)));
                    }
                }
                tokio::time::sleep(every).await;
            }
        });
        RssSampler { points, task }
    }

    fn finish(self, origin: Instant) -> Vec<RssPoint> {
        self.task.abort();
        self.points
            .lock()
            .iter()
            .map(|&(at, bytes, anon_bytes)| RssPoint {
                t_s: if at >= origin {
                    (at - origin).as_secs_f64()
                } else {
                    -(origin - at).as_secs_f64()
                },
                bytes,
                anon_bytes,
            })
            .collect()
    }
}

/// The probe's first latency on a fresh store, then the median of `probe_runs` more on the
/// same process: a start's first query is compared with warm queries of that same process,
/// taken right after it, so a busy host weighs on both alike. Each one follows the same idle
/// `probe_pause`, as a first query follows the restart's: idle CPUs take a few milliseconds
/// of work to get back to speed, which queries sent back to back never see.
async fn first_then_warm(
    client: &mut StoreApiClient,
    config: &BenchConfig,
    probe: usize,
    span: (i64, i64),
    first_round_trips: &mut Option<super::proxy::RoundTrips>,
) -> Result<(f64, f64), BenchError> {
    let spec = &config.workload.requests[probe];
    let pause = || tokio::time::sleep(config.probe_pause);
    pause().await;
    let first = match &config.remote {
        Some(remote) => {
            let (outcome, seen) = remote.observe(timed(client, spec, span)).await;
            *first_round_trips = Some(seen.round_trips);
            outcome?
        }
        None => timed(client, spec, span).await?,
    };
    let first = ms(first.latency);
    let mut warm = Vec::new();
    for _ in 0..config.probe_runs.max(1) {
        pause().await;
        warm.push(ms(timed(client, spec, span).await?.latency));
    }
    Ok((first, median(&warm)))
}

/// Starts `stele store` (the target of `config`, which must be [`Target::Start`]) on
/// `data_dir` (emptied first when `wipe`); returns it with the ms from spawn to /-/ready.
async fn start_store(
    config: &BenchConfig,
    data_dir: &std::path::Path,
    wipe: bool,
    log: &std::path::Path,
) -> Result<(StoreProcess, f64), BenchError> {
    let Target::Start {
        objstore_yaml,
        store_args,
        ..
    } = &config.target
    else {
        return Err(BenchError::Process(
            "no store to start: the target is running".into(),
        ));
    };
    if wipe && data_dir.exists() {
        std::fs::remove_dir_all(data_dir).map_err(|e| BenchError::io(data_dir, e))?;
    }
    let started = Instant::now();
    let exe = config.store_exe.as_deref();
    let mut s = StoreProcess::spawn(exe, objstore_yaml, data_dir, store_args, log)?;
    let ready = s.process.wait_ready(started, READY_TIMEOUT).await?;
    Ok((s, ms(ready)))
}

/// Runs the whole benchmark. Progress (phase names, requests) goes to `bar`.
pub async fn run(config: &BenchConfig, bar: &ProgressBar) -> Result<Report, BenchError> {
    let workload = &config.workload;
    let probe = match &config.probe {
        Some(name) => workload.find(name).ok_or_else(|| {
            BenchError::Request(format!("--probe {name:?} is not in the workload"))
        })?,
        None => workload
            .requests
            .iter()
            .position(|r| r.kind == RequestKind::Series)
            .unwrap_or(0),
    };
    std::fs::create_dir_all(&config.work_dir).map_err(|e| BenchError::io(&config.work_dir, e))?;

    // Start (or reach) the store.
    let mut process_report = None;
    let mut start_round_trips = None;
    let mut store: Option<StoreProcess> = None;
    let (mut grpc, mut http) = match &config.target {
        Target::Start { keep_data_dir, .. } => {
            bar.set_message("starting stele store");
            let data_dir = config.work_dir.join("store-data");
            let log = config.work_dir.join("store.log");
            start_round_trips = config.remote.as_ref().map(|r| r.proxy.round_trips());
            let (s, ready) = start_store(config, &data_dir, !keep_data_dir, &log).await?;
            process_report = Some(ProcessReport {
                start_to_ready_cold_runs_ms: vec![ready],
                probe: workload.requests[probe].name.clone(),
                ..Default::default()
            });
            let endpoints = (s.grpc.clone(), Some(s.process.http.clone()));
            store = Some(s);
            endpoints
        }
        Target::Running { grpc, http } => (grpc.clone(), http.clone()),
    };

    let (data_min, data_max) = served_span(&grpc).await?;
    let spans: Vec<(i64, i64)> = workload
        .requests
        .iter()
        .map(|r| r.range.resolve(data_min, data_max))
        .collect();
    let mut probe_client = connect(&grpc).await?;
    // The first probe after each cold start; the last start is the store measured below.
    if let (Some(p), Target::Start { keep_data_dir, .. }) =
        (process_report.as_mut(), &config.target)
    {
        bar.set_message(format!("first {} after start", p.probe));
        if let (Some(remote), Some(at_spawn)) = (&config.remote, start_round_trips) {
            p.start_round_trips = Some(remote.proxy.round_trips() - at_spawn);
        }
        let (first, warm) = first_then_warm(
            &mut probe_client,
            config,
            probe,
            spans[probe],
            &mut p.first_query_cold_round_trips,
        )
        .await?;
        p.first_query_cold_runs_ms.push(first);
        p.cold_over_warm_runs.push(first / warm.max(1e-9));
        let data_dir = config.work_dir.join("store-data");
        let log = config.work_dir.join("store.log");
        for run in 1..config.start_runs.max(1) {
            bar.set_message(format!("cold start {}", run + 1));
            if let Some(s) = store.take() {
                s.process.stop(STOP_GRACE);
            }
            let (s, ready) = start_store(config, &data_dir, !keep_data_dir, &log).await?;
            (grpc, http) = (s.grpc.clone(), Some(s.process.http.clone()));
            store = Some(s);
            probe_client = connect(&grpc).await?;
            let (first, warm) = first_then_warm(
                &mut probe_client,
                config,
                probe,
                spans[probe],
                &mut p.first_query_cold_round_trips,
            )
            .await?;
            p.start_to_ready_cold_runs_ms.push(ready);
            p.first_query_cold_runs_ms.push(first);
            p.cold_over_warm_runs.push(first / warm.max(1e-9));
        }
        p.start_to_ready_cold_ms = median(&p.start_to_ready_cold_runs_ms);
        p.first_query_cold_ms = median(&p.first_query_cold_runs_ms);
        p.cold_over_warm = median(&p.cold_over_warm_runs);
    }

    let mut clients = Vec::with_capacity(config.concurrency);
    for _ in 0..config.concurrency.max(1) {
        clients.push(connect(&grpc).await?);
    }
    let shared = Arc::new(Shared {
        order: workload.round(),
        workload: workload.clone(),
        spans: spans.clone(),
    });
    let sampler = store
        .as_ref()
        .map(|s| RssSampler::start(s.process.pid(), config.rss_interval));

    let warmup = u64::from(config.warmup_rounds) * shared.order.len() as u64;
    if warmup > 0 {
        bar.set_message("warm-up");
        bar.set_length(warmup);
        bar.set_position(0);
        let phase = Phase {
            next: AtomicU64::new(0),
            limit: Some(warmup),
            deadline: None,
        };
        drive(&clients, &shared, phase, bar, true).await;
    }

    let before = scrape(&http).await;
    bar.set_message("measuring");
    bar.set_position(0);
    let started = Instant::now();
    let (phase, ticker) = match config.length {
        Length::Requests(n) => {
            bar.set_length(n);
            (
                Phase {
                    next: AtomicU64::new(0),
                    limit: Some(n),
                    deadline: None,
                },
                None,
            )
        }
        Length::Duration(d) => {
            bar.set_length(d.as_secs().max(1));
            let bar = bar.clone();
            let ticker = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    bar.set_position(started.elapsed().as_secs());
                }
            });
            (
                Phase {
                    next: AtomicU64::new(0),
                    limit: None,
                    deadline: Some(started + d),
                },
                Some(ticker),
            )
        }
    };
    let tallies = drive(
        &clients,
        &shared,
        phase,
        bar,
        matches!(config.length, Length::Requests(_)),
    )
    .await;
    let elapsed = started.elapsed();
    if let Some(t) = ticker {
        t.abort();
    }
    let after = scrape(&http).await;
    let rss = sampler.map(|s| s.finish(started));

    let requests: Vec<RequestReport> = workload
        .requests
        .iter()
        .zip(&tallies)
        .map(|(spec, t)| RequestReport {
            name: spec.name.clone(),
            kind: spec.kind,
            selector: spec.selector.clone(),
            range: spec.range_text.clone(),
            skip_chunks: spec.skip_chunks,
            requests: t.requests,
            errors: t.errors,
            first_error: t.first_error.clone(),
            series: t.series,
            samples: t.samples,
            chunk_bytes: t.chunk_bytes,
            latency: t.latencies.summary(),
            distribution: t.latencies.distribution(24),
        })
        .collect();
    let sum = |f: fn(&Tally) -> (u64, u64)| {
        let (t, f) = tallies
            .iter()
            .map(f)
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        SectionBytes::new(t, f)
    };
    let mut over_fetch = OverFetch::new(
        sum(|t| t.postings),
        sum(|t| t.series_bytes),
        sum(|t| t.chunks),
    );
    let mut cache = Vec::new();
    if let (Some(b), Some(a)) = (&before, &after) {
        over_fetch.bucket_fetched_bytes = Some(bucket_fetched_bytes(b, a));
        cache = cache_figures(b, a);
    }

    // Warm latency of the probe, then a warm restart.
    if let Some(p) = process_report.as_mut() {
        bar.set_message(format!("{} warm", p.probe));
        let mut warm = Vec::new();
        for _ in 0..config.probe_runs.max(1) {
            warm.push(ms(timed(
                &mut probe_client,
                &workload.requests[probe],
                spans[probe],
            )
            .await?
            .latency));
        }
        p.probe_warm_ms = median(&warm);
        let rss = rss.unwrap_or_default();
        let measured = || rss.iter().filter(|r| r.t_s >= 0.0);
        p.peak_rss_measured_bytes = measured().map(|r| r.bytes).max().unwrap_or(0);
        p.peak_rss_anon_bytes = measured().map(|r| r.anon_bytes).max().unwrap_or(0);
        p.rss_growth = rss_growth(&rss);
        p.rss = rss;
        if let Some(s) = &store {
            // The kernel updates VmHWM lazily (not when pages are dropped by madvise or
            // reclaim), so a sample taken earlier can be higher.
            let hwm = s.process.memory("VmHWM").unwrap_or(0);
            p.peak_rss_bytes = hwm.max(p.peak_rss_measured_bytes);
            if let Some(a) = &after {
                p.blocks = a.value("stele_store_blocks_loaded", &[]) as u64;
            }
        }
    }
    drop(clients);

    if let (Some(s), Some(p), Target::Start { .. }) =
        (store.take(), process_report.as_mut(), &config.target)
    {
        let mut s = s;
        for run in 0..config.start_runs.max(1) {
            bar.set_message(format!("warm restart {}", run + 1));
            s.process.stop(STOP_GRACE);
            let log = config.work_dir.join("store-restart.log");
            let (next, ready) =
                start_store(config, &config.work_dir.join("store-data"), false, &log).await?;
            s = next;
            probe_client = connect(&s.grpc).await?;
            let (first, warm) =
                first_then_warm(&mut probe_client, config, probe, spans[probe], &mut None).await?;
            p.start_to_ready_warm_runs_ms.push(ready);
            p.first_query_warm_restart_runs_ms.push(first);
            p.warm_restart_over_warm_runs.push(first / warm.max(1e-9));
        }
        p.start_to_ready_warm_ms = Some(median(&p.start_to_ready_warm_runs_ms));
        p.first_query_warm_restart_ms = Some(median(&p.first_query_warm_restart_runs_ms));
        p.warm_restart_over_warm = Some(median(&p.warm_restart_over_warm_runs));
        grpc = s.grpc.clone();
        store = Some(s);
    }

    let comparison = match &config.compare {
        Some(c) => Some(compare(config, c, &mut probe_client, &spans, bar).await?),
        None => None,
    };
    if let Some(s) = store {
        s.process.stop(STOP_GRACE);
    }

    let (data, index_cache_size) = match &config.target {
        Target::Start {
            data,
            index_cache_size,
            ..
        } => (data.clone(), *index_cache_size),
        Target::Running { .. } => ("(a running server)".to_string(), None),
    };
    Ok(Report {
        stele_version: env!("CARGO_PKG_VERSION").to_string(),
        target: TargetReport {
            address: grpc,
            started_by_bench: process_report.is_some(),
            data,
            data_min_time_ms: data_min,
            data_max_time_ms: data_max,
            index_cache_size_bytes: index_cache_size,
        },
        settings: Settings {
            workload: config.workload_name.clone(),
            concurrency: config.concurrency,
            duration_s: match config.length {
                Length::Duration(d) => Some(d.as_secs_f64()),
                Length::Requests(_) => None,
            },
            request_count: match config.length {
                Length::Requests(n) => Some(n),
                Length::Duration(_) => None,
            },
            warmup_rounds: config.warmup_rounds,
            probe_pause_ms: ms(config.probe_pause),
            bucket_latency_ms: config.remote.as_ref().map(|r| ms(r.latency)),
            bucket_bandwidth_mib_s: config
                .remote
                .as_ref()
                .map(|r| r.bandwidth / (1 << 20) as f64),
        },
        totals: Totals::from_rows(&requests, elapsed.as_secs_f64()),
        requests,
        over_fetch,
        cache,
        process: process_report,
        comparison,
    })
}

/// The Series requests of the mix (those with chunks: remote read has no skip_chunks) against
/// Prometheus' remote read over the same blocks, interleaved: stele, Prometheus, stele, …
async fn compare(
    config: &BenchConfig,
    c: &Compare,
    stele: &mut StoreApiClient,
    spans: &[(i64, i64)],
    bar: &ProgressBar,
) -> Result<Comparison, BenchError> {
    bar.set_message("starting Prometheus");
    let prom_dir = config.work_dir.join("prometheus");
    if prom_dir.exists() {
        std::fs::remove_dir_all(&prom_dir).map_err(|e| BenchError::io(&prom_dir, e))?;
    }
    link_blocks(&c.blocks, &prom_dir)?;
    let mut prometheus: Managed =
        spawn_prometheus(&prom_dir, &config.work_dir.join("prometheus.log"))?;
    prometheus.wait_ready(Instant::now(), READY_TIMEOUT).await?;
    let remote = PrometheusClient::new(&prometheus.http, READY_TIMEOUT)?;

    let selected: Vec<usize> = config
        .workload
        .requests
        .iter()
        .enumerate()
        .filter(|(_, r)| r.kind == RequestKind::Series && !r.skip_chunks)
        .map(|(i, _)| i)
        .collect();
    let rounds = c.rounds.max(1);
    bar.set_message("stele vs Prometheus");
    bar.set_length(selected.len() as u64 * u64::from(rounds + 1));
    bar.set_position(0);
    let mut rows = Vec::new();
    for idx in selected {
        let spec = &config.workload.requests[idx];
        let (min, max) = spans[idx];
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let (mut sa, mut sb) = (Outcome::default(), Outcome::default());
        // Round 0 warms both up and is not counted.
        let mut seen = None;
        for round in 0..=rounds {
            let x = match &config.remote {
                Some(remote) => {
                    let (x, s) = remote.observe(timed(stele, spec, (min, max))).await;
                    seen = Some(s);
                    x?
                }
                None => timed(stele, spec, (min, max)).await?,
            };
            let y = remote_read_request(&remote, spec, min, max).await?;
            if round > 0 {
                a.push(ms(x.latency));
                b.push(ms(y.latency));
            }
            (sa, sb) = (x, y);
            bar.inc(1);
        }
        let (ma, mb) = (median(&a), median(&b));
        rows.push(CompareRow {
            name: spec.name.clone(),
            selector: spec.selector.clone(),
            range: spec.range_text.clone(),
            stele_median_ms: ma,
            prometheus_median_ms: mb,
            ratio: ma / mb.max(1e-9),
            stele_series: sa.series,
            prometheus_series: sb.series,
            stele_samples: sa.samples,
            prometheus_samples: sb.samples,
            bucket: config.remote.as_ref().zip(seen).map(|(remote, seen)| {
                let (waits_ms, transfer_ms) = remote.model_ms(&seen);
                BucketCost {
                    round_trips: seen.round_trips,
                    requests: seen.requests,
                    mib: seen.bytes as f64 / (1 << 20) as f64,
                    round_trips_ms: waits_ms,
                    transfer_ms,
                }
            }),
        });
    }
    let url = prometheus.http.clone();
    prometheus.stop(STOP_GRACE);
    Ok(Comparison {
        prometheus_url: url,
        rounds,
        rows,
    })
}
