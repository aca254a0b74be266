//! The store over a slow or stalled bucket: probes (`/metrics`, `/-/healthy`, `/-/ready`,
//! Info) answer within 100 ms at all times, and every query completes with the right answer.
//!
//! In-process, the bucket is `object_store`'s own `ThrottledStore` over the blocks' directory;
//! end to end, it is the real S3 test server (s3s-fs) behind a latency proxy that can stall
//! (`common::slow`).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::slow::{promtool_blocks, Prober, SlowS3};
use common::store::{filesystem_yaml, StoreProcess};
use common::storeapi::{call_series, decode, runtime, series_request};
use common::*;
use object_store::throttle::{ThrottleConfig, ThrottledStore};
use object_store::{ObjectStore, ObjectStoreExt};
use stele::bucket::discover::BlockFilters;
use stele::cache::Cache;
use stele::metrics::{ExpositionFormat, Metrics};
use stele::model::parse_selector;
use stele::store::{BucketStore, StoreCollector, StoreConfig};
use stele::storeapi::{Limits, SeriesEvent, SeriesOut, SeriesQuery};

/// The bound the issue sets on every probe.
const PROBE_LIMIT: Duration = Duration::from_millis(100);

fn store_config(data_dir: &Path) -> StoreConfig {
    StoreConfig {
        data_dir: data_dir.to_path_buf(),
        filters: BlockFilters::default(),
        limits: Limits::default(),
        block_sync_concurrency: 2,
        lazy_index_headers: true,
        index_header_idle_timeout: Duration::from_secs(300),
        inflight_memory_limit: 256 << 20,
        inflight_memory_wait: Duration::from_secs(60),
        local_bucket: None,
        postings_cost_model: true,
        chunk_cache_max_age: Duration::ZERO,
        max_bucket_requests: stele::store::DEFAULT_MAX_BUCKET_REQUESTS,
        bucket_requests_per_query: stele::store::DEFAULT_BUCKET_REQUESTS_PER_QUERY,
    }
}

/// Blocks of the tiny profile in `dir`.
fn tiny_blocks(dir: &Path) {
    let profile = stele::gen::profile::parse_profile("tiny", "tiny", TINY_PROFILE).unwrap();
    stele::gen::generate(&profile, dir, &indicatif::ProgressBar::hidden()).unwrap();
}

/// The files under `dir` as an in-memory bucket (`ThrottledStore` throttles streamed
/// replies, which a local file system's are not).
fn in_memory_bucket(dir: &Path) -> object_store::memory::InMemory {
    let bucket = object_store::memory::InMemory::new();
    let mut files = Vec::new();
    relative_files(dir, "", &mut files);
    runtime().block_on(async {
        for rel in files {
            let data = std::fs::read(dir.join(&rel)).unwrap();
            bucket
                .put(&object_store::path::Path::from(rel), data.into())
                .await
                .unwrap();
        }
    });
    bucket
}

fn query(selector: &str) -> SeriesQuery {
    SeriesQuery {
        min_time: i64::MIN,
        max_time: i64::MAX,
        matchers: parse_selector(selector).unwrap(),
        partial_response: false,
        ..Default::default()
    }
}

fn collect(store: &BucketStore, q: &SeriesQuery) -> Vec<SeriesOut> {
    let mut series = Vec::new();
    store
        .series(q, &mut |ev| {
            match ev {
                SeriesEvent::Series(s) => series.push(s),
                SeriesEvent::Warning(w) => panic!("a warning: {w}"),
            }
            true
        })
        .unwrap();
    series
}

/// Runs `probe` on its own thread and fails unless it returns within `limit` (a probe that
/// waits on a stalled bucket would otherwise hang the test instead of failing it).
fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    probe: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let started = Instant::now();
    std::thread::spawn(move || {
        let _ = tx.send(probe());
    });
    // The deadline of the wait itself is generous; the limit is checked on what it measured.
    let got = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("{what} did not answer within 30 s: it waits on the bucket"));
    let took = started.elapsed();
    assert!(took <= limit, "{what} took {took:?}, over {limit:?}");
    got
}

