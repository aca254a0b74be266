//! zstd in the index cache, on real values: every postings list and series page (every
//! series entry, in full pages) of a block made by `stele gen` (a ~30k-series cluster, one 2h
//! block).
//! - before the timings, the bytes the cache would hold for them with compression off and at
//!   several `--index-cache.compress-min-bytes` thresholds are printed, for postings both as
//!   the index stores them (big-endian lists) and as the store caches them (serialized
//!   roaring bitmaps, never compressed);
//! - `cache_zstd/get_{postings,series}/{off,4KiB}`: `Cache::get` of every value of that
//!   kind from a warm cache, values/s (decompression included);
//! - `cache_zstd/decompress_large_postings`: decoding the lists compressed at 4 KiB, raw
//!   bytes/s;
//! - `cache_zstd/put_postings/{off,4KiB}`: `Cache::put` of every postings list
//!   (compression included).
//!
//! Run: `cargo bench --bench cache_zstd`

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use roaring::RoaringBitmap;
use stele::block::LocalBlock;
use stele::cache::series_pages::{encode_page, page_of};
use stele::cache::{Cache, CacheKey, CacheOptions, Stored};
use stele::tsdb::source::ReadAt;
use ulid::Ulid;

const PROFILE: &str = r#"
seed = 11
start = "2026-11-01T00:00:00Z"
blocks = 1
block_duration = "2h"
scrape_interval = "60s"
pod_churn = 0.2
counter_reset_probability = 0.001
scrape_jitter_probability = 0.05
[external_labels]
cluster = "bench"
[topology]
nodes = 20
cpus_per_node = 4
namespaces = 10
deployments_per_namespace = 5
pods_per_deployment = 5
containers_per_pod = 2
http_handlers = 6
"#;

/// Cache entries of one kind.
type Values = Vec<(CacheKey, Bytes)>;

/// Every postings list of one generated block as the bucket returns it, and every series
/// entry, in full pages as the cache holds them.
fn real_values() -> (Values, Values) {
    let dir = tempfile::tempdir().unwrap();
    let profile = stele::gen::profile::parse_profile("bench", "bench", PROFILE).unwrap();
    let metas =
        stele::gen::generate(&profile, dir.path(), &indicatif::ProgressBar::hidden()).unwrap();
    let block = LocalBlock::open(&dir.path().join(&metas[0].ulid)).unwrap();
    let index = &block.index;
    let source = index.source();
    let id = Ulid(1);
    let mut postings = Vec::new();
    for name in index.label_names().unwrap() {
        for value in index.label_values(&name).unwrap() {
            let range = index.postings_range(&name, &value).unwrap().unwrap();
            let key = CacheKey::Postings {
                block: id,
                name: name.clone(),
                value,
            };
            let list = source.read_at(range).unwrap();
            postings.push((key, Bytes::copy_from_slice(&list)));
        }
    }
    let section_end = index.series_section().end;
    let mut entries: Vec<(u64, Vec<u8>)> = Vec::new();
    for r in index.all_postings().unwrap() {
        let off = index.series_offset(r).unwrap();
        let prefix = source.read_at(off..(off + 16).min(section_end)).unwrap();
        let len = index.series_entry_len(off, &prefix).unwrap();
        entries.push((off, source.read_at(off..off + len).unwrap().to_vec()));
    }
    let series = entries
        .chunk_by(|a, b| page_of(a.0) == page_of(b.0))
        .map(|page| {
            let number = page_of(page[0].0);
            let borrowed: Vec<(u64, &[u8])> = page.iter().map(|(o, e)| (*o, &e[..])).collect();
            let key = CacheKey::SeriesPage {
                block: id,
                page: number,
            };
            (key, encode_page(number, &borrowed))
        })
        .collect();
    (postings, series)
}

