//! The index cache under concurrency: `Cache` (16 lock shards, byte-bounded) against a
//! plain LRU behind one lock, same budget, same Zipf-distributed workload (s = 1, 100k keys,
//! 90% gets with a put on every miss, 300-byte values).
//! - `cache_ops/{sharded,single_lock}/{1,2,8,32}`: operations per second with that many threads;
//! - before the timings, the hit ratio of each under the workload is printed (single thread,
//!   1M operations, budget ~10% of the key space).
//!
//! Run: `cargo bench --bench cache`

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use stele::cache::{Cache, CacheKey};
use ulid::Ulid;

const KEYS: u64 = 100_000;
const VALUE_BYTES: usize = 300;
/// ~10% of the keys fit (each entry also costs its key and bookkeeping).
const BUDGET: u64 = KEYS / 10 * (VALUE_BYTES as u64 + 128);
const OPS_PER_THREAD: u64 = 20_000;

/// Zipf(s = 1) over `0..n` by inverse CDF.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: u64) -> Self {
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (1..=n)
            .map(|k| {
                acc += 1.0 / k as f64;
                acc
            })
            .collect();
        for c in &mut cdf {
            *c /= acc;
        }
        Zipf { cdf }
    }

    fn sample(&self, rng: &mut impl Rng) -> u64 {
        let u: f64 = rng.gen();
        self.cdf.partition_point(|&c| c < u) as u64
    }
}

trait AnyCache: Send + Sync {
    fn get(&self, key: &CacheKey) -> Option<Bytes>;
    fn put(&self, key: CacheKey, value: Bytes);
}

impl AnyCache for Cache {
    fn get(&self, key: &CacheKey) -> Option<Bytes> {
        Cache::get(self, key)
    }
    fn put(&self, key: CacheKey, value: Bytes) {
        Cache::put(self, key, value)
    }
}

/// The baseline: one lock, bounded by entries worth the same bytes.
struct SingleLock(Mutex<lru::LruCache<CacheKey, Bytes>>);

impl SingleLock {
    fn new() -> Self {
        let entries = (BUDGET / (VALUE_BYTES as u64 + 128)) as usize;
        SingleLock(Mutex::new(lru::LruCache::new(
            std::num::NonZeroUsize::new(entries).unwrap(),
        )))
    }
}

impl AnyCache for SingleLock {
    fn get(&self, key: &CacheKey) -> Option<Bytes> {
        self.0.lock().get(key).cloned()
    }
    fn put(&self, key: CacheKey, value: Bytes) {
        self.0.lock().put(key, value);
    }
}

fn key(block: Ulid, n: u64) -> CacheKey {
    CacheKey::SeriesPage { block, page: n }
}

/// Runs `ops` Zipf operations; returns the hits.
fn workload(cache: &dyn AnyCache, zipf: &Zipf, seed: u64, ops: u64) -> u64 {
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
    let block = Ulid(1);
    let value = Bytes::from(vec![7u8; VALUE_BYTES]);
    let mut hits = 0;
    for _ in 0..ops {
        let k = key(block, zipf.sample(&mut rng));
        if rng.gen_ratio(1, 10) {
            cache.put(k, value.clone());
        } else if cache.get(&k).is_some() {
            hits += 1;
        } else {
            cache.put(k, value.clone());
        }
    }
    hits
}

fn run_threads(cache: Arc<dyn AnyCache>, zipf: Arc<Zipf>, threads: u64, ops: u64) -> Duration {
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (cache, zipf) = (cache.clone(), zipf.clone());
            std::thread::spawn(move || workload(cache.as_ref(), &zipf, t, ops))
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    started.elapsed()
}

fn hit_ratios(zipf: &Zipf) {
    let ops = 1_000_000;
    let gets = |hits: u64| hits as f64 / (ops as f64 * 0.9);
    let sharded = Cache::new(BUDGET);
    let single = SingleLock::new();
    let (s, b) = (
        workload(&sharded, zipf, 1, ops),
        workload(&single, zipf, 1, ops),
    );
    println!(
        "hit ratio, Zipf s=1 over {KEYS} keys, budget {BUDGET} bytes: sharded {:.3}, single lock {:.3}",
        gets(s),
        gets(b)
    );
}

fn bench(c: &mut Criterion) {
    let zipf = Arc::new(Zipf::new(KEYS));
    hit_ratios(&zipf);
    let mut g = c.benchmark_group("cache_ops");
    for threads in [1u64, 2, 8, 32] {
        g.throughput(Throughput::Elements(threads * OPS_PER_THREAD));
        for (name, make) in [
            (
                "sharded",
                (|| Arc::new(Cache::new(BUDGET)) as Arc<dyn AnyCache>) as fn() -> _,
            ),
            ("single_lock", || {
                Arc::new(SingleLock::new()) as Arc<dyn AnyCache>
            }),
        ] {
            g.bench_with_input(BenchmarkId::new(name, threads), &threads, |b, &threads| {
                let cache = make();
                // Warm: the steady state, not the fill.
                run_threads(cache.clone(), zipf.clone(), 1, 200_000);
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| run_threads(cache.clone(), zipf.clone(), threads, OPS_PER_THREAD))
                        .sum()
                })
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
