//! The series part of the index cache on a real block: one block of the `medium` profile
//! (1.14M series), served by a `BucketStore` over a FILESYSTEM bucket, every series read once
//! through `BucketBlock::series` in batches of 2048 refs (as a `BlockCursor` asks) so the cache
//! holds all of them.
//! - before the timings, what the cache holds for them is printed: the bytes it accounts for
//!   and the heap the fill left allocated (jemalloc's count), per series, next to the
//!   entries' encoded size;
//! - `series_cache/warm/{dense,sparse}`: `BucketBlock::series` from the warm cache, series/s,
//!   for 64k consecutive refs and for every 16th ref of 1M (labels resolved, chunks selected:
//!   the whole of `series()`).
//! - `series_reply/{120k,15k,120k_skip_chunks}`: whole `BucketStore::series` requests on that
//!   block, warm, every frame converted and encoded as the gRPC reply carries it, series/s:
//!   postings, the cursor and merge, label resolution, chunk reads and response encoding (all
//!   of a Series request but the transport). The selectors are those of the default
//!   workload's large requests, over the whole block.
//!
//! The block is only read. Run (after `stele gen --profile medium` made the data):
//! `cargo bench --bench series_cache`, or with `STELE_BENCH_BLOCK=<block dir>` for another
//! block.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use prost::Message;
use stele::bucket::discover::BlockFilters;
use stele::cache::{Cache, ItemKind};
use stele::model::parse_selector;
use stele::proto::thanos::{series_response, SeriesResponse};
use stele::store::{BucketBlock, BucketStore, StoreConfig};
use stele::storeapi::convert::series_to_proto;
use stele::storeapi::{Limits, SeriesEvent, SeriesQuery};

/// Heap bytes allocated and not freed, over the whole process (jemalloc, stele's allocator,
/// counts them).
fn heap() -> i64 {
    tikv_jemalloc_ctl::epoch::advance().unwrap();
    tikv_jemalloc_ctl::stats::allocated::read().unwrap() as i64
}

const BATCH: usize = 2048;
const DEFAULT_BLOCK: &str = "bench-data/generated/medium/01M6A6FT000009G5NN8CE12QW8";

struct Fixture {
    _dirs: tempfile::TempDir,
    _runtime: tokio::runtime::Runtime,
    store: Arc<BucketStore>,
    cache: Arc<Cache>,
    block: Arc<BucketBlock>,
    refs: Vec<u64>,
}

/// A store serving only the block at `dir`: the bucket is a temporary directory with a link to
/// it, so nothing is written next to the block.
fn fixture(dir: PathBuf) -> Fixture {
    assert!(
        dir.join("index").is_file(),
        "no block at {} (make one with `stele gen --profile medium`, or set STELE_BENCH_BLOCK)",
        dir.display()
    );
    let dirs = tempfile::tempdir().unwrap();
    let bucket = dirs.path().join("bucket");
    std::fs::create_dir(&bucket).unwrap();
    std::os::unix::fs::symlink(&dir, bucket.join(dir.file_name().unwrap())).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let yaml = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        bucket.display()
    );
    let config = StoreConfig {
        data_dir: dirs.path().join("data"),
        filters: BlockFilters::default(),
        limits: Limits::default(),
        block_sync_concurrency: 1,
        lazy_index_headers: false,
        index_header_idle_timeout: Duration::ZERO,
        inflight_memory_limit: 0,
        inflight_memory_wait: Duration::from_secs(1),
        local_bucket: Some(bucket.clone()),
        postings_cost_model: true,
        chunk_cache_max_age: Duration::ZERO,
        max_bucket_requests: stele::store::DEFAULT_MAX_BUCKET_REQUESTS,
        bucket_requests_per_query: stele::store::DEFAULT_BUCKET_REQUESTS_PER_QUERY,
    };
    let cache = Arc::new(Cache::new(2 << 30));
    let store = Arc::new(BucketStore::new(
        stele::objstore::from_yaml(&yaml).unwrap(),
        config,
        cache.clone(),
        None,
        runtime.handle().clone(),
    ));
    runtime.block_on(store.sync()).unwrap();
    let block = store.blocks().pop().expect("the block is served");
    let refs = block.index.get().unwrap().all_postings().unwrap();
    Fixture {
        _dirs: dirs,
        _runtime: runtime,
        store,
        cache,
        block,
        refs,
    }
}

/// Reads the series of `refs` in batches; returns how many came back.
fn read(f: &Fixture, refs: &[u64]) -> usize {
    let mut ctx = f.store.query_ctx();
    refs.chunks(BATCH)
        .map(|batch| {
            f.block
                .series(batch, &[], i64::MIN, i64::MAX, &mut ctx)
                .unwrap()
                .len()
        })
        .sum()
}