/// A header build stuck on a stalled bucket holds nothing that `/metrics`, Info or another
/// block's query needs. Today's main failed this: the build held the index's lock, which the
/// metrics collector waited on.
#[test]
fn a_header_build_stalled_on_the_bucket_holds_up_no_probe() {
    let dirs = tempfile::tempdir().unwrap();
    let blocks = dirs.path().join("bucket");
    tiny_blocks(&blocks);
    let throttled = Arc::new(ThrottledStore::new(
        in_memory_bucket(&blocks),
        ThrottleConfig::default(),
    ));
    let runtime = ShutDownInBackground::new();
    let runtime = runtime.get();
    let data_dir = dirs.path().join("data");
    let store = bucket_store(throttled.clone(), store_config(&data_dir), runtime);
    let metrics = Metrics::new();
    metrics.register_collector(StoreCollector(store.clone()));
    runtime.block_on(store.sync()).unwrap();
    let served = store.blocks();
    assert_eq!(served.len(), 2);
    common::storeapi::wait_until("both headers built", || {
        served.iter().all(|b| {
            data_dir
                .join(b.id.to_string())
                .join("index-header")
                .exists()
        })
    });
    let expected = collect(&store, &query(r#"{__name__="up"}"#));
    assert!(!expected.is_empty());

    // The first block loses its header and closes: its next query builds the header again,
    // from a bucket that now never answers.
    let stuck = served[0].clone();
    stuck.index.close();
    std::fs::remove_file(data_dir.join(stuck.id.to_string()).join("index-header")).unwrap();
    throttled.config_mut(|c| c.wait_get_per_call = Duration::from_secs(3600));
    let stuck_query = {
        let store = store.clone();
        let q = query(r#"{__name__="up"}"#);
        runtime.spawn_blocking(move || collect(&store, &q))
    };
    // The fault hit: the query is in the header build, which cannot finish.
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        !stuck_query.is_finished(),
        "the query finished on a stalled bucket"
    );
    assert!(!data_dir
        .join(stuck.id.to_string())
        .join("index-header")
        .exists());
    let s = stuck.clone();
    assert!(!within(PROBE_LIMIT, "is_open", move || s.index.is_open()));

    for _ in 0..20 {
        let m = metrics.clone();
        let text = within(PROBE_LIMIT, "/metrics", move || {
            m.encode(ExpositionFormat::PrometheusText).unwrap()
        });
        assert!(
            text.contains("stele_store_index_headers_open 1\n"),
            "{text}"
        );
        let s = store.clone();
        within(PROBE_LIMIT, "Info", move || s.info().unwrap());
        std::thread::sleep(Duration::from_millis(10));
    }
    // The other block, whose index is open and whose series are cached, still answers
    // (labels only: its chunks are in the stalled bucket).
    let other = served[1].clone();
    let q = SeriesQuery {
        skip_chunks: true,
        block_matchers: parse_selector(&format!(r#"{{__block_id="{}"}}"#, other.id)).unwrap(),
        ..query(r#"{__name__="up"}"#)
    };
    let s = store.clone();
    let got = within(
        Duration::from_secs(20),
        "a query of the other block",
        move || collect(&s, &q),
    );
    assert!(!got.is_empty());
}

/// A runtime whose threads may be asleep on a stalled bucket: dropped without waiting for
/// them (also when the test fails), or the test would hang instead of failing.
struct ShutDownInBackground(Option<tokio::runtime::Runtime>);

impl ShutDownInBackground {
    /// Two workers, as on the 2-core machines stores run on.
    fn new() -> Self {
        Self(Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap(),
        ))
    }

    fn get(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().expect("until dropped")
    }
}

/// A bucket store over `bucket` with a 16 MiB index cache, its queries on `runtime`.
fn bucket_store(
    bucket: Arc<dyn ObjectStore>,
    config: StoreConfig,
    runtime: &tokio::runtime::Runtime,
) -> Arc<BucketStore> {
    Arc::new(BucketStore::new(
        bucket,
        config,
        Arc::new(Cache::new(16 << 20)),
        None,
        runtime.handle().clone(),
    ))
}

impl Drop for ShutDownInBackground {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Over a bucket where every GET takes 25 ms, from the first sync through header builds and
/// concurrent queries: probes answer in time, every query completes, with the answer of the
/// same blocks read locally.
#[test]
fn a_slow_bucket_slows_queries_not_probes() {
    let dirs = tempfile::tempdir().unwrap();
    let blocks = dirs.path().join("bucket");
    tiny_blocks(&blocks);
    let runtime = ShutDownInBackground::new();
    let runtime = runtime.get();
    let open = |bucket: Arc<dyn ObjectStore>, data: &str| {
        bucket_store(bucket, store_config(&dirs.path().join(data)), runtime)
    };
    let local = object_store::local::LocalFileSystem::new_with_prefix(&blocks).unwrap();
    let reference = open(Arc::new(local), "reference");
    runtime.block_on(reference.sync()).unwrap();

    let throttle = ThrottleConfig {
        wait_get_per_call: Duration::from_millis(25),
        wait_list_per_call: Duration::from_millis(25),
        wait_list_with_delimiter_per_call: Duration::from_millis(25),
        ..Default::default()
    };
    let store = open(
        Arc::new(ThrottledStore::new(in_memory_bucket(&blocks), throttle)),
        "slow",
    );
    let metrics = Metrics::new();
    metrics.register_collector(StoreCollector(store.clone()));

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let prober = {
        let (store, metrics, stop) = (store.clone(), metrics.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut slowest = Duration::ZERO;
            let mut probes = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                metrics.encode(ExpositionFormat::PrometheusText).unwrap();
                let _ = store.info();
                slowest = slowest.max(t.elapsed());
                probes += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            (slowest, probes)
        })
    };
    runtime.block_on(store.sync()).unwrap();
    let selectors = [
        r#"{__name__="up"}"#,
        r#"{__name__=~"http_.+",code="500"}"#,
        r#"{__name__="container_cpu_usage_seconds_total"}"#,
        r#"{namespace=~"ns-.*",__name__!="up"}"#,
    ];
    let queries: Vec<_> = selectors
        .iter()
        .flat_map(|s| [s, s])
        .map(|s| {
            let (store, q) = (store.clone(), query(s));
            runtime.spawn_blocking(move || collect(&store, &q))
        })
        .collect();
    for (q, s) in queries
        .into_iter()
        .zip(selectors.iter().flat_map(|s| [s, s]))
    {
        let got = runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(120), q)
                .await
                .expect("a query over the slow bucket did not complete")
                .unwrap()
        });
        assert_eq!(got, collect(&reference, &query(s)), "{s}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (slowest, probes) = prober.join().unwrap();
    assert!(probes >= 10, "{probes} probes");
    assert!(slowest <= PROBE_LIMIT, "the slowest probe took {slowest:?}");
}

/// Over a remote bucket a request fetches the chunks of several batches ahead, in tasks on
/// the runtime: what they take from the memory budget is given back whether the request
/// finishes, fails, or stops early (its tasks aborted mid-fetch), and the answer is the
/// one of the same blocks read locally.
#[test]
fn fetches_ahead_give_back_every_byte_however_the_request_ends() {
    let dirs = tempfile::tempdir().unwrap();
    let blocks = dirs.path().join("bucket");
    tiny_blocks(&blocks);
    let runtime = ShutDownInBackground::new();
    let runtime = runtime.get();
    let open = |bucket: Arc<dyn ObjectStore>, data: &str| {
        let store = bucket_store(bucket, store_config(&dirs.path().join(data)), runtime);
        runtime.block_on(store.sync()).unwrap();
        store
    };
    let local = object_store::local::LocalFileSystem::new_with_prefix(&blocks).unwrap();
    let reference = open(Arc::new(local), "reference");
    let throttle = ThrottleConfig {
        wait_get_per_call: Duration::from_millis(10),
        ..Default::default()
    };
    let store = open(
        Arc::new(ThrottledStore::new(in_memory_bucket(&blocks), throttle)),
        "slow",
    );
    let everything = query(r#"{__name__=~".+"}"#);
    let expected = collect(&reference, &everything);
    // Batches are 1000 series or 4096 chunks.
    let chunks: usize = expected.iter().map(|s| s.chunks.len()).sum();
    assert!(chunks > 4096, "two batches at least: {chunks} chunks");

    let run = |stop_after: Option<usize>| {
        let (store, q) = (store.clone(), everything.clone());
        runtime.block_on(async move {
            tokio::task::spawn_blocking(move || {
                let mut got = Vec::new();
                let result = store.series(&q, &mut |ev| match ev {
                    SeriesEvent::Series(s) => {
                        got.push(s);
                        stop_after.is_none_or(|n| got.len() < n)
                    }
                    SeriesEvent::Warning(w) => panic!("a warning: {w}"),
                });
                (result.map(|_| ()), got)
            })
            .await
            .unwrap()
        })
    };
    // Whole: the answer of the local blocks, and nothing held after.
    let (result, got) = run(None);
    result.unwrap();
    assert!(got == expected, "the answer over the slow bucket differs");
    assert_eq!(store.budget.held(), 0);
    // Stopped after the first series, with fetches of later batches in flight.
    let requests_before = store
        .fetched_chunks
        .requests
        .load(std::sync::atomic::Ordering::Relaxed);
    let (result, got) = run(Some(1));
    result.unwrap();
    assert_eq!(got.len(), 1);
    let requests_after = store
        .fetched_chunks
        .requests
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(requests_after >= requests_before, "counted");
    // Aborted tasks give their share back when they are dropped: wait for it, bounded.
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.budget.held() != 0 {
        assert!(
            Instant::now() < deadline,
            "{} bytes still held",
            store.budget.held()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // Failed: a bytes limit the fetches ahead pass.
    let limited = SeriesQuery {
        ..everything.clone()
    };
    let small = bucket_store(
        Arc::new(ThrottledStore::new(in_memory_bucket(&blocks), throttle)),
        StoreConfig {
            limits: Limits {
                downloaded_bytes: 64 << 10,
                ..Limits::default()
            },
            ..store_config(&dirs.path().join("limited"))
        },
        runtime,
    );
    runtime.block_on(small.sync()).unwrap();
    let s = small.clone();
    let err = runtime
        .block_on(runtime.spawn_blocking(move || s.series(&limited, &mut |_| true).map(|_| ())))
        .unwrap()
        .unwrap_err();
    assert!(err.to_string().contains("bytes limit"), "{err}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while small.budget.held() != 0 {
        assert!(
            Instant::now() < deadline,
            "{} bytes still held",
            small.budget.held()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A promtool-made block of `series` series of one chunk each (120 samples of noise, so a
/// record longer than the store's first guess of 1 KiB: the fetch reads it again).
fn noisy_block(dir: &Path, series: usize) {
    use std::fmt::Write;
    let start_s: i64 = 1_767_225_600;
    let mut text = String::from("# TYPE noise gauge\n");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..series {
        for k in 0..120 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Full-mantissa values and jittered scrapes: well over 1 KiB per chunk.
            let v = (x >> 11) as f64 * 1e-3;
            let jitter_ms = x % 1000;
            writeln!(
                text,
                "noise{{i=\"{i:05}\"}} {v} {}.{jitter_ms:03}",
                start_s + k * 60
            )
            .unwrap();
        }
    }
    text.push_str("# EOF\n");
    let input = dir.with_extension("om");
    std::fs::write(&input, text).unwrap();
    run(std::process::Command::new(promtool())
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(dir));
}

/// Records longer than their first read are read again by the fetch task, which takes their
/// bytes from the budget itself: they are handed to the request, or given back when the task
/// is dropped with a request that stopped early.
#[test]
fn longer_records_read_ahead_are_handed_over_or_given_back() {
    let dirs = tempfile::tempdir().unwrap();
    let blocks = dirs.path().join("bucket");
    noisy_block(&blocks, 2500);
    let runtime = ShutDownInBackground::new();
    let runtime = runtime.get();
    let throttle = ThrottleConfig {
        wait_get_per_call: Duration::from_millis(20),
        ..Default::default()
    };
    let store = bucket_store(
        Arc::new(ThrottledStore::new(in_memory_bucket(&blocks), throttle)),
        store_config(&dirs.path().join("data")),
        runtime,
    );
    runtime.block_on(store.sync()).unwrap();
    // Every other series: a record's first read ends at the next wanted one or 1 KiB on.
    let q = query(r#"{__name__="noise",i=~".*[02468]"}"#);
    let requests = || {
        store
            .fetched_chunks
            .requests
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let series = |stop_after: usize| {
        let (store, q) = (store.clone(), q.clone());
        runtime
            .block_on(runtime.spawn_blocking(move || {
                let mut n = 0;
                store
                    .series(&q, &mut |_| {
                        n += 1;
                        n < stop_after
                    })
                    .map(|_| n)
            }))
            .unwrap()
            .unwrap()
    };
    let before = requests();
    assert_eq!(series(usize::MAX), 1250);
    // One GET per coalesced range, then one per record read again: more than the ranges.
    let whole = requests() - before;
    assert!(whole > 3, "records were read again: {whole} chunk GETs");
    assert_eq!(
        store.budget.held(),
        0,
        "handed over and given back with the request"
    );
    // Stopped at the first series: the next batches' tasks are dropped, maybe mid-fetch.
    assert_eq!(series(1), 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.budget.held() != 0 {
        assert!(
            Instant::now() < deadline,
            "{} bytes still held",
            store.budget.held()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The issue's case end to end: `stele store` on the S3 test server behind 40 ms of latency per
/// request, probed every 15 ms from process start, three cold starts (every header built from
/// the bucket), concurrent Series requests right after ready, and on the second start the
/// bucket stalled for two seconds under them. Every probe answers within 100 ms, every query
/// completes with the answer of the same blocks served from a local directory, and the
/// watchdog saw no blocked worker.
#[test]
fn the_store_over_a_slow_and_stalling_s3_answers_probes_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = dir.path().join("blocks");
    let series = promtool_blocks(&blocks, 20, 4);
    let slow = SlowS3::start(Duration::from_millis(40));
    let rt = runtime();
    let direct = slow.s3.store("");
    let mut block_count = 0;
    for entry in std::fs::read_dir(&blocks).unwrap() {
        let path = entry.unwrap().path();
        if path.join("meta.json").exists() {
            rt.block_on(upload_block(direct.as_ref(), &path));
            block_count += 1;
        }
    }
    assert_eq!(block_count, 2, "4 hours of promtool data are two 2h blocks");
    let (min, max) = (i64::MIN, i64::MAX);
    let selectors = [
        r#"{__name__=~".+"}"#,
        r#"{job="node",instance="host-3"}"#,
        r#"{__name__="http_requests_total",code="500",handler=~"/api/v1/h1.*"}"#,
        r#"node_cpu_seconds_total{mode="idle"}"#,
    ];
    let reference = StoreProcess::start(&filesystem_yaml(&blocks), &[]);
    let expected: Vec<_> = selectors
        .iter()
        .map(|s| {
            let mut c = reference.client(&rt);
            decode(
                &call_series(&rt, &mut c, series_request(s, min, max))
                    .unwrap()
                    .series,
                min,
                max,
            )
        })
        .collect();
    assert_eq!(expected[0].len(), series);
    drop(reference);

    for start in 0..3 {
        let store =
            StoreProcess::spawn_in(&slow.objstore_yaml(), &[], tempfile::tempdir().unwrap());
        let prober = Prober::start(&store.http, &store.grpc, Duration::from_millis(15));
        store.wait_ready();
        let requests_before = slow.proxy.requests();
        let clients: Vec<_> = (0..4)
            .map(|c| {
                let grpc = store.grpc.clone();
                let selectors: Vec<String> = selectors.iter().map(|s| s.to_string()).collect();
                std::thread::spawn(move || {
                    let rt = runtime();
                    let mut client = common::storeapi::store_client(&rt, &grpc);
                    let mut answers = Vec::new();
                    for i in 0..selectors.len() {
                        let s = &selectors[(i + c) % selectors.len()];
                        let r = call_series(&rt, &mut client, series_request(s, min, max))
                            .unwrap_or_else(|e| panic!("{s}: {e}"));
                        assert!(r.warnings.is_empty(), "{s}: {:?}", r.warnings);
                        answers.push(((i + c) % selectors.len(), decode(&r.series, min, max)));
                    }
                    answers
                })
            })
            .collect();
        if start == 1 {
            let held = slow.stall_one_in_flight(Duration::from_secs(2));
            assert!(held > 0);
        }
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let answers: Vec<_> = clients.into_iter().map(|c| c.join()).collect();
            let _ = done_tx.send(answers);
        });
        let answers = done_rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("start {start}: queries did not complete within 2 minutes"));
        for client in answers {
            for (i, got) in client.expect("a client panicked") {
                assert!(
                    got == expected[i],
                    "start {start}: {} differs",
                    selectors[i]
                );
            }
        }
        assert!(
            slow.proxy.requests() > requests_before,
            "the queries read the bucket"
        );
        let log = prober.finish();
        let slowest = log.assert_answered_within(PROBE_LIMIT);
        assert!(log.count("/-/ready", 200) > 0, "start {start}: never ready");
        eprintln!(
            "start {start}: {} probes, the slowest {slowest:?}",
            log.0.len()
        );
        assert_eq!(store.metric("stele_async_worker_stalls_total"), 0.0);
        store.stop();
    }
}
