//! Index hot paths on a 100k-series index built in memory (labels shaped like the generator's:
//! job, instance, namespace, pod, handler, ...):
//! - `series_entry_decode`: one series entry (CRC check + labels + chunk metas), entries/s;
//! - `series_lookup`: `IndexReader::series`, i.e. range read + decode + symbol lookups;
//! - `postings_decode`: one 100k-entry postings list (CRC + big-endian refs), postings/s;
//! - `postings_bitmap`: the same list into a roaring bitmap (what the store does), against
//!   `postings_bitmap_by_value` (decoded, then inserted ref by ref), postings/s;
//! - `postings_lookup`: postings offset table lookup + read + decode of a small list.
//!
//! Run: `cargo bench --bench index`

use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use stele::tsdb::index::{
    decode_postings_bitmap, decode_postings_list, decode_series_entry_into, split_series_entry,
    ChunkMeta, IndexReader, IndexVersion, IndexWriter, SeriesEntryRefs,
};
use stele::tsdb::source::ReadAt;

const SERIES: usize = 100_000;

fn build_index() -> Bytes {
    let mut series: Vec<Vec<(String, String)>> = (0..SERIES)
        .map(|i| {
            vec![
                ("__name__".to_string(), format!("metric_{}", i % 50)),
                ("handler".to_string(), format!("/api/v1/h{}", i % 13)),
                (
                    "instance".to_string(),
                    format!("10.0.{}.{}:8080", i / 250 % 250, i % 250),
                ),
                ("job".to_string(), "kubernetes-pods".to_string()),
                ("namespace".to_string(), format!("ns-{}", i % 20)),
                ("pod".to_string(), format!("pod-{}", i / 10)),
            ]
        })
        .collect();
    series.sort();
    series.dedup();
    let mut symbols: Vec<&str> = series
        .iter()
        .flatten()
        .flat_map(|(n, v)| [n.as_str(), v.as_str()])
        .collect();
    symbols.sort_unstable();
    symbols.dedup();
    let mut w = IndexWriter::new(Vec::new()).unwrap();
    w.add_symbols(symbols.iter().copied()).unwrap();
    for (i, s) in series.iter().enumerate() {
        let labels: Vec<(&str, &str)> = s.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let base = i as i64 * 1000;
        let chunks: Vec<ChunkMeta> = (0..4)
            .map(|c| ChunkMeta {
                min_time: base + c * 1_800_000,
                max_time: base + c * 1_800_000 + 1_785_000,
                chunk_ref: 8 + (i as u64 * 4 + c as u64) * 200,
            })
            .collect();
        w.add_series(&labels, &chunks).unwrap();
    }
    Bytes::from(w.finish().unwrap())
}

fn index(c: &mut Criterion) {
    let bytes = build_index();
    let reader = IndexReader::open(Arc::new(bytes.clone())).unwrap();
    let refs = reader.all_postings().unwrap();
    let raw_entries: Vec<Bytes> = refs
        .iter()
        .take(10_000)
        .map(|&r| {
            let start = r * 16;
            bytes
                .read_at(start..(start + 256).min(bytes.len() as u64))
                .unwrap()
        })
        .collect();

    let mut group = c.benchmark_group("index");
    group.throughput(Throughput::Elements(raw_entries.len() as u64));
    group.bench_function("series_entry_decode", |b| {
        let mut out = SeriesEntryRefs::default();
        b.iter(|| {
            for raw in &raw_entries {
                let (body, _) = split_series_entry(raw).unwrap();
                decode_series_entry_into(body, IndexVersion::V2, &mut out).unwrap();
            }
        })
    });
    group.bench_function("series_lookup", |b| {
        b.iter(|| {
            for &r in refs.iter().take(10_000) {
                criterion::black_box(reader.series(r).unwrap());
            }
        })
    });

    let all = reader.postings_range("", "").unwrap().unwrap();
    let all_bytes = bytes.read_at(all).unwrap();
    group.throughput(Throughput::Elements(refs.len() as u64));
    group.bench_function("postings_decode", |b| {
        b.iter(|| decode_postings_list(&all_bytes).unwrap())
    });

    group.bench_function("postings_bitmap", |b| {
        b.iter(|| decode_postings_bitmap(&all_bytes).unwrap())
    });
    group.bench_function("postings_bitmap_by_value", |b| {
        b.iter(|| {
            roaring::RoaringBitmap::from_sorted_iter(decode_postings_list(&all_bytes).unwrap())
                .unwrap()
        })
    });

    group.throughput(Throughput::Elements(1));
    group.bench_function("postings_lookup", |b| {
        b.iter(|| reader.postings("pod", "pod-4242").unwrap())
    });
    group.finish();
}

criterion_group!(benches, index);
criterion_main!(benches);