/// The postings as the store caches them: serialized roaring bitmaps.
fn as_bitmaps(lists: &[(CacheKey, Bytes)]) -> Values {
    lists
        .iter()
        .map(|(k, list)| {
            let refs = stele::tsdb::index::decode_postings_list(list).unwrap();
            let bitmap = RoaringBitmap::from_sorted_iter(refs).unwrap();
            let mut bytes = Vec::new();
            bitmap.serialize_into(&mut bytes).unwrap();
            (k.clone(), Bytes::from(bytes))
        })
        .collect()
}

fn report(kind: &str, values: &[(CacheKey, Bytes)]) {
    let raw: usize = values.iter().map(|v| v.1.len()).sum();
    let big = values.iter().filter(|v| v.1.len() >= 4096).count();
    println!(
        "{kind}: {} values, {raw} bytes, {big} of them >= 4 KiB, largest {} bytes",
        values.len(),
        values.iter().map(|v| v.1.len()).max().unwrap_or(0)
    );
    for min in [1usize, 1024, 4096, 16384] {
        let (mut held, mut compressed) = (0usize, 0usize);
        for (_, v) in values {
            let s = Stored::encode(v.clone(), min);
            held += s.len();
            compressed += usize::from(matches!(s, Stored::Zstd { .. }));
        }
        println!(
            "  compress-min-bytes {min:>5}: {held} bytes held ({:.1}% of raw), {compressed} values compressed",
            100.0 * held as f64 / raw as f64
        );
    }
}

fn warm_cache(values: &[(CacheKey, Bytes)], compress_min_bytes: usize) -> Cache {
    let cache = Cache::with_options(
        CacheOptions {
            compress_min_bytes,
            ..CacheOptions::in_memory(1 << 30)
        },
        None,
    );
    for (k, v) in values {
        cache.put(k.clone(), v.clone());
    }
    cache
}

fn zstd(c: &mut Criterion) {
    let (postings, series) = real_values();
    report("postings lists", &postings);
    let bitmaps = as_bitmaps(&postings);
    report("postings bitmaps", &bitmaps);
    report("series pages", &series);

    let mut group = c.benchmark_group("cache_zstd");
    for (kind, values) in [("postings", &bitmaps), ("series", &series)] {
        group.throughput(Throughput::Elements(values.len() as u64));
        for (label, min) in [("off", 0usize), ("4KiB", 4096)] {
            let cache = warm_cache(values, min);
            let kind_of = values[0].0.kind();
            println!(
                "{kind}, compression {label}: the cache holds {} bytes",
                cache.stats(kind_of).bytes
            );
            assert_eq!(cache.stats(kind_of).items, values.len() as u64);
            group.bench_with_input(
                BenchmarkId::new(format!("get_{kind}"), label),
                &cache,
                |b, cache| {
                    b.iter(|| {
                        for (k, _) in values.iter() {
                            criterion::black_box(cache.get(k).unwrap());
                        }
                    })
                },
            );
        }
    }
    // The lists compressed at 4 KiB, decompressed: raw bytes/s.
    let large: Vec<Stored> = postings
        .iter()
        .map(|(_, v)| Stored::encode(v.clone(), 4096))
        .filter(|s| matches!(s, Stored::Zstd { .. }))
        .collect();
    let raw: u64 = large
        .iter()
        .map(|s| match s {
            Stored::Zstd { raw_len, .. } => u64::from(*raw_len),
            Stored::Raw(_) => 0,
        })
        .sum();
    group.throughput(Throughput::Bytes(raw));
    group.bench_function("decompress_large_postings", |b| {
        b.iter(|| {
            for s in &large {
                criterion::black_box(s.decode().unwrap());
            }
        })
    });
    group.throughput(Throughput::Elements(bitmaps.len() as u64));
    group.bench_function("put_postings", |b| b.iter(|| warm_cache(&bitmaps, 4096)));
    group.finish();
}

criterion_group!(benches, zstd);
criterion_main!(benches);