/// One Series request answered whole, each frame encoded into `buf` as tonic would; returns
/// the series and the reply's bytes.
fn reply(f: &Fixture, q: &SeriesQuery, buf: &mut Vec<u8>) -> (u64, usize) {
    let (mut series, mut bytes) = (0, 0);
    f.store
        .series(q, &mut |event| {
            if let SeriesEvent::Series(s) = event {
                let frame = SeriesResponse {
                    result: Some(series_response::Result::Series(series_to_proto(s))),
                };
                buf.clear();
                frame.encode(buf).unwrap();
                series += 1;
                bytes += buf.len();
            }
            true
        })
        .unwrap();
    (series, bytes)
}

fn fill_and_report(f: &Fixture) {
    let cache = &f.cache;
    let heap_before = heap();
    let started = Instant::now();
    let mut ctx = f.store.query_ctx();
    for batch in f.refs.chunks(BATCH) {
        f.block
            .series(batch, &[], i64::MIN, i64::MAX, &mut ctx)
            .unwrap();
    }
    let encoded = ctx.stats.series_touched_size_sum as f64;
    drop(ctx);
    let heap = (heap() - heap_before) as f64;
    let s = cache.stats(ItemKind::Series);
    let n = f.refs.len() as f64;
    println!(
        "series cache filled from {} series in {:.1} s: {} items, {} bytes accounted \
         ({:.1} B/series), heap +{} bytes ({:.1} B/series), entries {:.1} B/series encoded",
        f.refs.len(),
        started.elapsed().as_secs_f64(),
        s.items,
        s.bytes,
        s.bytes as f64 / n,
        heap,
        heap / n,
        encoded / n,
    );
    assert_eq!(s.evicted, 0, "the cache holds every series");
}

/// One block of the `small` profile, generated into `dir`: what the bench measures when the
/// `medium` block is not there (a fresh clone, CI's `cargo test --benches`).
fn small_block(dir: &std::path::Path) -> PathBuf {
    let profile = stele::gen::profile::parse_profile(
        "small",
        "bench-data/small.toml",
        include_str!("../bench-data/small.toml"),
    )
    .unwrap();
    let metas = stele::gen::generate(&profile, dir, &indicatif::ProgressBar::hidden()).unwrap();
    dir.join(&metas[0].ulid)
}

fn bench(c: &mut Criterion) {
    let default = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_BLOCK);
    let generated = tempfile::tempdir().unwrap();
    let dir = match std::env::var_os("STELE_BENCH_BLOCK") {
        Some(dir) => PathBuf::from(dir),
        None if default.join("index").is_file() => default,
        None => {
            eprintln!(
                "series_cache: NO medium block at {} (run `stele gen --profile medium` or set \
                 STELE_BENCH_BLOCK): measuring one generated `small` block instead",
                default.display()
            );
            small_block(generated.path())
        }
    };
    let f = fixture(dir);
    fill_and_report(&f);

    let dense: Vec<u64> = f.refs.iter().copied().take(64 * 1024).collect();
    let sparse: Vec<u64> = f.refs.iter().copied().step_by(16).take(64 * 1024).collect();
    let mut g = c.benchmark_group("series_cache");
    for (name, refs) in [("dense", &dense), ("sparse", &sparse)] {
        g.throughput(Throughput::Elements(refs.len() as u64));
        g.bench_with_input(BenchmarkId::new("warm", name), refs, |b, refs| {
            b.iter(|| assert_eq!(read(&f, refs), refs.len()))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("series_reply");
    let requests = [
        ("120k", r#"http_requests_total{code!="200"}"#, false),
        (
            "15k",
            r#"kube_pod_status_phase{phase!~"Running|Pending"}"#,
            false,
        ),
        (
            "120k_skip_chunks",
            r#"http_requests_total{code!="200"}"#,
            true,
        ),
    ];
    let mut buf = Vec::new();
    for (name, selector, skip_chunks) in requests {
        let q = SeriesQuery {
            min_time: f.block.meta.min_time,
            max_time: f.block.meta.max_time,
            matchers: parse_selector(selector).unwrap(),
            skip_chunks,
            ..Default::default()
        };
        let (series, bytes) = reply(&f, &q, &mut buf);
        assert!(series > 0, "{selector} matches series of the block");
        println!("series_reply/{name}: {series} series, {bytes} bytes of frames");
        g.throughput(Throughput::Elements(series));
        g.bench_function(name, |b| {
            b.iter(|| assert_eq!(reply(&f, &q, &mut buf).0, series))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
